"""Closed-loop program-and-verify of whole crossbar rows, with device-to-device pulse-response variability.

Mackin et al. 2019 (Adv. Electron. Mater. 5, 1900026; reference/papers.md, (b)) program the weights of a row in
parallel with closed-loop pulses, verify, and mask the weights that have converged; a weight W = F (G+ - G-) +
(g+ - g-) is programmed most significant pair (MSP) first and the least significant pair (LSP) then corrects
the residual. They report that 98-99 % of weights reach their target whatever the weight distribution and
despite large variability of the conductance-versus-pulse characteristics, and that P_fail falls as the pulse
budget grows [V-abs]. The paper's pulse model, tolerance, budget and algorithm steps were not recovered: the
model below is inferred [I], and every number in it is a field of :class:`ProgramVerifyParams`.

Device response to one SET pulse (partial crystallisation, conductance only goes up) [I]::

    dg = a * k_d * (1 - g / g_sat)^gamma_d * (1 + s_rel xi) + s_abs xi'       g <- clip(g + dg, 0, g_sat)

with a the pulse strength the controller chooses, k_d ~ LogNormal(0, s_k) the device's step gain,
gamma_d ~ N(gamma_0, s_gamma) (>= 0) its saturation non-linearity, g_sat = saturation_ratio * g_max, and
s_rel, s_abs the cycle-to-cycle noise of each pulse (xi, xi' ~ N(0, 1), fresh per pulse). Devices start from
RESET at |N(reset_mean, reset_sigma)|.

Controller (one loop over pulses; every device of the matrix is updated at once with masks):

1. verify-read every device, g^ = g + N(0, max(read_rel g, read_floor)), and the weight u^ it represents; a weight
   with |u^ - u_T| <= verify_fraction * tol is masked for good (converged);
2. the active pair of each weight gets effective targets (a, b) for (G+, G-): the mapping's targets for the
   MSP; on entering a lower pair, its difference is set to absorb the residual of the pairs above
   (D = (u_T gain - sum_{q != p} F_q d^_q) / F_p, with d^_q read for the pairs already programmed and the
   mapping's difference for those still to come), keeping the mapping's position on the line G+ - G- = D where
   possible (a = max(a_map, b_map + D), b = a - D);
3. since a SET pulse cannot lower a conductance, an overshoot moves both targets up by the excess (the
   difference is kept); each device below its target by more than ``device_tol_us`` gets a pulse of strength
   a = min(eta * gap, max_step_us) / (1 - g^/g_sat)^gamma_0, the nominal "jump table" inverse;
4. a weight leaves a non-final pair when both devices are within ``device_tol_us`` of their targets or the
   pair's share of the budget is spent; in the last pair, a weight whose devices are on target but whose
   read is still out of tolerance is re-targeted from the current read.

P_fail is the fraction of weights with |u_prog - u_T| > tol after the pulse budget, u_prog being the *true*
(noise-free) programmed weight; verify-read noise can therefore let a weight stop out of tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike, NDArray

from anacompile.errors import ConfigError
from anacompile.mapping.base import ConductanceMapping, decode_pairs

__all__ = [
    "DEFAULT_BUDGETS",
    "PFailPoint",
    "ProgramVerifyParams",
    "ProgramVerifyResult",
    "PulseResponse",
    "draw_pulse_response",
    "p_fail_curve",
    "plot_p_fail_curve",
    "program_verify",
    "program_verify_conductances",
]

DEFAULT_BUDGETS = (4, 6, 8, 10, 12, 16, 20, 30, 40)
"""Pulse budgets of the P_fail curve (pulses per weight, all pairs together)."""


@dataclass(frozen=True)
class ProgramVerifyParams:
    """Pulse response, verify read and controller of the program-and-verify simulation (all inferred, [I]).

    Attributes:
        saturation_ratio: g_sat / g_max; steps shrink as (1 - g/g_sat)^gamma [I].
        step_gain_sigma: s_k, std of ln k_d (device-to-device spread of the step size) [I].
        nonlinearity_mean: gamma_0, mean saturation exponent (also the controller's nominal model) [I].
        nonlinearity_sigma: s_gamma, device-to-device std of gamma_d [I].
        c2c_sigma_rel: s_rel, cycle-to-cycle relative std of one pulse's step [I].
        c2c_sigma_us: s_abs, cycle-to-cycle additive std of one pulse's step, µS [I].
        max_step_us: largest step one pulse may be asked for (at the device's current conductance), µS [I].
        reset_mean_us: mean conductance after RESET, µS [I].
        reset_sigma_us: its std, µS (folded at 0) [I].
        verify_read_sigma_rel: relative std of a verify read (short integration window) [I].
        verify_read_floor_us: floor of the verify-read std, µS [I].
        eta: controller gain, the fraction of the remaining gap one pulse is asked for [I].
        tol: tolerance on the normalised weight u = W / gamma (0.02 = 2 % of the column's max |W|) [I].
        verify_fraction: the controller masks a weight once its *read* is within verify_fraction * tol,
            a margin for the verify-read noise [I].
        device_tol_us: per-device tolerance before the last pair, µS [I].
        budget: pulses per weight (all pairs together) [I].
        msp_fraction: share of the budget the pairs above the LSP may use together [I].
        t_slot_s: one pulse plus one verify read of a row, s (for the programming time) [I].
    """

    saturation_ratio: float = 1.25
    step_gain_sigma: float = 0.4
    nonlinearity_mean: float = 1.0
    nonlinearity_sigma: float = 0.3
    c2c_sigma_rel: float = 0.3
    c2c_sigma_us: float = 0.1
    max_step_us: float = 8.0
    reset_mean_us: float = 0.1
    reset_sigma_us: float = 0.1
    verify_read_sigma_rel: float = 0.01
    verify_read_floor_us: float = 0.05
    eta: float = 0.7
    tol: float = 0.02
    verify_fraction: float = 0.5
    device_tol_us: float = 0.3
    budget: int = 20
    msp_fraction: float = 0.5
    t_slot_s: float = 1e-6

    def __post_init__(self) -> None:
        positive = ("saturation_ratio", "max_step_us", "eta", "tol", "verify_fraction", "device_tol_us",
                    "t_slot_s")
        non_negative = ("step_gain_sigma", "nonlinearity_mean", "nonlinearity_sigma", "c2c_sigma_rel",
                        "c2c_sigma_us", "reset_mean_us", "reset_sigma_us", "verify_read_sigma_rel",
                        "verify_read_floor_us")
        for name in positive + non_negative:
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v)) or v < 0 or (name in positive and v == 0):
                raise ConfigError(f"ProgramVerifyParams.{name} = {v!r}: must be a finite number "
                                  f"{'> 0' if name in positive else '>= 0'}.")
        if self.saturation_ratio < 1.0:
            raise ConfigError(f"ProgramVerifyParams.saturation_ratio = {self.saturation_ratio}: must be >= 1.")
        if self.eta > 1.5:
            raise ConfigError(f"ProgramVerifyParams.eta = {self.eta}: must be in (0, 1.5].")
        if not (isinstance(self.budget, int) and self.budget >= 1):
            raise ConfigError(f"ProgramVerifyParams.budget = {self.budget!r}: must be an integer >= 1 pulse.")
        if not 0.0 <= self.msp_fraction <= 1.0:
            raise ConfigError(f"ProgramVerifyParams.msp_fraction = {self.msp_fraction}: must be in [0, 1].")


@dataclass(frozen=True)
class PulseResponse:
    """Per-device pulse-response characteristics, arrays of the conductance shape (P, 2, n)."""

    gain: NDArray[np.float64]
    gamma: NDArray[np.float64]


def draw_pulse_response(shape: tuple[int, ...], params: ProgramVerifyParams, rng: np.random.Generator,
                        ) -> PulseResponse:
    """Draw k_d ~ LogNormal(0, s_k) and gamma_d ~ |N(gamma_0, s_gamma)| for every device of ``shape``."""
    gain = np.exp(params.step_gain_sigma * rng.standard_normal(shape))
    gamma = np.abs(params.nonlinearity_mean + params.nonlinearity_sigma * rng.standard_normal(shape))
    return PulseResponse(gain, gamma)


@dataclass(frozen=True, eq=False)
class ProgramVerifyResult:
    """Outcome of :func:`program_verify`.

    Attributes:
        g_prog_us: true programmed conductances, (P, 2) + weight shape, µS.
        u_prog: the normalised weight they represent (noise-free).
        u_target: the target normalised weight.
        pulses: pulse slots each weight used (<= budget).
        converged: weights masked by the verify step (the controller believed them within tolerance).
        tol: tolerance on u.
        budget: pulse budget per weight.
        t_slot_s: time of one pulse + verify slot, s.
    """

    g_prog_us: NDArray[np.float64]
    u_prog: NDArray[np.float64]
    u_target: NDArray[np.float64]
    pulses: NDArray[np.int64]
    converged: NDArray[np.bool_]
    tol: float
    budget: int
    t_slot_s: float = 1e-6

    @property
    def failed(self) -> NDArray[np.bool_]:
        """|u_prog - u_target| > tol."""
        return np.abs(self.u_prog - self.u_target) > self.tol

    @property
    def p_fail(self) -> float:
        """Fraction of weights out of tolerance after the budget."""
        return float(np.mean(self.failed))

    @property
    def mean_pulses(self) -> float:
        """Mean pulse slots per weight."""
        return float(np.mean(self.pulses))

    def row_parallel_time_s(self) -> float:
        """Programming time when rows (axis 0 of an (inputs, outputs) matrix) are programmed one after another.

        All weights of a row get their pulses in the same slots, so a row takes as many slots as its slowest
        weight.
        """
        p = self.pulses if self.pulses.ndim >= 2 else self.pulses.reshape(-1, 1)
        return float(np.sum(p.reshape(p.shape[0], -1).max(axis=1)) * self.t_slot_s)


def _verify_read(g: NDArray[np.float64], params: ProgramVerifyParams, rng: np.random.Generator,
                 ) -> NDArray[np.float64]:
    sigma = np.maximum(params.verify_read_sigma_rel * g, params.verify_read_floor_us)
    return g + sigma * rng.standard_normal(g.shape)


def program_verify_conductances(g_target_us: ArrayLike, significance: Sequence[float], gain_us: float,
                                g_max_us: float, rng: np.random.Generator,
                                params: ProgramVerifyParams | None = None, g_min_us: float = 0.0,
                                response: PulseResponse | None = None) -> ProgramVerifyResult:
    """Simulate program-and-verify of target conductances ``(P, 2, ...)`` (module docstring).

    Args:
        g_target_us: the mapping's targets, ``(P, 2) + weight shape``, µS (pair 0 = LSP).
        significance: F_p, least significant first.
        gain_us: µS of sum_p F_p (G+_p - G-_p) per unit u.
        g_max_us: the device's largest programmable conductance, µS.
        rng: source of every draw (device characteristics unless ``response`` is given, pulses, reads).
        params: pulse model and controller; defaults of :class:`ProgramVerifyParams`.
        g_min_us: the mapping's floor, µS.
        response: pre-drawn per-device characteristics (shape (P, 2, n)), to program the same chip with
            different budgets.

    Returns:
        The programmed state and the verify statistics.
    """
    prm = params or ProgramVerifyParams()
    g_t = np.asarray(g_target_us, dtype=np.float64)
    if g_t.ndim < 2 or g_t.shape[1] != 2 or g_t.shape[0] != len(significance):
        raise ConfigError(f"program_verify: targets must have shape (P, 2, ...) with P = {len(significance)}, "
                          f"got {g_t.shape}.")
    n_p = g_t.shape[0]
    wshape = g_t.shape[2:]
    tgt_map = g_t.reshape(n_p, 2, -1)
    n = tgt_map.shape[2]
    f = np.asarray(significance, dtype=np.float64)
    fcol = f[:, None]
    u_t = np.sum(fcol * (tgt_map[:, 0] - tgt_map[:, 1]), axis=0) / gain_us
    g_sat = prm.saturation_ratio * g_max_us
    resp = response or draw_pulse_response((n_p, 2, n), prm, rng)
    if resp.gain.shape != (n_p, 2, n):
        raise ConfigError(f"program_verify: pulse response has shape {resp.gain.shape}, need {(n_p, 2, n)}.")

    g = np.abs(prm.reset_mean_us + prm.reset_sigma_us * rng.standard_normal((n_p, 2, n)))
    idx = np.arange(n)
    pair = np.full(n, n_p - 1)
    tgt = tgt_map[n_p - 1].copy()  # (2, n) effective targets of the active pair
    pulses = np.zeros(n, dtype=np.int64)
    in_pair = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    upper_budget = math.ceil(prm.msp_fraction * prm.budget / (n_p - 1)) if n_p > 1 else 0
    diff_map = tgt_map[:, 0] - tgt_map[:, 1]  # (P, n)

    def retarget(sel: NDArray[np.bool_], g_read: NDArray[np.float64], base: NDArray[np.float64]) -> None:
        """Targets of the active pair for weights ``sel``: absorb the residual of the other pairs."""
        p = pair[sel]
        d_read = g_read[:, 0, sel] - g_read[:, 1, sel]  # (P, m)
        above = np.arange(n_p)[:, None] > p[None, :]
        contrib = np.where(above, d_read, diff_map[:, sel])
        contrib[p, np.arange(p.size)] = 0.0
        d = (u_t[sel] * gain_us - np.sum(fcol * contrib, axis=0)) / f[p]
        a = np.maximum(base[0, sel], base[1, sel] + d)
        a = np.clip(a, g_min_us, g_max_us)
        tgt[0, sel] = a
        tgt[1, sel] = np.clip(a - d, g_min_us, g_max_us)

    for _ in range(prm.budget):
        g_read = _verify_read(g, prm, rng)
        u_read = np.sum(fcol * (g_read[:, 0] - g_read[:, 1]), axis=0) / gain_us
        done |= np.abs(u_read - u_t) <= prm.verify_fraction * prm.tol
        active = ~done
        if not active.any():
            break
        cur = g_read[pair, :, idx].T  # (2, n) reads of the active pair
        # an overshoot (beyond the read uncertainty) lifts both targets: the difference is what counts
        shift = np.maximum(np.max(cur - tgt, axis=0) - prm.device_tol_us, 0.0)
        tgt += shift
        on_target = np.all(tgt - cur <= prm.device_tol_us, axis=0)
        leave = active & (pair > 0) & (on_target | (in_pair >= upper_budget))
        if leave.any():
            pair[leave] -= 1
            in_pair[leave] = 0
            retarget(leave, g_read, _pair_targets(tgt_map, pair, leave))
        stuck = active & (pair == 0) & on_target & ~leave
        if stuck.any():
            retarget(stuck, g_read, tgt)
        cur = g_read[pair, :, idx].T
        gap = tgt - cur
        gain_nom = np.power(np.clip(1.0 - cur / g_sat, 1e-3, 1.0), prm.nonlinearity_mean)
        strength = np.minimum(prm.eta * gap, prm.max_step_us) / gain_nom
        fire = active[None, :] & (gap > prm.device_tol_us)
        # apply to the true conductances of the active pair
        g_pair = g[pair, :, idx].T
        k = resp.gain[pair, :, idx].T
        gam = resp.gamma[pair, :, idx].T
        sat = np.power(np.clip(1.0 - g_pair / g_sat, 0.0, 1.0), gam)
        dg = strength * k * sat * (1.0 + prm.c2c_sigma_rel * rng.standard_normal(gap.shape))
        dg += prm.c2c_sigma_us * rng.standard_normal(gap.shape)
        g_new = np.clip(g_pair + np.where(fire, dg, 0.0), 0.0, g_sat)
        g[pair, :, idx] = g_new.T
        pulses += active
        in_pair += active

    u_prog = np.sum(fcol * (g[:, 0] - g[:, 1]), axis=0) / gain_us
    return ProgramVerifyResult(
        g_prog_us=g.reshape((n_p, 2) + wshape), u_prog=u_prog.reshape(wshape), u_target=u_t.reshape(wshape),
        pulses=pulses.reshape(wshape), converged=done.reshape(wshape), tol=prm.tol, budget=prm.budget,
        t_slot_s=prm.t_slot_s,
    )


def _pair_targets(tgt_map: NDArray[np.float64], pair: NDArray[np.int64], sel: NDArray[np.bool_],
                  ) -> NDArray[np.float64]:
    """(2, n) array holding, for the weights ``sel``, the mapping's targets of their active pair."""
    out = np.zeros((2, pair.size))
    cols = np.flatnonzero(sel)
    out[:, cols] = tgt_map[pair[cols], :, cols].T
    return out


def program_verify(u: ArrayLike, mapping: ConductanceMapping, device, rng: np.random.Generator,
                   params: ProgramVerifyParams | None = None) -> ProgramVerifyResult:
    """Encode normalised weights with ``mapping`` and program them on ``device`` by program-and-verify."""
    g_min, g_max = float(device.g_min_us), float(device.g_max_us)
    g_t = mapping.encode(u, g_min, g_max)
    return program_verify_conductances(g_t, mapping.significance, mapping.gain_us(g_min, g_max), g_max, rng,
                                       params, g_min_us=g_min)


@dataclass(frozen=True)
class PFailPoint:
    """One point of the P_fail vs pulse-budget curve."""

    budget: int
    p_fail: float
    mean_pulses: float
    rms_error: float
    time_s: float


def p_fail_curve(u: ArrayLike, mapping: ConductanceMapping, device, rng: np.random.Generator,
                 budgets: Sequence[int] = DEFAULT_BUDGETS, params: ProgramVerifyParams | None = None,
                 ) -> list[PFailPoint]:
    """P_fail for each pulse budget, the same chip (same device characteristics) programmed each time.

    Args:
        u: normalised weights; a 2-D (inputs, outputs) matrix gives the row-parallel programming time.
        mapping: the strategy (its targets are what is programmed).
        device: the device model (g_min_us, g_max_us).
        rng: source of every draw.
        budgets: pulse budgets per weight.
        params: pulse model and controller (its ``budget`` is replaced by each entry of ``budgets``).

    Returns:
        One :class:`PFailPoint` per budget.
    """
    prm = params or ProgramVerifyParams()
    g_min, g_max = float(device.g_min_us), float(device.g_max_us)
    u = np.asarray(u, dtype=np.float64)
    g_t = mapping.encode(u, g_min, g_max)
    n_p = g_t.shape[0]
    resp = draw_pulse_response((n_p, 2, u.size), prm, rng)
    seeds = rng.spawn(len(budgets))
    out = []
    for b, r in zip(budgets, seeds, strict=True):
        res = program_verify_conductances(g_t, mapping.significance, mapping.gain_us(g_min, g_max), g_max, r,
                                          replace(prm, budget=int(b)), g_min_us=g_min, response=resp)
        err = res.u_prog - res.u_target
        out.append(PFailPoint(int(b), res.p_fail, res.mean_pulses, float(np.sqrt(np.mean(err**2))),
                              res.row_parallel_time_s()))
    return out


def plot_p_fail_curve(curves: dict[str, list[PFailPoint]], path, tol: float | None = None) -> None:
    """Plot P_fail versus pulse budget (log y), one line per weight distribution, and save it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, pts in curves.items():
        ax.plot([p.budget for p in pts], [max(p.p_fail, 1e-5) for p in pts], "o-", label=name)
    ax.axhline(0.02, color="grey", ls="--", lw=1, label="2 % target")
    ax.set_yscale("log")
    ax.set_xlabel("pulse budget per weight")
    ax.set_ylabel("P_fail" + (f" (|ΔW| > {tol:g} max|W|)" if tol else ""))
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

