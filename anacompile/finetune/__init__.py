"""Hardware-aware fine-tuning of any ONNX model by distillation (``anacompile finetune``; needs the ``train`` extra).

``anacompile.finetune(model, calibration, output)`` (this package is callable: it is
:func:`anacompile.finetune.train.finetune`, so the Python API mirrors the CLI verb) lowers the ONNX graph to a
trainable torch module, injects the analog tile's noise where the compiler will map weights to crossbars, trains
by distillation from the FP32 model's own outputs and writes the trained weights back into the original graph.
Importing this package does not import torch; calling it does (and says which extra to install when missing).
"""

from __future__ import annotations

import sys
import types

from anacompile.finetune.train import FinetuneConfig, FinetuneResult, finetune, load_calibration

__all__ = ["FinetuneConfig", "FinetuneResult", "finetune", "load_calibration"]


class _CallableModule(types.ModuleType):
    """The package module, callable as :func:`anacompile.finetune.train.finetune`."""

    def __call__(self, *args, **kwargs):
        return finetune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
