"""Drift compensation: the one implementation, in numpy and as ONNX ops.

Global drift compensation (GDC, Joshi et al. 2020, reference/papers.md (d), "Drift compensation"; Rasch et
al. 2023 (c) through aihwkit's ``GlobalDriftCompensation``): a calibration read of the layer right after
programming gives a reference, the same read at t gives the current value, and the layer output is scaled
by alpha(t) = reference / current.

Which read: aihwkit's code reads with one-hot (identity) inputs and takes mean |y|, i.e. sum_ij |w_ij| for
a noiseless read (papers.md, "Drift compensation (formulas)": "R = identity (one-hot inputs) in aihwkit
code, 'all-ones' in its docs"). The one-hot read is the default here (:attr:`CalibrationRead.ONE_HOT`),
since it is what the reference implementation runs; the all-ones read of the docs, sum_j |sum_i w_ij|, is
available as :attr:`CalibrationRead.ALL_ONES` (a documented choice, not a default tuned to a model). The
constant factor between a sum and aihwkit's mean cancels in the ratio.

Per-column compensation (aihwkit ``PerColumnDriftCompensation``): the same read per column,
alpha_j(t) = sum_i |w_ij(t_0)| / sum_i |w_ij(t)|.

Used by the chip stage (:mod:`anacompile.programming.chip_state`, the analog session's numpy stage), the
ONNX body of ``AnalogChipWeights`` (:func:`compensation_nodes`) and the strategy optimiser's objective
(:func:`gdc_alpha`, :mod:`anacompile.programming.weight_error`).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from anacompile.crossbar.periphery import DriftCompensation

__all__ = [
    "GDC_EPS",
    "CalibrationRead",
    "calibration_read",
    "compensation_factors",
    "compensation_nodes",
    "compensation_reference",
    "gdc_alpha",
]

GDC_EPS = 1e-12
"""Floor of the current read (a layer that reads all zeros is left unscaled rather than divided by 0)."""


class CalibrationRead(str, Enum):
    """The calibration inputs of global drift compensation."""

    ONE_HOT = "one_hot"
    """One-hot inputs (aihwkit's code): the read is sum_ij |w_ij|."""
    ALL_ONES = "all_ones"
    """One all-ones input (aihwkit's docs): the read is sum_j |sum_i w_ij|."""


def calibration_read(
    w: ArrayLike,
    mode: DriftCompensation = DriftCompensation.GLOBAL,
    batch_dims: int = 0,
    read: CalibrationRead = CalibrationRead.ONE_HOT,
    dtype: Any = np.float32,
) -> NDArray[Any]:
    """The calibration read of weights ``w`` (..., rows, N).

    Args:
        w: effective weights; the first ``batch_dims`` axes are independent matrices (candidates, repeats),
            the rest one layer (a tiled layer's tile axis is part of the layer).
        mode: ``global``: one value per layer (shape of the batch axes); ``column``: one per column,
            shape (..., 1, N) (tiles kept apart: each tile's columns are read by its own ADCs).
        read: the calibration inputs of the global read.
        dtype: float type of the sums.

    Returns:
        The read (never negative).
    """
    w = np.asarray(w, dtype)
    if mode is DriftCompensation.COLUMN:
        out = np.sum(np.abs(w), axis=-2, keepdims=True)
    elif read is CalibrationRead.ALL_ONES:
        out = np.sum(np.abs(np.sum(w, axis=-2)), axis=tuple(range(batch_dims, w.ndim - 1)))
    else:
        out = np.sum(np.abs(w), axis=tuple(range(batch_dims, w.ndim)))
    return np.asarray(out)


def compensation_reference(w0: ArrayLike, mode: DriftCompensation) -> NDArray[np.float32]:
    """The reference of a layer: the calibration read right after programming (``L.gdc_ref``)."""
    return np.asarray(calibration_read(w0, mode), np.float32)


def compensation_factors(w_t: ArrayLike, reference: ArrayLike, mode: DriftCompensation) -> NDArray[np.float32]:
    """alpha(t) = reference / (the same read at t), shape ([n_tiles,] 1, N); ones for ``none``."""
    w_t = np.asarray(w_t, np.float32)
    shape = w_t.shape[:-2] + (1, w_t.shape[-1])
    if mode is DriftCompensation.NONE:
        return np.ones(shape, np.float32)
    cur = calibration_read(w_t, mode)
    alpha = np.asarray(reference, np.float32) / np.maximum(cur, np.float32(GDC_EPS))
    return np.broadcast_to(alpha, shape).astype(np.float32)


def gdc_alpha(
    u_target: ArrayLike,
    u_hw: ArrayLike,
    read: CalibrationRead = CalibrationRead.ONE_HOT,
) -> NDArray[np.float64]:
    """Global compensation of a matrix against its target: read(u_target) / read(u_hw) over the last two axes.

    The optimiser's objective (Mackin et al. 2022) compares alpha u~(t) with the target u, so the reference
    is the target's read; leading axes of ``u_hw`` (candidates, repeats) broadcast. Float64.
    """
    u_target, u_hw = np.asarray(u_target, np.float64), np.asarray(u_hw, np.float64)
    ref = calibration_read(u_target, batch_dims=u_target.ndim - 2, read=read, dtype=np.float64)
    hw = calibration_read(u_hw, batch_dims=u_hw.ndim - 2, read=read, dtype=np.float64)
    alpha: NDArray[np.float64] = ref / np.maximum(hw, GDC_EPS)
    return alpha


def compensation_nodes(b: Any, w: str, reference: str, shape_like: str, mode: DriftCompensation, opset: int) -> str:
    """The ONNX ops of :func:`compensation_factors` (one-hot read), added to a function body ``b``.

    Args:
        b: the body builder of :mod:`anacompile.crossbar.functions` (``op``, ``const``, ``reduce``).
        w: the effective weights at t, ([n_tiles,] rows, N).
        reference: the layer's reference read (``gdc_ref``).
        shape_like: a tensor of the output shape ([n_tiles,] 1, N).
        mode: the compensation.
        opset: the body's default-domain opset.

    Returns:
        The name of alpha, shaped like ``shape_like``.
    """
    shape = b.op("Shape", shape_like)
    if mode is DriftCompensation.NONE:
        alpha = b.op("Expand", b.const(1.0), shape)
    elif mode is DriftCompensation.GLOBAL:
        cur = b.op("ReduceSum", b.op("Abs", w), keepdims=0)  # all axes
        alpha = b.op("Expand", b.op("Div", reference, b.op("Max", cur, b.const(GDC_EPS))), shape)
    else:
        cur = b.reduce("ReduceSum", b.op("Abs", w), [-2], 1, opset)
        alpha = b.op("Div", reference, b.op("Max", cur, b.const(GDC_EPS)))
    return str(alpha)
