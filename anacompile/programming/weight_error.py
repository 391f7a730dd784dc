"""Weight error of a programming strategy over time: the objective of weight-programming optimisation.

Mackin et al. 2022 (Nat. Commun. 13, 3765) score a strategy by a time-averaged, density-weighted, normalised
weight error with drift compensation, without running the network (reference/papers.md, (a), "Objective",
and "Weight-programming optimisation"):

    TNMSE = (1/|T|) sum_{t in T} mean_ij ((alpha(t) W~_ij(t) - W_ij) / max|W|)^2

Here the weights are the normalised u = W / gamma of the compiler (per-column scale gamma, so max|u| = 1 per
column, :mod:`anacompile.mapping.column_scaling`), W~(t) is the weight the chip represents after programming,
drift and one 1/f read at t, and alpha(t) is global drift compensation (GDC, Joshi et al. 2020; papers.md
(d)), the same calibration read the chip stage and the compiled model apply
(:func:`anacompile.crossbar.compensation.gdc_alpha`, one-hot inputs as in aihwkit's code):

    alpha(t) = sum_ij |W_ij| / sum_ij |W~_ij(t)|.

(aihwkit's ``wpo.py`` multiplies the error by 10 before squaring, i.e. reports 100 x this TNMSE; relative
comparisons are unaffected.) The density weighting kappa_j of (a) comes from sampling W from the network's own
weight distribution.

Weight matrices are read by :mod:`anacompile.programming.weights` (re-exported here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from anacompile.crossbar.compensation import gdc_alpha
from anacompile.errors import ConfigError
from anacompile.mapping.base import ConductanceMapping, decode_pairs
from anacompile.programming.chip import program_chip
from anacompile.programming.weights import (
    crossbar_matrices,
    load_weight_matrices,
    normalised_weights,
    resample_weights,
)

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
