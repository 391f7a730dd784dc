"""The one place that imports PyTorch for :mod:`anacompile.finetune`, with the install hint when it is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from anacompile.errors import AnacompileError

__all__ = ["TORCH_EXTRA", "MissingDependencyError", "require_torch"]

TORCH_EXTRA = "pip install 'anacompile[train]'"
"""How to install the optional PyTorch dependency of fine-tuning (torch==2.13.0, a CPU build)."""


class MissingDependencyError(AnacompileError):
    """An optional dependency of the requested feature is not installed."""


def require_torch() -> ModuleType:
    """Return the ``torch`` module, or raise :class:`MissingDependencyError` saying which extra installs it."""
    try:
        return importlib.import_module("torch")
    except ImportError as err:
        raise MissingDependencyError(
            f"anacompile finetune needs PyTorch, which is not installed: {TORCH_EXTRA} (torch==2.13.0)."
        ) from err
