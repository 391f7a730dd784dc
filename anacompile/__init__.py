"""anacompile: compile ONNX networks for analog in-memory-computing crossbars and evaluate them over time.

The Python API mirrors the command line one to one::

    import anacompile
    report = anacompile.compile_model("model.onnx", "model.analog.onnx", device="pcm", calibration="digits")
    result = anacompile.evaluate("model.analog.onnx", data="digits", times="1s,1h,1d,1y", chips=25)
    session = anacompile.AnalogSession("model.analog.onnx", chip_seed=3)
    errors = anacompile.mvm_error("model.analog.onnx", times="1s,1d")
    report = anacompile.optimize_strategy(weights, anacompile.devices.get("pcm"))
    result = anacompile.finetune("model.onnx", "digits", "model.hwa.onnx")   # needs anacompile[train]

Names are imported on first use, so ``import anacompile`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from anacompile._version import __version__

_LAZY = {
    "compile_model": "anacompile.placement.api",  # the compiler, or the placement search with accuracy_budget=
    "sensitivity": "anacompile.placement.sensitivity",
    "read_report": "anacompile.contract",
    "evaluate": "anacompile.evaluate.monte_carlo",
    "evaluate_embeddings": "anacompile.evaluate.embeddings",
    "mvm_error": "anacompile.evaluate.mvm_error",
    "AnalogSession": "anacompile.runtime.session",
    "optimize_strategy": "anacompile.programming.optimizer",
    "get_periphery": "anacompile.crossbar.periphery",
    "Periphery": "anacompile.crossbar.periphery",
    "Compensation": "anacompile.crossbar.periphery",
    "get_mapping": "anacompile.mapping.registry",
    "AnacompileError": "anacompile.errors",
    "FinetuneConfig": "anacompile.finetune.train",
}

__all__ = ["__version__", "devices", "finetune", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in ("devices", "finetune"):  # packages (anacompile.finetune is callable: the finetune verb)
        return importlib.import_module(f"anacompile.{name}")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'anacompile' has no attribute {name!r}")
