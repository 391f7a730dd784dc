"""Weight-programming optimisation: a piecewise-linear strategy that minimises the weight error over time.

Mackin et al. 2022 (Nat. Commun. 13, 3765; reference/papers.md, (a) and "Weight-programming optimisation")
optimise, for a unit cell of P differential pairs W = sum_p F_p (G+_p - G-_p), the significance factors F_p,
the hardware weight scale k_w and the translation functions G+-_p(W), by differential evolution (DE) over a
hypercube x in [0, 1]^d whose "de-normalisation" always yields valid conductances. The weights are discretised
into nbins non-negative points u_0 = 0 < ... < u_{nbins-1} = 1 (mirrored for negative weights, linear in
between), so d = (P - 1) + 1 + nbins (2P - 1) (20 for two pairs and 6 points). De-normalisation, per point
(w_k = W_max u_k in µS, residual r = w_k), for pairs p = 0 .. P-1 (least significant first) [V-code, aihwkit
``wpo.py``]::

    U = sum_p F_p (g_max - g_min);   W_max = (0.05 + 0.95 x_kw) U;   k_w = W_max / max|u| = W_max
    S_p = F_p (g_max - g_min);  R_p = sum_{q>p} S_q
    lo = max(r - R_p, -S_p);  hi = min(r + R_p, S_p);  c_p = lo + x_{D,p,k} (hi - lo)  (c = hi for the last p)
    r <- r - c_p;  dg = c_p / F_p
    G+ = clip(lo' + x_{G,p,k} (hi' - lo'), g_min, g_max),  lo' = g_min + max(dg, 0),  hi' = g_max + min(dg, 0)
    G- = clip(G+ - dg, g_min, g_max)

so sum_p F_p (G+_p - G-_p) = w_k exactly: every candidate represents u exactly at the table points, and the
search is only over *how* (which pair, where along the line G+ - G- = dg), which decides the noise, drift and
read-noise the weight will see.

Objective: the TNMSE of :mod:`anacompile.programming.weight_error` (drift-compensated with GDC, time-averaged
over 1 s ... 1 y, density-weighted by sampling the network's normalised weights). Departures from ``wpo.py``,
each a parameter:

- common random numbers [I]: every candidate is scored on the *same* pre-drawn standard normals (programming,
  drift exponent, one read per t), so differences between candidates are not masked by sampling noise and DE
  does not chase lucky draws; the final comparison uses fresh draws (``n_repeats_final`` chips);
- table points at quantiles of |u| (density) instead of equally spaced [I];
- the initial population holds the best naive dual-pair strategy of an F scan (and its neighbourhood) so the
  search space provably contains it and the optimum is never worse on the search draws [I];
- DE stops early once the search loss is ``target_improvement`` below that seed, or at ``time_budget_s``.

The population is scored in one vectorised numpy call per generation (``vectorized=True``,
``updating='deferred'``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import differential_evolution
from scipy.stats import qmc

from anacompile.errors import ConfigError
from anacompile.mapping.base import ConductanceMapping
from anacompile.mapping.multi_pair import NPairMapping, dual_pair
from anacompile.mapping.piecewise import PiecewiseMapping
from anacompile.programming.weight_error import (
    DEFAULT_TIMES_S,
    StrategyError,
    evaluate_strategy_error,
    gdc_alpha,
    normalised_weights,
    resample_weights,
)

__all__ = [
    "DEFAULT_F_SCAN",
    "OptimizeSettings",
    "OptimizeReport",
    "StrategySpace",
    "optimize_strategy",
    "plot_strategy",
    "quantile_points",
]

logger = logging.getLogger(__name__)

DEFAULT_F_SCAN = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
"""Significance factors of the naive dual-pair scan (the published optimum is F = 2)."""

_KW_FLOOR = 0.05  # W_max >= 5 % of U (aihwkit wpo.py)


def quantile_points(u_values: ArrayLike, nbins: int, snap: Sequence[float] = ()) -> NDArray[np.float64]:
    """nbins table points 0 = u_0 < ... < u_{nbins-1} = 1 at equally spaced quantiles of |u|.

    Args:
        u_values: normalised weights (any shape; |u| is clipped to 1).
        nbins: number of non-negative points (>= 2).
        snap: values in (0, 1) each moved onto the nearest interior point (used to place the LSP-full
            breakpoint 1/(1 + F) of a naive dual pair on the grid so that strategy is exactly representable).

    Returns:
        Strictly increasing points; quantiles closer than 1e-3 are spread to keep the grid valid.
    """
    if nbins < 2:
        raise ConfigError(f"nbins must be >= 2 (0 and 1 are always points), got {nbins}.")
    a = np.clip(np.abs(np.asarray(u_values, dtype=np.float64).ravel()), 0.0, 1.0)
    pts = np.quantile(a, np.linspace(0.0, 1.0, nbins)) if a.size else np.linspace(0, 1, nbins)
    pts[0], pts[-1] = 0.0, 1.0
    for s in snap:
        if 0.0 < s < 1.0 and nbins > 2:
            k = 1 + int(np.argmin(np.abs(pts[1:-1] - s)))
            pts[k] = s
    pts = np.sort(pts)
    min_gap = 1e-3
    for k in range(1, nbins):  # enforce strictly increasing, keeping the last point at 1
        pts[k] = max(pts[k], pts[k - 1] + min_gap)
    if pts[-1] > 1.0:
        pts = np.linspace(0.0, 1.0, nbins) * 0.5 + pts / pts[-1] * 0.5
        pts[-1] = 1.0
    return pts


@dataclass(frozen=True, eq=False)
class StrategySpace:
    """The hypercube [0, 1]^d of strategies and its de-normalisation (module docstring).

    Attributes:
        u_points_pos: nbins non-negative table points, 0 first, 1 last.
        g_min_us: device window bottom, µS.
        g_max_us: device window top, µS.
        n_pairs: P (>= 1); pair 0 has significance 1.
        f_bounds: range of every free F_p (p >= 1).
    """

    u_points_pos: NDArray[np.float64]
    g_min_us: float
    g_max_us: float
    n_pairs: int = 2
    f_bounds: tuple[float, float] = (1.0, 5.0)

    def __post_init__(self) -> None:
        pts = np.asarray(self.u_points_pos, dtype=np.float64)
        object.__setattr__(self, "u_points_pos", pts)
        if pts.ndim != 1 or pts.size < 2 or pts[0] != 0.0 or pts[-1] != 1.0 or np.any(np.diff(pts) <= 0):
            raise ConfigError("StrategySpace.u_points_pos: need strictly increasing points from 0 to 1.")
        if self.n_pairs < 1:
            raise ConfigError(f"StrategySpace.n_pairs must be >= 1, got {self.n_pairs}.")
        lo, hi = self.f_bounds
        if not (1.0 <= lo <= hi and np.isfinite(hi)):
            raise ConfigError(f"StrategySpace.f_bounds: need 1 <= F_min <= F_max, got {self.f_bounds}.")
        if not self.g_max_us > self.g_min_us:
            raise ConfigError(f"StrategySpace: need g_max_us > g_min_us, got {self.g_min_us}, {self.g_max_us}.")

    @property
    def nbins(self) -> int:
        """Number of non-negative table points."""
        return int(self.u_points_pos.size)

    @property
    def dim(self) -> int:
        """d = (P - 1) free F + 1 (k_w) + nbins (2P - 1)."""
        return (self.n_pairs - 1) + 1 + self.nbins * (2 * self.n_pairs - 1)

    @property
    def u_points(self) -> NDArray[np.float64]:
        """All 2 nbins - 1 table points, -1 ... 0 ... 1."""
        return np.concatenate([-self.u_points_pos[:0:-1], self.u_points_pos])

    def significance(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """F_p of candidates x (S, d) -> (S, P), F_0 = 1."""
        lo, hi = self.f_bounds
        f = np.ones((x.shape[0], self.n_pairs))
        f[:, 1:] = lo + x[:, : self.n_pairs - 1] * (hi - lo)
        return f

    def denormalise(self, x: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Candidates x (S, d) in [0, 1] -> (F (S, P), gain_us (S,), tables (S, P, 2, 2 nbins - 1) µS)."""
        x = np.clip(np.atleast_2d(np.asarray(x, dtype=np.float64)), 0.0, 1.0)
        if x.shape[1] != self.dim:
            raise ConfigError(f"StrategySpace: candidates need {self.dim} coordinates, got {x.shape[1]}.")
        n_s, n_p, n_b = x.shape[0], self.n_pairs, self.nbins
        g_min, g_max = self.g_min_us, self.g_max_us
        f = self.significance(x)
        s_p = f * (g_max - g_min)  # (S, P)
        u_tot = s_p.sum(axis=1)
        w_max = (_KW_FLOOR + (1.0 - _KW_FLOOR) * x[:, n_p - 1]) * u_tot  # (S,)
        per_point = x[:, n_p:].reshape(n_s, n_b, 2 * n_p - 1)  # [x_D,0 .. x_D,P-2, x_G,0 .. x_G,P-1]
        r = w_max[:, None] * self.u_points_pos[None, :]  # (S, nbins) µS
        pos = np.empty((n_s, n_p, 2, n_b))
        for p in range(n_p):
            rest = s_p[:, p + 1 :].sum(axis=1)[:, None]
            sp = s_p[:, p : p + 1]
            lo = np.maximum(r - rest, -sp)
            hi = np.minimum(r + rest, sp)
            c = lo + per_point[:, :, p] * (hi - lo) if p < n_p - 1 else hi
            r = r - c
            dg = c / f[:, p : p + 1]
            lo_g = g_min + np.maximum(dg, 0.0)
            hi_g = g_max + np.minimum(dg, 0.0)
            g_plus = np.clip(lo_g + per_point[:, :, n_p - 1 + p] * (hi_g - lo_g), g_min, g_max)
            pos[:, p, 0] = g_plus
            pos[:, p, 1] = np.clip(g_plus - dg, g_min, g_max)
        # u -> -u swaps G+ and G- (polarity axis reversed); points nbins-1 .. 1, then 0 .. nbins-1
        tables = np.concatenate([pos[:, :, ::-1, :0:-1], pos], axis=-1)
        return f, w_max, tables

    def mapping(self, x: ArrayLike, device: str = "", info: dict[str, Any] | None = None) -> PiecewiseMapping:
        """The :class:`PiecewiseMapping` of one candidate x (d,)."""
        f, gain, tables = self.denormalise(np.asarray(x, dtype=np.float64)[None, :])
        return PiecewiseMapping(
            significance_factors=tuple(float(v) for v in f[0]),
            u_points=self.u_points,
            tables_us=tables[0],
            gain=float(gain[0]),
            g_min_us=self.g_min_us,
            g_max_us=self.g_max_us,
            device=device,
            info=dict(info or {}),
        )

    def naive_vector(self, significance: Sequence[float]) -> NDArray[np.float64]:
        """The x that reproduces the naive LSP-first fill of :class:`NPairMapping` at the table points.

        It has x_kw = 1 (W_max = U), pair contributions c_p = clip(w - L_p, 0, S_p) and every G+ at the bottom
        of its feasible interval (the other device at g_min).

        Raises:
            ConfigError: wrong number of pairs, F_0 != 1, or an F outside ``f_bounds``.
        """
        f = np.asarray(significance, dtype=np.float64)
        lo_f, hi_f = self.f_bounds
        if f.size != self.n_pairs or f[0] != 1.0 or np.any(f[1:] < lo_f - 1e-12) or np.any(f[1:] > hi_f + 1e-12):
            raise ConfigError(f"naive_vector: significance {tuple(f)} does not fit this space.")
        x = np.zeros(self.dim)
        if self.n_pairs > 1:
            x[: self.n_pairs - 1] = (f[1:] - lo_f) / (hi_f - lo_f) if hi_f > lo_f else 0.0
        x[self.n_pairs - 1] = 1.0
        window = self.g_max_us - self.g_min_us
        s_p = f * window
        per_point = x[self.n_pairs :].reshape(self.nbins, 2 * self.n_pairs - 1)
        r = s_p.sum() * self.u_points_pos
        level = 0.0
        for p in range(self.n_pairs - 1):
            rest = s_p[p + 1 :].sum()
            lo = np.maximum(r - rest, -s_p[p])
            hi = np.minimum(r + rest, s_p[p])
            c = np.clip(s_p.sum() * self.u_points_pos - level, 0.0, s_p[p])
            span = hi - lo
            per_point[:, p] = np.where(span > 0, (c - lo) / np.where(span > 0, span, 1.0), 0.0)
            r = r - c
            level += s_p[p]
        return np.clip(x, 0.0, 1.0)


class _CommonNormals:
    """A stand-in generator that hands every caller the same pre-drawn standard normals, broadcast.

    The device model draws through exactly one ``standard_normal(shape)`` per call (the PCM model documents
    this); asking for shape (S,) + base.shape gives every candidate s the same base draws.
    """

    def __init__(self, base: NDArray[np.float64]) -> None:
        self.base = base

    def standard_normal(self, size: Any = None, dtype: Any = np.float64, out: Any = None) -> NDArray[np.float64]:
        shape = tuple(np.atleast_1d(size)) if size is not None else self.base.shape
        if shape[len(shape) - self.base.ndim :] != self.base.shape:
            raise ConfigError(
                f"Common random numbers: the device asked for normals of shape {shape}, which does not end "
                f"with {self.base.shape}; the optimiser needs a device that draws one normal per device."
            )
        return np.array(np.broadcast_to(self.base, shape), dtype=dtype)


class _CRNScorer:
    """TNMSE of a whole population on one fixed set of draws (common random numbers)."""

    def __init__(
        self,
        space: StrategySpace,
        u_matrix: NDArray[np.float64],
        device,
        times_s: Sequence[float],
        rng: np.random.Generator,
        chunk: int = 8,
    ) -> None:
        self.space, self.device, self.times_s, self.chunk = space, device, tuple(times_s), chunk
        self.u_matrix = u_matrix
        self.u = u_matrix.ravel()
        pts = space.u_points
        idx = np.clip(np.searchsorted(pts, self.u, side="right") - 1, 0, pts.size - 2)
        self.idx = idx
        self.frac = (self.u - pts[idx]) / (pts[idx + 1] - pts[idx])
        shape = (space.n_pairs, 2, self.u.size)
        self.xi_prog = rng.standard_normal(shape)
        self.xi_nu = rng.standard_normal(shape)
        self.xi_read = rng.standard_normal((len(self.times_s),) + shape)
        self.n_evaluations = 0

    def __call__(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        x = np.atleast_2d(x)
        out = np.empty(x.shape[0])
        for start in range(0, x.shape[0], self.chunk):
            out[start : start + self.chunk] = self._score(x[start : start + self.chunk])
        self.n_evaluations += x.shape[0]
        return out

    def per_time(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """NMSE per time for candidates x (S, d) -> (S, T)."""
        return self._score(np.atleast_2d(x), per_time=True)

    def _score(self, x: NDArray[np.float64], per_time: bool = False) -> NDArray[np.float64]:
        f, gain, tables = self.space.denormalise(x)
        lo = tables[..., self.idx]
        g_t = lo + self.frac * (tables[..., self.idx + 1] - lo)  # (S, P, 2, N)
        dev = self.device
        g_prog = dev.program(g_t, _CommonNormals(self.xi_prog))
        nu = dev.drift_exponents(g_t, _CommonNormals(self.xi_nu))
        weights = (f / gain[:, None])[:, :, None]  # (S, P, 1)
        rows, cols = self.u_matrix.shape
        errs = np.empty((x.shape[0], len(self.times_s)))
        for k, t in enumerate(self.times_s):
            g = dev.read(g_prog, nu, float(t), _CommonNormals(self.xi_read[k]))
            u_hw = np.sum(weights * (g[:, :, 0] - g[:, :, 1]), axis=1)  # (S, N)
            alpha = gdc_alpha(self.u_matrix, u_hw.reshape(-1, rows, cols))
            errs[:, k] = np.mean((alpha[:, None] * u_hw - self.u) ** 2, axis=1)
        return errs if per_time else errs.mean(axis=1)


@dataclass(frozen=True)
class OptimizeSettings:
    """Settings of :func:`optimize_strategy` (all with defaults; every one is a documented choice).

    Attributes:
        n_pairs: differential pairs per weight (P).
        nbins: non-negative table points (mirrored: 2 nbins - 1 points).
        times_s: time grid of the objective, s after programming.
        f_bounds: range of the free significance factor(s).
        f_scan: F values of the naive dual-pair scan (seed and baseline).
        n_rows: rows of the resampled weight matrix scored per candidate.
        n_cols: its columns (n_rows x n_cols weights, one GDC alpha for the matrix).
        popsize: DE population size (total candidates, not a multiplier).
        seeded_fraction: share of the population drawn around the best naive strategy (the rest Latin
            hypercube).
        seed_spread: std of the Gaussian jitter of those seeded candidates (hypercube units).
        maxiter: DE generations at most.
        mutation: DE differential weight (or (min, max) dithering).
        recombination: DE crossover probability.
        target_improvement: stop once the search loss is this fraction below the seed (best naive) loss.
        patience: stop after this many generations without a relative improvement of 1e-4 of the best.
        seed_with_naive: put the naive scan strategies (and jitter around the best) in the initial
            population; false gives a plain Latin hypercube start (to test the search itself).
        time_budget_s: stop DE after this many seconds (the final fresh-draw comparison comes on top).
        n_repeats_final: fresh-draw programmings for the final comparison.
        points: ``quantile`` (table points at quantiles of |u|) or ``linear``.
    """

    n_pairs: int = 2
    nbins: int = 6
    times_s: tuple[float, ...] = DEFAULT_TIMES_S
    f_bounds: tuple[float, float] = (1.0, 5.0)
    f_scan: tuple[float, ...] = DEFAULT_F_SCAN
    n_rows: int = 32
    n_cols: int = 128
    popsize: int = 48
    seeded_fraction: float = 0.5
    seed_spread: float = 0.05
    maxiter: int = 300
    mutation: float | tuple[float, float] = (0.3, 0.8)
    recombination: float = 0.5
    target_improvement: float = 0.15
    patience: int = 40
    seed_with_naive: bool = True
    time_budget_s: float = 60.0
    n_repeats_final: int = 30
    points: str = "quantile"

    def __post_init__(self) -> None:
        checks = [
            ("n_pairs", self.n_pairs >= 2, ">= 2 (the optimiser searches the MSP/LSP split)"),
            ("nbins", self.nbins >= 2, ">= 2"),
            ("times_s", len(self.times_s) >= 1 and all(t >= 0 for t in self.times_s), "non-empty, >= 0 s"),
            ("n_rows", self.n_rows >= 1, ">= 1"),
            ("n_cols", self.n_cols >= 1, ">= 1"),
            ("popsize", self.popsize >= 5, ">= 5"),
            ("seeded_fraction", 0.0 <= self.seeded_fraction <= 1.0, "in [0, 1]"),
            ("seed_spread", self.seed_spread >= 0.0, ">= 0"),
            ("maxiter", self.maxiter >= 0, ">= 0"),
            ("patience", self.patience >= 1, ">= 1"),
            ("recombination", 0.0 <= self.recombination <= 1.0, "in [0, 1]"),
            ("target_improvement", 0.0 <= self.target_improvement < 1.0, "in [0, 1)"),
            ("time_budget_s", self.time_budget_s > 0, "> 0 s"),
            ("n_repeats_final", self.n_repeats_final >= 2, ">= 2"),
            ("points", self.points in ("quantile", "linear"), "'quantile' or 'linear'"),
            (
                "f_scan",
                len(self.f_scan) >= 1 and all(self.f_bounds[0] <= f <= self.f_bounds[1] for f in self.f_scan),
                f"non-empty, inside f_bounds {self.f_bounds}",
            ),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ConfigError(f"OptimizeSettings.{name} = {getattr(self, name)!r}: must be {allowed}.")


@dataclass(frozen=True, eq=False)
class OptimizeReport:
    """Result of :func:`optimize_strategy`: the strategy and its comparison with naive dual pairs.

    Errors are normalised weight MSEs (module :mod:`anacompile.programming.weight_error`), measured on fresh
    draws (``n_repeats_final`` chips) of the full weight set. ``search_loss_*`` are on the search draws;
    ``coordinate_check`` is the smallest relative change of the search loss when one hypercube coordinate of
    the optimum moves by +-0.02 (>= 0: no single move improves it, a local optimum at that resolution).
    """

    mapping: PiecewiseMapping
    times_s: tuple[float, ...]
    optimised: StrategyError
    naive: dict[float, StrategyError]
    best_naive_f: float
    search_loss_seed: float
    search_loss_best: float
    coordinate_check: float
    scan_search_loss: dict[float, float]
    generations: int
    evaluations: int
    elapsed_s: float
    stop_reason: str
    settings: OptimizeSettings = field(default_factory=OptimizeSettings)

    @property
    def optimised_f(self) -> float:
        """MSP significance factor of the optimum."""
        return float(self.mapping.significance[-1])

    def reduction_vs(self, f: float) -> float:
        """1 - TNMSE_opt / TNMSE_naive(F) on the fresh draws."""
        return 1.0 - self.optimised.tnmse / self.naive[f].tnmse

    def beats_best_naive(self) -> str:
        """``better`` / ``no worse`` (within 2 standard errors) / ``worse`` than the best naive scan entry."""
        best = self.naive[self.best_naive_f]
        diff = self.optimised.tnmse - best.tnmse
        se = math.hypot(self.optimised.tnmse_sem, best.tnmse_sem)
        if diff < -2 * se:
            return "better"
        return "no worse" if diff <= 2 * se else "worse"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (the strategy itself is ``mapping.to_dict()``)."""

        def err(e: StrategyError) -> dict[str, Any]:
            return {
                "tnmse": e.tnmse,
                "tnmse_sem": e.tnmse_sem,
                "per_time": e.mean_per_time.tolist(),
                "per_time_sem": e.sem_per_time.tolist(),
            }

        return {
            "times_s": list(self.times_s),
            "optimised": err(self.optimised) | {"F": self.optimised_f, "gain_us": self.mapping.gain},
            "naive_scan": {str(f): err(e) for f, e in self.naive.items()},
            "best_naive_f": self.best_naive_f,
            "reduction_vs_best_naive": self.reduction_vs(self.best_naive_f),
            "reduction_vs_f1": self.reduction_vs(1.0) if 1.0 in self.naive else None,
            "verdict_vs_best_naive": self.beats_best_naive(),
            "published_optimal_f": 2.0,
            "search_loss_seed": self.search_loss_seed,
            "search_loss_best": self.search_loss_best,
            "coordinate_check": self.coordinate_check,
            "scan_search_loss": {str(f): v for f, v in self.scan_search_loss.items()},
            "generations": self.generations,
            "evaluations": self.evaluations,
            "elapsed_s": self.elapsed_s,
            "stop_reason": self.stop_reason,
            "n_repeats": int(self.optimised.nmse.shape[0]),
        }


def _progress(show: bool):
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not (show and console.is_terminal),
        transient=True,
    )


def optimize_strategy(
    weights: Sequence[ArrayLike] | ArrayLike,
    device,
    settings: OptimizeSettings | None = None,
    seed: int = 0,
    show_progress: bool = True,
    callback: Callable[[int, float], None] | None = None,
) -> OptimizeReport:
    """Optimise a P-pair piecewise-linear programming strategy for ``device`` and the given weights.

    Steps: normalise the weights per column (u = W / gamma); resample an ``n_rows x n_cols`` matrix from their
    density; place the table points (quantiles of |u|); score the naive dual pairs F in ``f_scan`` on common
    random numbers; seed DE with the best one (and jitter around it) plus a Latin hypercube; run DE until
    ``target_improvement`` or ``time_budget_s``; finally compare the optimum with every naive scan entry on
    fresh draws of the full weight set.

    Args:
        weights: crossbar matrices (inputs, outputs), e.g. from
            :func:`anacompile.programming.weight_error.load_weight_matrices`, or one array.
        device: the device model (``anacompile.devices.get("pcm")``).
        settings: search settings; defaults of :class:`OptimizeSettings`.
        seed: seeds every draw (search draws, DE, final fresh draws: independent streams).
        show_progress: rich progress on stderr (only when stderr is a terminal).
        callback: called as ``callback(generation, best_loss)`` after each generation.

    Returns:
        The report, whose ``mapping`` is the optimised :class:`PiecewiseMapping`.
    """
    s = settings or OptimizeSettings()
    t_start = time.perf_counter()
    mats = [weights] if isinstance(weights, np.ndarray) else list(weights)
    if not mats:
        raise ConfigError("optimize_strategy: no weights given.")
    u_mats = normalised_weights([np.atleast_2d(np.asarray(m, dtype=np.float64)) for m in mats])
    u_all = np.concatenate([u.ravel() for u in u_mats])
    ss = np.random.SeedSequence(seed)
    seq_sample, seq_crn, seq_de, seq_final = ss.spawn(4)
    rng_sample, rng_de = np.random.default_rng(seq_sample), np.random.default_rng(seq_de)
    u_sample = resample_weights(u_all, s.n_rows, s.n_cols, rng_sample)
    g_min, g_max = float(device.g_min_us), float(device.g_max_us)

    def build_space(snap: Sequence[float]) -> StrategySpace:
        pts = (
            quantile_points(u_all, s.nbins, snap)
            if s.points == "quantile"
            else quantile_points(np.linspace(0, 1, 10001), s.nbins, snap)
        )
        return StrategySpace(pts, g_min, g_max, n_pairs=s.n_pairs, f_bounds=s.f_bounds)

    def naive_sig(f: float) -> tuple[float, ...]:
        return (1.0,) + (float(f),) * (s.n_pairs - 1)

    # 1. F scan on common random numbers, with the LSP-full breakpoint of each F on the grid.
    scan_loss: dict[float, float] = {}
    for f in s.f_scan:
        sp = build_space([1.0 / (1.0 + f)])
        sc = _CRNScorer(sp, u_sample, device, s.times_s, np.random.default_rng(seq_crn))
        scan_loss[f] = float(sc(sp.naive_vector(naive_sig(f))[None, :])[0])
    best_f = min(scan_loss, key=scan_loss.__getitem__)
    space = build_space([1.0 / (1.0 + best_f)])
    scorer = _CRNScorer(space, u_sample, device, s.times_s, np.random.default_rng(seq_crn))
    x_seed = space.naive_vector(naive_sig(best_f))
    loss_seed = float(scorer(x_seed[None, :])[0])
    logger.info("naive dual-pair scan (search draws): %s; best F = %g", scan_loss, best_f)

    # 2. Initial population: the seed, jitter around it, the other scan entries, Latin hypercube.
    d = space.dim
    n_seeded = max(1, int(round(s.seeded_fraction * s.popsize)))
    pop: list[NDArray[np.float64]] = []
    if s.seed_with_naive:
        pop.append(x_seed)
        for f in s.f_scan:
            if f != best_f and len(pop) < s.popsize:
                pop.append(space.naive_vector(naive_sig(f)))
        while len(pop) < n_seeded:
            pop.append(np.clip(x_seed + s.seed_spread * rng_de.standard_normal(d), 0.0, 1.0))
    n_lhs = s.popsize - len(pop)
    if n_lhs > 0:
        pop.extend(qmc.LatinHypercube(d=d, seed=rng_de).random(n_lhs))
    init = np.asarray(pop[: s.popsize])

    # 3. Differential evolution, whole population per call.
    target = loss_seed * (1.0 - s.target_improvement)
    state: dict[str, Any] = {"gen": 0, "best": math.inf, "reason": "maxiter", "last_gain_gen": 0}
    with _progress(show_progress) as progress:
        task = progress.add_task("optimise strategy", total=s.maxiter, status=f"seed {loss_seed:.3e}")

        def on_generation(intermediate_result) -> bool:
            state["gen"] += 1
            best = float(intermediate_result.fun)
            if best < state["best"] * (1.0 - 1e-4):
                state["last_gain_gen"] = state["gen"]
            state["best"] = min(best, state["best"])
            progress.update(task, advance=1, status=f"best {state['best']:.3e} (seed {loss_seed:.3e})")
            if callback is not None:
                callback(state["gen"], state["best"])
            if state["best"] <= target:
                state["reason"] = "target"
                return True
            if time.perf_counter() - t_start > s.time_budget_s:
                state["reason"] = "time budget"
                return True
            if state["gen"] - state["last_gain_gen"] >= s.patience:
                state["reason"] = "stalled"
                return True
            return False

        if s.maxiter > 0:
            res = differential_evolution(
                lambda xt: scorer(xt.T),
                bounds=[(0.0, 1.0)] * d,
                strategy="best1bin",
                maxiter=s.maxiter,
                popsize=s.popsize,
                init=init,
                mutation=s.mutation,
                recombination=s.recombination,
                tol=0.0,
                atol=0.0,
                polish=False,
                seed=rng_de,
                updating="deferred",
                vectorized=True,
                callback=on_generation,
            )
            x_best, loss_best = np.asarray(res.x), float(res.fun)
        else:
            x_best, loss_best = x_seed, loss_seed
    if s.seed_with_naive and loss_best > loss_seed:  # cannot happen with the seed in the population
        x_best, loss_best = x_seed, loss_seed
    elapsed_search = time.perf_counter() - t_start
    coordinate_gain = _coordinate_check(scorer, x_best, loss_best)

    # 4. Fresh-draw comparison on the full weight set.
    mapping = space.mapping(
        x_best,
        device=getattr(device, "name", ""),
        info={
            "optimiser": "differential_evolution",
            "seed": seed,
            "nbins": s.nbins,
            "times_s": list(s.times_s),
            "search_loss_seed": loss_seed,
            "search_loss_best": loss_best,
            "best_naive_f": best_f,
        },
    )
    naive: dict[float, StrategyError] = {}
    rngs = [np.random.default_rng(c) for c in seq_final.spawn(len(s.f_scan) + 1)]
    for f, r in zip(s.f_scan, rngs, strict=False):
        naive[f] = evaluate_strategy_error(
            _naive_mapping(naive_sig(f)), u_mats, device, r, s.times_s, s.n_repeats_final
        )
    optimised = evaluate_strategy_error(mapping, u_mats, device, rngs[-1], s.times_s, s.n_repeats_final)
    best_fresh = min(naive, key=lambda f: naive[f].tnmse)
    return OptimizeReport(
        mapping=mapping,
        times_s=tuple(s.times_s),
        optimised=optimised,
        naive=naive,
        best_naive_f=best_fresh,
        search_loss_seed=loss_seed,
        search_loss_best=loss_best,
        coordinate_check=coordinate_gain,
        scan_search_loss=scan_loss,
        generations=state["gen"],
        evaluations=scorer.n_evaluations,
        elapsed_s=elapsed_search,
        stop_reason=state["reason"],
        settings=s,
    )


def _coordinate_check(scorer: _CRNScorer, x: NDArray[np.float64], loss: float, step: float = 0.02) -> float:
    """Smallest relative change of the search loss over single-coordinate moves of +-step from x.

    Moves that do not change the loss (coordinates without effect at this point) are left out. >= 0 means no
    single move improves the optimum on the search draws (a local optimum at that resolution).
    """
    moves = []
    for i in range(x.size):
        for sgn in (1.0, -1.0):
            y = x.copy()
            y[i] = np.clip(y[i] + sgn * step, 0.0, 1.0)
            if y[i] != x[i]:
                moves.append(y)
    rel = scorer(np.asarray(moves)) / loss - 1.0 if moves else np.zeros(0)
    rel = rel[np.abs(rel) > 1e-9]  # coordinates with no effect here (e.g. the position of a full pair)
    return float(rel.min()) if rel.size else 0.0


def _naive_mapping(significance: tuple[float, ...]) -> ConductanceMapping:
    return dual_pair(significance[1]) if len(significance) == 2 else NPairMapping(significance)


def plot_strategy(mapping: PiecewiseMapping, path, title: str = "") -> None:
    """Plot G+-_p versus u (one panel per pair) and save it as an image (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    u = np.linspace(-1.0, 1.0, 801)
    g = mapping.encode(u, mapping.g_min_us, mapping.g_max_us)
    fig, axes = plt.subplots(1, mapping.n_pairs, figsize=(4.5 * mapping.n_pairs, 3.6), sharey=True)
    axes = np.atleast_1d(axes)
    for p, ax in enumerate(axes):
        ax.plot(u, g[p, 0], label="G+", color="tab:red")
        ax.plot(u, g[p, 1], label="G-", color="tab:blue")
        ax.plot(mapping.u_points, mapping.tables_us[p, 0], "o", ms=3, color="tab:red")
        ax.plot(mapping.u_points, mapping.tables_us[p, 1], "o", ms=3, color="tab:blue")
        ax.set_title(
            f"pair {p} (F = {mapping.significance[p]:.3g})"
            + (" LSP" if p == 0 else " MSP" if p == mapping.n_pairs - 1 else "")
        )
        ax.set_xlabel("normalised weight u = W / max|W|")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("target conductance (µS)")
    axes[0].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
