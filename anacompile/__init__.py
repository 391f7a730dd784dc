"""anacompile: compile ONNX networks for analog in-memory-computing crossbars and evaluate them over time."""

__version__ = "0.1.0"
