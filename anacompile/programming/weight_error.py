"""Weight error of a programming strategy over time: the objective of weight-programming optimisation.

Mackin et al. 2022 (Nat. Commun. 13, 3765) score a strategy by a time-averaged, density-weighted, normalised
weight error with drift compensation, without running the network (reference/papers.md, (a), "Objective",
and "Weight-programming optimisation"):

    TNMSE = (1/|T|) sum_{t in T} mean_ij ((alpha(t) W~_ij(t) - W_ij) / max|W|)^2

Here the weights are the normalised u = W / gamma of the compiler (per-column scale gamma, so max|u| = 1 per
column, :mod:`anacompile.mapping.column_scaling`), W~(t) is the weight the chip represents after programming,
drift and one 1/f read at t, and alpha(t) is global drift compensation (GDC, Joshi et al. 2020; papers.md
(d)):
one scalar per matrix from a calibration read with an all-ones input,

    alpha(t) = sum_j |sum_i W_ij| / sum_j |sum_i W~_ij(t)|.

(aihwkit's ``wpo.py`` multiplies the error by 10 before squaring, i.e. reports 100 x this TNMSE; relative
comparisons are unaffected.) The density weighting kappa_j of (a) comes from sampling W from the network's own
weight distribution.

Weights are read from ONNX (every constant initializer with >= 2 dims feeding the weight input of a MatMul,
Gemm or Conv node) or from a .npy array, and oriented as crossbar matrices (rows = inputs, columns = outputs).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from anacompile.errors import ConfigError, ModelLoadError
from anacompile.mapping.base import ConductanceMapping, decode_pairs
from anacompile.mapping.column_scaling import normalise_columns
from anacompile.programming.chip import program_chip

__all__ = [
    "DEFAULT_TIMES_S",
    "StrategyError",
    "crossbar_matrices",
    "evaluate_strategy_error",
    "gdc_alpha",
    "load_weight_matrices",
    "normalised_weights",
    "resample_weights",
]

DEFAULT_TIMES_S = (1.0, 60.0, 3600.0, 86400.0, 30 * 86400.0, 365 * 86400.0)
"""1 s, 1 min, 1 h, 1 d, 30 d, 1 y after programming (aihwkit example 33 uses 360 d for the last)."""


def crossbar_matrices(w: ArrayLike, op_type: str = "MatMul", trans_b: bool = False) -> list[NDArray[np.float64]]:
    """Orient a weight tensor as crossbar matrices of shape (inputs, outputs).

    Args:
        w: the weight initializer.
        op_type: ``MatMul`` (W is (..., K, N)), ``Gemm`` (B is (K, N), or (N, K) with ``trans_b``) or ``Conv``
            (W is (O, C/group, k...), flattened to (C/group * prod k, O)).
        trans_b: Gemm's ``transB`` attribute.

    Returns:
        One or more float64 matrices (a batched MatMul weight gives one per batch entry).

    Raises:
        ConfigError: fewer than 2 dimensions or an unknown op type.
    """
    a = np.asarray(w, dtype=np.float64)
    if a.ndim < 2:
        raise ConfigError(f"A crossbar weight needs >= 2 dimensions, got shape {a.shape}.")
    if op_type == "Gemm":
        return [a.T if trans_b else a]
    if op_type == "Conv":
        return [a.reshape(a.shape[0], -1).T]
    if op_type == "MatMul":
        return list(a.reshape((-1,) + a.shape[-2:]))
    raise ConfigError(f"Unknown op type {op_type!r} for a crossbar weight: MatMul, Gemm or Conv.")


def load_weight_matrices(path: str | os.PathLike[str]) -> list[NDArray[np.float64]]:
    """Read the crossbar weight matrices of an ONNX model, or one matrix from a .npy file.

    Args:
        path: ``.onnx`` (every constant initializer with >= 2 dims that is the weight input of a MatMul, Gemm
            or Conv node) or ``.npy`` (a 2-D array is one (inputs, outputs) matrix; more dims are MatMul
            batches).

    Returns:
        The matrices, each (inputs, outputs), float64.

    Raises:
        ModelLoadError: the file is missing or unreadable, or holds no such weight.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"Weights file {str(path)!r} does not exist.")
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ModelLoadError(f"Cannot read {str(path)!r} as a .npy array: {err}.") from err
        if arr.ndim < 2 or arr.size == 0 or not np.issubdtype(arr.dtype, np.number):
            raise ModelLoadError(f"{str(path)!r}: need a numeric array with >= 2 dims, got {arr.dtype} {arr.shape}.")
        return crossbar_matrices(arr, "MatMul")
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(os.fspath(path))
    except Exception as err:  # onnx raises DecodeError, OSError, ...; re-raised as ours
        raise ModelLoadError(f"Cannot read {str(path)!r} as an ONNX model: {err}.") from err
    inits = {t.name: t for t in model.graph.initializer}
    mats: list[NDArray[np.float64]] = []
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm", "Conv") or len(node.input) < 2:
            continue
        tensor = inits.get(node.input[1])
        if tensor is None or len(tensor.dims) < 2:
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        mats.extend(crossbar_matrices(numpy_helper.to_array(tensor), node.op_type, bool(attrs.get("transB", 0))))
    if not mats:
        raise ModelLoadError(
            f"{str(path)!r} has no constant MatMul/Gemm/Conv weight with >= 2 dimensions to map onto crossbars."
        )
    return mats


def normalised_weights(matrices: Sequence[ArrayLike]) -> list[NDArray[np.float64]]:
    """u = W / gamma per matrix, gamma = per-column max |W| (the compiler's column scaling)."""
    return [normalise_columns(m)[0] for m in matrices]


def resample_weights(
    u_values: ArrayLike,
    n_rows: int,
    n_cols: int,
    rng: np.random.Generator,
) -> NDArray[np.float64]:
    """A (n_rows, n_cols) matrix with the distribution of ``u_values``: sorted quantiles, shuffled.

    The quantile sample represents the weight density (the importance kappa_j of Mackin et al. 2022) with far
    fewer weights than the network, as aihwkit's ``wpo.py`` does (512 x 20, sorted, interpolated, shuffled).
    """
    u = np.sort(np.asarray(u_values, dtype=np.float64).ravel())
    if u.size == 0:
        raise ConfigError("resample_weights: no weights given.")
    n = n_rows * n_cols
    q = np.interp((np.arange(n) + 0.5) / n * (u.size - 1), np.arange(u.size), u)
    return rng.permutation(q).reshape(n_rows, n_cols)


def gdc_alpha(u_target: ArrayLike, u_hw: ArrayLike) -> NDArray[np.float64]:
    """Global drift compensation alpha = sum_j |sum_i u_ij| / sum_j |sum_i u~_ij| over the last two axes.

    A calibration read with an all-ones input vector gives the column sums; alpha rescales the layer output
    so that their total magnitude matches that of the target weights (Joshi et al. 2020, papers.md (d)).
    Leading axes of ``u_hw`` (candidates, repeats) broadcast.
    """
    ref = np.sum(np.abs(np.sum(u_target, axis=-2)), axis=-1)
    hw = np.sum(np.abs(np.sum(u_hw, axis=-2)), axis=-1)
    return ref / np.maximum(hw, 1e-12)


@dataclass(frozen=True)
class StrategyError:
    """NMSE of a strategy per repeat and time: ``nmse`` has shape (n_repeats, n_times)."""

    times_s: tuple[float, ...]
    nmse: NDArray[np.float64]

    @property
    def mean_per_time(self) -> NDArray[np.float64]:
        """Mean over repeats, per time."""
        return self.nmse.mean(axis=0)

    @property
    def sem_per_time(self) -> NDArray[np.float64]:
        """Standard error of that mean, per time."""
        n = self.nmse.shape[0]
        return self.nmse.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros(self.nmse.shape[1])

    @property
    def tnmse(self) -> float:
        """Time-averaged NMSE, mean over repeats."""
        return float(self.nmse.mean())

    @property
    def tnmse_sem(self) -> float:
        """Standard error of :attr:`tnmse` (the repeats' time averages are independent)."""
        per_repeat = self.nmse.mean(axis=1)
        n = per_repeat.size
        return float(per_repeat.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0


def evaluate_strategy_error(
    mapping: ConductanceMapping,
    u_matrices: Sequence[ArrayLike],
    device,
    rng: np.random.Generator,
    times_s: Sequence[float] = DEFAULT_TIMES_S,
    n_repeats: int = 30,
    compensate: bool = True,
    method: str = "gaussian",
) -> StrategyError:
    """Program the weights ``n_repeats`` times on fresh draws and measure the NMSE at every time.

    Each repeat programs every matrix (:func:`anacompile.programming.chip.program_chip`), then at each t reads
    the devices once (drift + 1/f noise, ``device.read``), decodes u~(t), applies GDC per matrix
    (``compensate``) and averages ((alpha u~ - u))^2 over all weights (max|u| = 1 per column, so this is the
    normalised error of papers.md).

    Args:
        mapping: the strategy.
        u_matrices: normalised weights, (inputs, outputs) matrices.
        device: the device model (``anacompile.devices.get``).
        rng: source of every draw.
        times_s: times after programming, s.
        n_repeats: independent programmings (chips).
        compensate: apply global drift compensation.
        method: programming method of :func:`program_chip`.

    Returns:
        The per-repeat, per-time NMSE.
    """
    if n_repeats < 1:
        raise ConfigError(f"n_repeats must be >= 1, got {n_repeats}.")
    mats = [np.asarray(u, dtype=np.float64) for u in u_matrices]
    n_total = sum(m.size for m in mats)
    g_min, g_max = device.g_min_us, device.g_max_us
    sig = mapping.significance
    gain = mapping.gain_us(g_min, g_max)
    targets = [mapping.encode(u, g_min, g_max) for u in mats]
    out = np.empty((n_repeats, len(times_s)))
    for r in range(n_repeats):
        progs = [program_chip(g_t, sig, gain, device, rng, method=method) for g_t in targets]
        for k, t in enumerate(times_s):
            sq = 0.0
            for u, (g_prog, nu) in zip(mats, progs, strict=True):
                u_hw = decode_pairs(device.read(g_prog, nu, float(t), rng), sig, gain)
                alpha = gdc_alpha(u, u_hw) if compensate else 1.0
                sq += float(np.sum((alpha * u_hw - u) ** 2))
            out[r, k] = sq / n_total
    return StrategyError(tuple(float(t) for t in times_s), out)
