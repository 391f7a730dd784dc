"""Closed-loop program-and-verify of whole crossbar rows, with device-to-device pulse-response variability.

Mackin et al. 2019 (Adv. Electron. Mater. 5, 1900026; reference/papers.md, (b)) program the weights of a
row in parallel with closed-loop pulses, verify, and mask the weights that have converged; a weight
W = F (G+ - G-) + (g+ - g-) is programmed most significant pair (MSP) first, and the least significant pair
(LSP) then corrects the residual. They report that 98-99 % of weights reach their target whatever the weight
distribution and despite large variability of the conductance-versus-pulse characteristics, and that P_fail
falls as the pulse budget grows [V-abs]. The paper's pulse model, tolerance, budget and algorithm steps were
not recovered: the model below is inferred [I], and every number in it is a field of
:class:`ProgramVerifyParams`.

Device response to one SET pulse (partial crystallisation, conductance only goes up) [I]::

    dg = a * k_d * (1 - g / g_sat)^gamma_d * (1 + s_rel xi) + s_abs xi'       g <- clip(g + dg, 0, g_sat)

with a the pulse strength the controller chooses, k_d ~ LogNormal(0, s_k) the device's step gain,
gamma_d ~ N(gamma_0, s_gamma) (>= 0) its saturation non-linearity, g_sat = saturation_ratio * g_max, and
s_rel, s_abs the cycle-to-cycle noise of each pulse (xi, xi' ~ N(0, 1), fresh per pulse). Devices start from
RESET at |N(reset_mean, reset_sigma)|.

Controller (one loop over pulses; every device of the matrix is updated at once with masks):

1. verify-read every device, g^ = g + N(0, max(read_rel g, read_floor)), and the weight u^ it represents; a
   weight with |u^ - u_T| <= verify_fraction * tol is masked for good (converged);
2. the active pair of each weight gets effective targets (a, b) for (G+, G-): the mapping's targets for the
   MSP; on entering a lower pair, its difference is set to absorb the residual of the pairs above
   (D = (u_T gain - sum_{q != p} F_q d^_q) / F_p, with d^_q read for the pairs already programmed and the
   mapping's difference for those still to come), keeping the mapping's position on the line G+ - G- = D where
   possible (a = max(a_map, b_map + D), b = a - D; targets clipped to [g_min, headroom_ratio * g_max]);
3. since a SET pulse cannot lower a conductance, an overshoot moves both targets up by the excess (the
   difference is kept); each device below its target by more than ``device_tol_us`` gets a pulse of strength
   a = min(min(eta * gap, max_step_us) / (h (1 - g^/g_sat)^gamma_0), max_strength_us), the inverse of the
   nominal response ("jump table") scaled by the controller's running estimate h of the device's step gain
   (learnt from the observed step of its previous pulse, ``adapt``);
4. an overshoot that would need a target above reset_above_ratio * g_max RESETs the pair (both devices back
   to the RESET state, targets back to those set on entering the pair), which takes that pulse slot;
5. a weight leaves a non-final pair when both devices are within ``device_tol_us`` of their targets or the
   pair's share of the budget is spent; in the last pair, a weight whose devices are on target but whose
   read is still out of tolerance is re-targeted from the current read.

P_fail is the fraction of weights with |u_prog - u_T| > tol after the pulse budget, u_prog being the *true*
(noise-free) programmed weight; verify-read noise can therefore let a weight stop out of tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from anacompile.errors import ConfigError
from anacompile.mapping.base import ConductanceMapping, decode_pairs
from anacompile.programming.weights import load_weight_matrices, normalised_weights

__all__ = [
    "DEFAULT_BUDGETS",
    "DIGITS_MLP_CANDIDATES",
    "PFailPoint",
    "ProgramVerifyParams",
    "ProgramVerifyResult",
    "PulseResponse",
    "draw_pulse_response",
    "p_fail_curve",
    "plot_p_fail_curve",
    "program_and_verify",
    "program_verify_conductances",
    "reference_weight_sets",
]

DEFAULT_BUDGETS = (4, 6, 8, 10, 12, 16, 20, 30, 40)
"""Pulse budgets of the P_fail curve (pulses per weight, all pairs together)."""

DIGITS_MLP_CANDIDATES = (
    Path(__file__).resolve().parents[2] / "models" / "digits_mlp_fp.onnx",  # the repository's FP32 MLP
    Path(__file__).resolve().parents[1] / "data" / "digits_mlp_hwa.onnx",  # the copy shipped in the package
)
"""Where :func:`reference_weight_sets` looks for the digits MLP, in order."""


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
        max_strength_us: largest pulse strength a (the nominal step at g = 0), µS [I].
        reset_above_ratio: a pair is RESET when an overshoot would lift a target above this times g_max [I].
        headroom_ratio: a residual correction may set targets up to this times g_max (the devices reach up to
            g_sat, so a pair at the top of its range can still absorb a small residual) [I].
        adapt: exponent lambda of the controller's per-device gain estimate, updated after each pulse as
            h <- h * clip(observed / expected step, 0.2, 5)^lambda (0 = open-loop nominal model) [I].
        adapt_min_step_us: only pulses expected to move the device by at least this much update h, µS [I].
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
    max_strength_us: float = 20.0
    reset_above_ratio: float = 1.12
    headroom_ratio: float = 1.06
    adapt: float = 0.5
    adapt_min_step_us: float = 1.0
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
        positive = (
            "saturation_ratio",
            "max_step_us",
            "max_strength_us",
            "reset_above_ratio",
            "headroom_ratio",
            "eta",
            "tol",
            "verify_fraction",
            "device_tol_us",
            "t_slot_s",
        )
        non_negative = (
            "adapt",
            "adapt_min_step_us",
            "step_gain_sigma",
            "nonlinearity_mean",
            "nonlinearity_sigma",
            "c2c_sigma_rel",
            "c2c_sigma_us",
            "reset_mean_us",
            "reset_sigma_us",
            "verify_read_sigma_rel",
            "verify_read_floor_us",
        )
        for name in positive + non_negative:
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v)) or v < 0 or (name in positive and v == 0):
                raise ConfigError(
                    f"ProgramVerifyParams.{name} = {v!r}: must be a finite number "
                    f"{'> 0' if name in positive else '>= 0'}."
                )
        if not 1.0 <= self.headroom_ratio <= self.reset_above_ratio:
            raise ConfigError(
                f"ProgramVerifyParams.headroom_ratio = {self.headroom_ratio}: must be in "
                f"[1, reset_above_ratio = {self.reset_above_ratio}]."
            )
        if not 1.0 <= self.reset_above_ratio <= self.saturation_ratio:
            raise ConfigError(
                f"ProgramVerifyParams.reset_above_ratio = {self.reset_above_ratio}: must be in "
                f"[1, saturation_ratio = {self.saturation_ratio}]."
            )
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


def draw_pulse_response(
    shape: tuple[int, ...],
    params: ProgramVerifyParams,
    rng: np.random.Generator,
) -> PulseResponse:
    """Draw k_d ~ LogNormal(0, s_k) and gamma_d ~ |N(gamma_0, s_gamma)| for every device of ``shape``."""
    gain = np.exp(params.step_gain_sigma * rng.standard_normal(shape))
    gamma = np.abs(params.nonlinearity_mean + params.nonlinearity_sigma * rng.standard_normal(shape))
    return PulseResponse(gain, gamma)


@dataclass(frozen=True, eq=False)
class ProgramVerifyResult:
    """Outcome of :func:`program_and_verify`.

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
        """Programming time when the rows (axis 0 of an (inputs, outputs) matrix) are programmed in turn.

        All weights of a row get their pulses in the same slots, so a row takes as many slots as its slowest
        weight.
        """
        p = self.pulses if self.pulses.ndim >= 2 else self.pulses.reshape(-1, 1)
        return float(np.sum(p.reshape(p.shape[0], -1).max(axis=1)) * self.t_slot_s)


def _verify_read(
    g: NDArray[np.float64],
    params: ProgramVerifyParams,
    rng: np.random.Generator,
) -> NDArray[np.float64]:
    sigma = np.maximum(params.verify_read_sigma_rel * g, params.verify_read_floor_us)
    return g + sigma * rng.standard_normal(g.shape)


def program_verify_conductances(
    g_target_us: ArrayLike,
    significance: Sequence[float],
    gain_us: float,
    g_max_us: float,
    rng: np.random.Generator,
    params: ProgramVerifyParams | None = None,
    g_min_us: float = 0.0,
    response: PulseResponse | None = None,
) -> ProgramVerifyResult:
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
        raise ConfigError(
            f"program_verify: targets must have shape (P, 2, ...) with P = {len(significance)}, got {g_t.shape}."
        )
    n_p = g_t.shape[0]
    wshape = g_t.shape[2:]
    tgt_map = g_t.reshape(n_p, 2, -1)
    n = tgt_map.shape[2]
    f = np.asarray(significance, dtype=np.float64)
    fcol = f[:, None]
    u_t = decode_pairs(tgt_map, f, gain_us)
    g_sat = prm.saturation_ratio * g_max_us
    g_top = prm.headroom_ratio * g_max_us  # highest target a residual correction may ask for
    resp = response or draw_pulse_response((n_p, 2, n), prm, rng)
    if resp.gain.shape != (n_p, 2, n):
        raise ConfigError(f"program_verify: pulse response has shape {resp.gain.shape}, need {(n_p, 2, n)}.")

    g = np.abs(prm.reset_mean_us + prm.reset_sigma_us * rng.standard_normal((n_p, 2, n)))
    pair = np.full(n, n_p - 1)  # the pair each weight is programming now (MSP first)
    tgt = tgt_map[n_p - 1].copy()  # (2, n) effective targets of that pair
    base = tgt.copy()  # the targets set on entering the pair (restored after a RESET)
    pulses = np.zeros(n, dtype=np.int64)
    in_pair = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    upper_budget = math.ceil(prm.msp_fraction * prm.budget / (n_p - 1)) if n_p > 1 else 0
    diff_map = tgt_map[:, 0] - tgt_map[:, 1]  # (P, n)
    est = np.ones((n_p, 2, n))  # the controller's estimate of each device's step gain (adaptive)
    last_pair = pair.copy()
    last_read = np.zeros((2, n))
    last_step = np.zeros((2, n))  # step the controller expected from the last pulse, µS (0: none)
    reset_us = prm.reset_above_ratio * g_max_us

    def retarget(cols: NDArray[np.int64], g_read: NDArray[np.float64], start: NDArray[np.float64]) -> None:
        """Targets of the current pair of weights ``cols`` (reads ``g_read`` (P, 2, k)): absorb the residual."""
        p = pair[cols]
        d_read = g_read[:, 0] - g_read[:, 1]  # (P, k)
        above = np.arange(n_p)[:, None] > p[None, :]
        contrib = np.where(above, d_read, diff_map[:, cols])
        contrib[p, np.arange(p.size)] = 0.0
        d = (u_t[cols] * gain_us - np.sum(fcol * contrib, axis=0)) / f[p]
        a = np.clip(np.maximum(start[0], start[1] + d), g_min_us, g_top)
        tgt[0, cols] = a
        tgt[1, cols] = np.clip(a - d, g_min_us, g_top)
        base[:, cols] = tgt[:, cols]

    for _ in range(prm.budget):
        act = np.flatnonzero(~done)  # only unconverged weights are read and pulsed (masking)
        if act.size == 0:
            break
        g_read = _verify_read(g[:, :, act], prm, rng)  # (P, 2, m)
        u_read = decode_pairs(g_read, f, gain_us)
        conv = np.abs(u_read - u_t[act]) <= prm.verify_fraction * prm.tol
        if conv.any():
            done[act[conv]] = True
            act, g_read = act[~conv], g_read[:, :, ~conv]
            if act.size == 0:
                break
        j = np.arange(act.size)
        if prm.adapt > 0.0:  # learn each device's response from its last pulse
            lp = last_pair[act]
            step = last_step[:, act]
            ok = step >= prm.adapt_min_step_us
            ratio = np.clip((g_read[lp, :, j].T - last_read[:, act]) / np.where(ok, step, 1.0), 0.2, 5.0)
            upd = est[lp, :, act] * np.where(ok, ratio**prm.adapt, 1.0).T
            est[lp, :, act] = np.clip(upd, 0.1, 10.0)
        pa = pair[act]
        cur = g_read[pa, :, j].T  # (2, m) reads of the pair being programmed
        t = tgt[:, act]
        # an overshoot (beyond the read uncertainty) lifts both targets: the difference is what counts
        t += np.maximum(np.max(cur - t, axis=0) - prm.device_tol_us, 0.0)
        # an overshoot that would push a target too high: RESET the pair and start it again
        reset = np.max(t, axis=0) > reset_us
        if reset.any():
            r = np.flatnonzero(reset)
            fresh = np.abs(prm.reset_mean_us + prm.reset_sigma_us * rng.standard_normal((r.size, 2)))
            g[pa[r], :, act[r]] = fresh
            t[:, r] = base[:, act[r]]
            cur[:, r] = fresh.T
        tgt[:, act] = t
        on_target = np.all(t - cur <= prm.device_tol_us, axis=0)
        leave = (pa > 0) & (on_target | (in_pair[act] >= upper_budget))
        if leave.any():
            cols = act[leave]
            pair[cols] -= 1
            in_pair[cols] = 0
            retarget(cols, g_read[:, :, leave], tgt_map[pair[cols], :, cols].T)
        stuck = (pa == 0) & on_target & ~leave
        if stuck.any():
            cols = act[stuck]
            retarget(cols, g_read[:, :, stuck], tgt[:, cols])
        pa = pair[act]
        cur = g_read[pa, :, j].T
        gap = tgt[:, act] - cur
        gain_nom = np.power(np.clip(1.0 - cur / g_sat, 1e-3, 1.0), prm.nonlinearity_mean)
        gain_nom *= est[pa, :, act].T
        strength = np.minimum(np.minimum(prm.eta * gap, prm.max_step_us) / gain_nom, prm.max_strength_us)
        fire = ~reset[None, :] & (gap > prm.device_tol_us)
        last_pair[act] = pa
        last_read[:, act] = cur
        last_step[:, act] = np.where(fire, strength * gain_nom, 0.0)
        # the devices' true response
        g_pair = g[pa, :, act].T
        sat = np.power(np.clip(1.0 - g_pair / g_sat, 0.0, 1.0), resp.gamma[pa, :, act].T)
        dg = strength * resp.gain[pa, :, act].T * sat * (1.0 + prm.c2c_sigma_rel * rng.standard_normal(gap.shape))
        dg += prm.c2c_sigma_us * rng.standard_normal(gap.shape)
        g[pa, :, act] = np.clip(g_pair + np.where(fire, dg, 0.0), 0.0, g_sat).T
        pulses[act] += 1
        in_pair[act] += 1

    u_prog = decode_pairs(g, f, gain_us)
    return ProgramVerifyResult(
        g_prog_us=g.reshape((n_p, 2) + wshape),
        u_prog=u_prog.reshape(wshape),
        u_target=u_t.reshape(wshape),
        pulses=pulses.reshape(wshape),
        converged=done.reshape(wshape),
        tol=prm.tol,
        budget=prm.budget,
        t_slot_s=prm.t_slot_s,
    )


def program_and_verify(
    u: ArrayLike,
    mapping: ConductanceMapping,
    device,
    rng: np.random.Generator,
    params: ProgramVerifyParams | None = None,
) -> ProgramVerifyResult:
    """Encode normalised weights with ``mapping`` and program them on ``device`` by program-and-verify."""
    g_min, g_max = float(device.g_min_us), float(device.g_max_us)
    g_t = mapping.encode(u, g_min, g_max)
    return program_verify_conductances(
        g_t, mapping.significance, mapping.gain_us(g_min, g_max), g_max, rng, params, g_min_us=g_min
    )


@dataclass(frozen=True)
class PFailPoint:
    """One point of the P_fail vs pulse-budget curve."""

    budget: int
    p_fail: float
    mean_pulses: float
    rms_error: float
    time_s: float


def p_fail_curve(
    u: ArrayLike | Sequence[ArrayLike],
    mapping: ConductanceMapping,
    device,
    rng: np.random.Generator,
    budgets: Sequence[int] = DEFAULT_BUDGETS,
    params: ProgramVerifyParams | None = None,
) -> list[PFailPoint]:
    """P_fail for each pulse budget, the same chip (same device characteristics) programmed each time.

    Args:
        u: normalised weights: one (inputs, outputs) matrix, or a list of them (a network's layers); the
            rows of each matrix are programmed one after another for the programming time.
        mapping: the strategy (its targets are what is programmed).
        device: the device model (g_min_us, g_max_us).
        rng: source of every draw.
        budgets: pulse budgets per weight.
        params: pulse model and controller (its ``budget`` is replaced by each entry of ``budgets``).

    Returns:
        One :class:`PFailPoint` per budget.
    """
    prm = params or ProgramVerifyParams()
    mats = [np.atleast_2d(np.asarray(m, dtype=np.float64)) for m in (u if isinstance(u, (list, tuple)) else [u])]
    flat = np.concatenate([m.ravel() for m in mats])
    splits = np.cumsum([m.size for m in mats])[:-1]
    g_min, g_max = float(device.g_min_us), float(device.g_max_us)
    g_t = mapping.encode(flat, g_min, g_max)
    resp = draw_pulse_response((g_t.shape[0], 2, flat.size), prm, rng)
    out = []
    for b, r in zip(budgets, rng.spawn(len(budgets)), strict=True):
        res = program_verify_conductances(
            g_t,
            mapping.significance,
            mapping.gain_us(g_min, g_max),
            g_max,
            r,
            replace(prm, budget=int(b)),
            g_min_us=g_min,
            response=resp,
        )
        err = res.u_prog - res.u_target
        time_s = sum(
            float(np.sum(p.reshape(m.shape[0], -1).max(axis=1))) * prm.t_slot_s
            for p, m in zip(np.split(res.pulses, splits), mats, strict=True)
        )
        out.append(PFailPoint(int(b), res.p_fail, res.mean_pulses, float(np.sqrt(np.mean(err**2))), time_s))
    return out


def reference_weight_sets(
    rng: np.random.Generator, weights: str | Path | None = None, shape: tuple[int, int] = (256, 128)
) -> dict[str, list[NDArray[np.float64]]]:
    """The three weight distributions of the P_fail check, column-normalised (u = W / max|W| per column).

    ``normal`` (N(0, 1)) and ``uniform`` (U(-1, 1)) matrices of ``shape``, and a network's weights: the file
    ``weights`` (ONNX or .npy) if given, else the digits MLP (:data:`DIGITS_MLP_CANDIDATES`), else, if neither
    exists, a clipped Laplace matrix as a stand-in (heavy-tailed like trained weights; the key then says so).

    Returns:
        name -> list of (inputs, outputs) matrices.
    """
    sets = {
        "normal": normalised_weights([rng.standard_normal(shape)]),
        "uniform": normalised_weights([rng.uniform(-1.0, 1.0, shape)]),
    }
    path = Path(weights) if weights is not None else next((p for p in DIGITS_MLP_CANDIDATES if p.is_file()), None)
    if path is not None:
        sets[path.stem] = normalised_weights(load_weight_matrices(path))
    else:
        sets["laplace (stand-in for the digits MLP)"] = normalised_weights(
            [np.clip(rng.laplace(0.0, 1.0, shape), -4.0, 4.0)]
        )
    return sets


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
