"""Every exception anacompile raises on purpose.

One hierarchy, rooted at :class:`AnacompileError`. Messages name the node, tensor, file or field
concerned and say what to do about it. The CLI prints ``str(err)`` as one line and exits with 1.
"""

from __future__ import annotations

__all__ = [
    "AnacompileError",
    "ConfigError",
    "DataError",
    "DeviceError",
    "ModelLoadError",
    "OutputError",
    "UnsupportedModelError",
]


class AnacompileError(Exception):
    """Base of every error anacompile raises on purpose."""


class ModelLoadError(AnacompileError):
    """The input file is not a readable, well-formed ONNX model."""


class UnsupportedModelError(AnacompileError):
    """The model is valid ONNX but anacompile cannot compile or run it."""


class ConfigError(AnacompileError, ValueError):
    """A configuration value (periphery, strategy, CLI option) is out of range or malformed."""


class DeviceError(ConfigError):
    """A device preset name or device file is unknown or invalid."""


class DataError(AnacompileError):
    """An evaluation data set is missing, malformed or does not fit the model's inputs."""


class OutputError(AnacompileError):
    """An output path cannot be written (missing folder, would overwrite the input, exists)."""
