"""The weight matrices the compiler maps onto crossbars, found by the compiler's own analysis.

``anacompile optimize --weights model.onnx`` scores a programming strategy on the network's normalised
weights. Those must be the matrices that ``compile`` programs, not the raw initializers: weight chains folded
(a Transpose, a Cast, a folded BatchNorm ``Mul(W, s)``: :mod:`~anacompile.passes.fold_constant_weights`),
Gemm's ``transB`` and ``alpha`` applied, grouped convs split per group, conv kernels flattened channel-major,
LSTM/GRU/RNN gates stacked, a shared weight counted once and ops that stay digital left out. So this module
runs :func:`~anacompile.passes.pipeline.planning_pipeline` (the start of the compiler's analysis) and returns
every analog layer's ``LayerPlan.weight``. It sits in the compiler layer, above ``programming``, which it
feeds (the CLI joins the two).
"""

from __future__ import annotations

import os

import numpy as np
import onnx_ir as ir
from numpy.typing import NDArray

from anacompile.errors import ModelLoadError
from anacompile.model_io import load_proto
from anacompile.passes._layer import analog_layers
from anacompile.passes.pipeline import planning_pipeline
from anacompile.passes.upgrade_opset import MIN_OPSET, default_opset, upgrade_opset

__all__ = ["mapped_weight_matrices"]


def mapped_weight_matrices(path: str | os.PathLike[str]) -> list[NDArray[np.float64]]:
    """The (K, N) weight matrix of every analog layer ``compile`` maps for the ONNX model at ``path``, in the
    compile report's layer order, float64.

    Raises:
        ModelLoadError: the file is missing or not an ONNX model, or no layer of it is mapped.
    """
    if not os.path.isfile(path):  # the message optimize always gave
        raise ModelLoadError(f"Weights file {os.fspath(path)!r} does not exist.")
    proto = load_proto(path, load_external_data=True)
    if proto.opset_import and default_opset(proto) < MIN_OPSET:  # as compile: opset 7-12 upgraded first
        proto, _ = upgrade_opset(proto, str(path))
    model = ir.from_proto(proto)
    planning_pipeline()(model)
    mats = [np.asarray(plan.weight, np.float64) for _, plan in analog_layers(model) if plan.weight is not None]
    if not mats:
        raise ModelLoadError(
            f"{os.fspath(path)!r} has no layer that compile maps onto crossbars (constant MatMul/Gemm/Conv/"
            "ConvTranspose/LSTM/GRU/RNN weights); `anacompile inspect` says why each op stays digital."
        )
    return mats
