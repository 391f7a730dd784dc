"""A device described by data: conductance-dependent curves (tables or piecewise polynomials) in a file.

A :class:`TableDevice` has the same statistical structure as the PCM model (:mod:`anacompile.devices.pcm`)
but every conductance dependence is a :class:`Curve` (a table with linear interpolation, which keeps a
monotone table monotone, or a piecewise polynomial in ĝ = g/g_max), so a new memory is a YAML/JSON file,
not code. Conductances in µS, times in s; ξ ~ N(0, 1) i.i.d.::

    programming:  g_prog = clip(g_T + σ_prog(g_T)·ξ, window)
    drift:        ν = |μ_ν(g_T) + σ_ν(g_T)·ξ|   (or without |·| when drift_fold is false), drawn once
                  g_drift(t) = g_prog·((t + t0)/t0)^(−ν)
    relaxation:   V(g, t) = interp_ln t(max(σ_k(g)² − σ_prog(g)², 0) at the times t_k), held after t_n,
                  linear in t from 0 at t = 0 to V_1 at t_1 (σ_k: total std of g(t_k) − g_T, as published
                  for ReRAM, e.g. Wan et al. 2022, so that Var(g(t_k) − g_T) = σ_k² where σ_k >= σ_prog)
    read:         s(t) = sqrt(V(g_prog, t) + (|g_drift|·q(g_prog)·bw(t))²)
                  g(t) = clip(g_drift + s(t)·ξ, window),  bw(t) = sqrt(ln((t + t0 + t_read)/(2 t_read)))
                  for 1/f read noise (Joshi et al. 2020), bw = 1 for ``read_bandwidth: flat``

Relaxation and read noise are summed in variance and drawn as one normal per device (so ``program``,
``drift_exponents`` and ``read`` each consume exactly one ``rng.standard_normal(shape)``, like the PCM
model; the optimiser's common random numbers rely on it). After programming a device knows its state,
not its target, so the relaxation and read-noise curves are evaluated at the programmed conductance.

:data:`RRAM_WAN_2022` is the RRAM inference model of Wan et al., Nature 608, 504 (2022) as fitted in IBM
aihwkit ``ReRamWan2022NoiseModel``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from anacompile.devices._validate import check_name_and_window, check_real, check_text, check_time_s
from anacompile.errors import DeviceError

__all__ = ["RRAM_WAN_2022", "Curve", "TableDevice"]

KIND = "table"
READ_BANDWIDTHS = ("1/f", "flat")
_POLY_CHECK_POINTS = 2001  # grid on which a polynomial curve's sign and range are checked


def _f64(x: ArrayLike) -> NDArray[np.float64]:
    a = np.asarray(x, dtype=np.float64)
    return a.reshape(1) if a.ndim == 0 else a


def _shaped(out: NDArray[np.float64], scalar: bool) -> NDArray[np.float64]:
    return cast("NDArray[np.float64]", out[0]) if scalar else out


def _cast(out: NDArray[np.float64], dtype: Any) -> NDArray[np.float64]:
    """``out`` as float64 (unchanged) or float32; any other ``dtype`` is a DeviceError."""
    if np.dtype(dtype) == np.float64:
        return out
    if np.dtype(dtype) == np.float32:
        return cast("NDArray[np.float64]", np.asarray(out, np.float32)) if np.ndim(out) else np.float32(out)
    raise DeviceError(f"dtype={dtype!r}: the device kernels compute in float64 or float32.")


def _is_real(value: object) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    return isinstance(value, (int, float, np.integer, np.floating))


def _reals(where: str, value: object, *, min_len: int = 1) -> tuple[float, ...]:
    """A list of finite reals, or a one-line DeviceError naming ``where``."""
    if not isinstance(value, (list, tuple)) or len(value) < min_len:
        raise DeviceError(
            f"{where} = {value!r} is malformed; allowed: a list of at least {min_len} finite real numbers."
        )
    for i, v in enumerate(value):
        if not _is_real(v) or not math.isfinite(float(v)):
            raise DeviceError(f"{where}[{i}] = {v!r} is not a finite real number (NaN and inf are refused).")
    return tuple(float(v) for v in value)


@dataclass(frozen=True)
class Curve:
    """A function of conductance: a table with linear interpolation, or a piecewise polynomial in ĝ.

    Exactly one form is given. A table ``(g_us, values)`` interpolates linearly between its points (which
    preserves monotonicity) and holds the end values outside them. A piecewise polynomial evaluates, on
    piece i (``breaks_g_hat[i] <= ĝ < breaks_g_hat[i+1]``), Σ_j c_ij ĝ^j with ĝ = clip(g/g_max, 0, 1) and
    the coefficients of ``poly_g_hat[i]`` in increasing power (aihwkit's convention for its fitted
    polynomials).

    Attributes:
        g_us: table abscissae, µS, strictly increasing, >= 0.
        values: table ordinates (unit of the curve), one per abscissa.
        poly_g_hat: polynomial coefficients per piece, lowest power first.
        breaks_g_hat: piece boundaries in ĝ, strictly increasing from 0 to 1 (one more than pieces).
        nonnegative: the curve is a standard deviation or a relative noise: it must be >= 0 everywhere.
        where: the curve's place in the device (``programming_sigma``), for messages.
    """

    g_us: tuple[float, ...] = ()
    values: tuple[float, ...] = ()
    poly_g_hat: tuple[tuple[float, ...], ...] = ()
    breaks_g_hat: tuple[float, ...] = (0.0, 1.0)
    nonnegative: bool = field(default=True, compare=False)
    where: str = field(default="curve", compare=False)

    def __post_init__(self) -> None:
        """Validate: one form; tables strictly increasing, equal lengths, finite; noise curves >= 0.

        Raises:
            DeviceError: one line naming the field (``programming_sigma.g_us``) and what is allowed.
        """
        w = self.where
        set_ = object.__setattr__
        has_table = bool(self.g_us) or bool(self.values)
        has_poly = bool(self.poly_g_hat)
        if has_table == has_poly:
            raise DeviceError(
                f"{w}: give either a table (g_us and values) or a polynomial (poly_g_hat), "
                f"{'not both' if has_table else 'got neither'}."
            )
        if has_table:
            g = _reals(f"{w}.g_us", self.g_us)
            v = _reals(f"{w}.values", self.values)
            if len(g) != len(v):
                raise DeviceError(f"{w}: g_us has {len(g)} points and values has {len(v)}; allowed: the same length.")
            if g[0] < 0.0:
                raise DeviceError(f"{w}.g_us[0] = {g[0]!r} is negative; allowed: conductances >= 0 µS.")
            bad = [i for i in range(1, len(g)) if not g[i] > g[i - 1]]
            if bad:
                i = bad[0]
                raise DeviceError(
                    f"{w}.g_us is not strictly increasing (g_us[{i - 1}] = {g[i - 1]!r} >= g_us[{i}] = "
                    f"{g[i]!r}); allowed: strictly increasing conductances."
                )
            if self.nonnegative and min(v) < 0.0:
                i = v.index(min(v))
                raise DeviceError(
                    f"{w}.values[{i}] = {v[i]!r} is negative; allowed: a noise std or relative noise >= 0."
                )
            set_(self, "g_us", g)
            set_(self, "values", v)
            return
        raw = self.poly_g_hat
        pieces_in: Sequence[object] = raw if raw and isinstance(raw[0], (list, tuple)) else [raw]
        pieces = tuple(_reals(f"{w}.poly_g_hat[{i}]", p) for i, p in enumerate(pieces_in))
        breaks = _reals(f"{w}.breaks_g_hat", self.breaks_g_hat, min_len=2)
        if len(breaks) != len(pieces) + 1:
            raise DeviceError(
                f"{w}: breaks_g_hat has {len(breaks)} entries for {len(pieces)} polynomial piece(s); "
                "allowed: one more break than pieces."
            )
        if breaks[0] != 0.0 or breaks[-1] != 1.0 or any(b1 <= b0 for b0, b1 in zip(breaks, breaks[1:], strict=False)):
            raise DeviceError(
                f"{w}.breaks_g_hat = {list(breaks)!r} is invalid; allowed: strictly increasing from 0 to 1."
            )
        set_(self, "poly_g_hat", pieces)
        set_(self, "breaks_g_hat", breaks)
        if self.nonnegative:
            x = np.linspace(0.0, 1.0, _POLY_CHECK_POINTS)
            y = self._poly(x)
            if float(np.min(y)) < 0.0:
                i = int(np.argmin(y))
                raise DeviceError(
                    f"{w}.poly_g_hat is negative at ĝ = {x[i]:.4g} ({y[i]:.4g}); allowed: a noise std or "
                    "relative noise >= 0 on ĝ in [0, 1]."
                )

    @property
    def is_table(self) -> bool:
        """True for the table form."""
        return bool(self.g_us)

    def _poly(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """Σ_j c_ij x^j on each piece, x already in [0, 1]."""
        out = np.zeros_like(x)
        piece = np.searchsorted(np.asarray(self.breaks_g_hat[1:-1]), x, side="right")
        for i, coeffs in enumerate(self.poly_g_hat):
            acc = np.full_like(x, coeffs[-1])
            for c in coeffs[-2::-1]:  # Horner
                acc *= x
                acc += c
            np.copyto(out, acc, where=piece == i)
        return out

    def __call__(self, g_us: ArrayLike, g_max_us: float) -> NDArray[np.float64]:
        """Evaluate the curve at conductances ``g_us`` (µS) of a device with full scale ``g_max_us``.

        Args:
            g_us: conductances, µS (any shape).
            g_max_us: the device's g_max, µS (the polynomial's ĝ = g / g_max).

        Returns:
            The curve's values, float64, same shape.
        """
        g = _f64(g_us)
        if self.is_table:
            out = np.interp(g, np.asarray(self.g_us), np.asarray(self.values))
        else:
            out = self._poly(np.clip(g / g_max_us, 0.0, 1.0))
        return _shaped(np.asarray(out, dtype=np.float64), np.ndim(g_us) == 0)

    def max_value(self, g_max_us: float) -> float:
        """Largest value of the curve on [0, g_max_us] (used to report and bound noise)."""
        grid = np.linspace(0.0, g_max_us, _POLY_CHECK_POINTS)
        if self.is_table:
            grid = np.concatenate([grid, np.asarray(self.g_us)])
        return float(np.max(self(grid, g_max_us)))

    def to_dict(self) -> dict[str, Any]:
        """The curve as plain lists (one form only)."""
        if self.is_table:
            return {"g_us": list(self.g_us), "values": list(self.values)}
        pieces: list[Any] = [list(p) for p in self.poly_g_hat]
        out: dict[str, Any] = {"poly_g_hat": pieces[0] if len(pieces) == 1 else pieces}
        if len(pieces) > 1:
            out["breaks_g_hat"] = list(self.breaks_g_hat)
        return out

    @classmethod
    def from_data(cls, data: object, where: str, *, nonnegative: bool = True) -> Curve:
        """Build a curve from a device-file mapping, a constant number, or a Curve.

        Args:
            data: ``{g_us: [...], values: [...]}``, ``{poly_g_hat: [...], breaks_g_hat: [...]}``, a number
                (a constant curve) or a :class:`Curve`.
            where: the field's name in the device, for messages.
            nonnegative: refuse negative values.

        Returns:
            The validated curve.

        Raises:
            DeviceError: malformed data, naming ``where``.
        """
        if isinstance(data, Curve):
            return cls(data.g_us, data.values, data.poly_g_hat, data.breaks_g_hat, nonnegative, where)
        if _is_real(data):
            return cls(poly_g_hat=((float(cast("float", data)),),), nonnegative=nonnegative, where=where)
        if not isinstance(data, Mapping):
            raise DeviceError(
                f"{where} = {data!r} is malformed; allowed: a number, {{g_us: [...], values: [...]}} or "
                "{poly_g_hat: [...]}."
            )
        allowed = ("g_us", "values", "poly_g_hat", "breaks_g_hat")
        for key in data:
            if key not in allowed:
                raise DeviceError(f"Unknown key {where}.{key!s}; allowed keys of {where}: {', '.join(allowed)}.")
        return cls(
            g_us=cast("tuple[float, ...]", data.get("g_us", ())),
            values=cast("tuple[float, ...]", data.get("values", ())),
            poly_g_hat=cast("tuple[tuple[float, ...], ...]", data.get("poly_g_hat", ())),
            breaks_g_hat=cast("tuple[float, ...]", data.get("breaks_g_hat", (0.0, 1.0))),
            nonnegative=nonnegative,
            where=where,
        )


def _zero(where: str) -> Curve:
    return Curve(poly_g_hat=((0.0,),), where=where)


_CURVES = ("programming_sigma", "drift_mu", "drift_sigma", "read_q")


@dataclass(frozen=True)
class TableDevice:
    """A device whose noise and drift are curves of conductance (see the module docstring).

    Attributes:
        name: short name (preset name or the device file's ``name``).
        g_max_us: largest programmable conductance, µS (full scale of the mapping; ĝ = g / g_max).
        g_min_us: smallest conductance the mapping uses, µS.
        programming_sigma: std of g_prog − g_T as a curve of g_T, µS.
        drift_mu: mean of the drift-exponent normal, curve of g_T (dimensionless).
        drift_sigma: std of the drift-exponent normal, curve of g_T (dimensionless).
        drift_fold: ν = |normal| (True, as the PCM model) or the normal itself (False).
        t0_s: drift reference time (first read after programming), s.
        relaxation_times_s: times t_k of the relaxation curves, s, strictly increasing (may be empty).
        relaxation_sigma: total std of g(t_k) − g_T at each t_k, curves of g, µS.
        read_q: relative read-noise std at t0 (1/f amplitude), curve of g_prog (dimensionless).
        read_bandwidth: ``1/f`` (bw(t) = sqrt(ln((t + t0 + t_read)/(2 t_read)))) or ``flat`` (bw = 1).
        t_read_s: duration of one read, s.
        window_us: (low, high) conductances every programmed and read value is clipped to, µS.
        citation: where the parameters come from.
        sources: field -> source of its constants ("inferred: ..." where not published).
    """

    name: str = "table"
    g_max_us: float = 25.0
    g_min_us: float = 0.0
    programming_sigma: Curve = field(default_factory=lambda: _zero("programming_sigma"))
    drift_mu: Curve = field(default_factory=lambda: _zero("drift_mu"))
    drift_sigma: Curve = field(default_factory=lambda: _zero("drift_sigma"))
    drift_fold: bool = True
    t0_s: float = 20.0
    relaxation_times_s: tuple[float, ...] = ()
    relaxation_sigma: tuple[Curve, ...] = ()
    read_q: Curve = field(default_factory=lambda: _zero("read_q"))
    read_bandwidth: str = "1/f"
    t_read_s: float = 250e-9
    window_us: tuple[float, float] = (0.0, 1.0e6)
    citation: str = ""
    sources: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Validate every field; curves are rebuilt with their field names for messages.

        Raises:
            DeviceError: one line naming the field and what is allowed.
        """
        owner = "TableDevice"
        set_ = object.__setattr__
        check_name_and_window(self, owner)
        for name in _CURVES:
            set_(self, name, Curve.from_data(getattr(self, name), name, nonnegative=name != "drift_mu"))
        if not isinstance(self.drift_fold, (bool, np.bool_)):
            raise DeviceError(f"{owner}.drift_fold = {self.drift_fold!r} is invalid; allowed: true or false.")
        set_(self, "drift_fold", bool(self.drift_fold))
        set_(self, "t0_s", check_real(owner, "t0_s", self.t0_s, unit="s", low=0.0, low_open=True))
        times = _reals("relaxation_times_s", self.relaxation_times_s, min_len=0)
        if any(t <= 0.0 for t in times) or any(t1 <= t0 for t0, t1 in zip(times, times[1:], strict=False)):
            raise DeviceError(
                f"relaxation_times_s = {list(times)!r} is invalid; allowed: strictly increasing times > 0 s."
            )
        curves = self.relaxation_sigma
        if not isinstance(curves, (list, tuple)) or len(curves) != len(times):
            n = len(curves) if isinstance(curves, (list, tuple)) else "no list"
            raise DeviceError(
                f"relaxation_sigma has {n} curves for {len(times)} relaxation_times_s; allowed: one curve per time."
            )
        set_(self, "relaxation_times_s", times)
        set_(
            self, "relaxation_sigma", tuple(Curve.from_data(c, f"relaxation_sigma[{i}]") for i, c in enumerate(curves))
        )
        if self.read_bandwidth not in READ_BANDWIDTHS:
            raise DeviceError(
                f"read_bandwidth = {self.read_bandwidth!r} is invalid; allowed: {', '.join(READ_BANDWIDTHS)}."
            )
        set_(self, "t_read_s", check_real(owner, "t_read_s", self.t_read_s, unit="s", low=0.0, low_open=True))
        if not self.t0_s > self.t_read_s:
            raise DeviceError(
                f"{owner}: t0_s = {self.t0_s!r} s must exceed t_read_s = {self.t_read_s!r} s (the read-noise "
                "bandwidth runs from 1/t to 1/(2 t_read))."
            )
        lo, hi = _reals("window_us", self.window_us, min_len=2)[:2]
        if len(self.window_us) != 2 or not 0.0 <= lo < hi:
            raise DeviceError(
                f"window_us = {list(self.window_us)!r} is invalid; allowed: [low, high] with 0 <= low < high (µS)."
            )
        set_(self, "window_us", (lo, hi))
        set_(self, "citation", check_text(owner, "citation", self.citation, nonempty=False))
        if not isinstance(self.sources, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.sources.items()
        ):
            raise DeviceError(f"{owner}.sources = {self.sources!r} is invalid; allowed: a mapping field -> text.")
        set_(self, "sources", dict(self.sources))

    # -- the model ---------------------------------------------------------------------------------
    def programming_sigma_us(self, g_target_us: ArrayLike) -> NDArray[np.float64]:
        """σ_prog(g_T), µS, same shape."""
        return self.programming_sigma(g_target_us, self.g_max_us)

    def program(
        self, g_target_us: ArrayLike, rng: np.random.Generator, *, dtype: Any = np.float64
    ) -> NDArray[np.float64]:
        """g_prog = clip(g_T + σ_prog(g_T)·ξ, window), one normal per device, µS.

        ``dtype``: the result's float type (float64 or float32); a table device draws and interpolates in
        float64 whatever ``dtype`` is (the tables' piecewise curves), so its statistics never depend on it.
        """
        g = _f64(g_target_us)
        out = rng.standard_normal(g.shape)
        out *= self.programming_sigma(g, self.g_max_us)
        out += g
        np.clip(out, self.window_us[0], self.window_us[1], out=out)
        return _cast(_shaped(out, np.ndim(g_target_us) == 0), dtype)

    def drift_mu_of(self, g_target_us: ArrayLike) -> NDArray[np.float64]:
        """μ_ν(g_T), dimensionless, same shape."""
        return self.drift_mu(g_target_us, self.g_max_us)

    def drift_sigma_of(self, g_target_us: ArrayLike) -> NDArray[np.float64]:
        """σ_ν(g_T), dimensionless, same shape."""
        return self.drift_sigma(g_target_us, self.g_max_us)

    def drift_exponents(
        self, g_target_us: ArrayLike, rng: np.random.Generator, *, dtype: Any = np.float64
    ) -> NDArray[np.float64]:
        """ν = |μ_ν(g_T) + σ_ν(g_T)·ξ| (or unfolded), drawn once at programming; one normal per device.

        ``dtype``: the result's float type (computed in float64, as :meth:`program`)."""
        g = _f64(g_target_us)
        nu = rng.standard_normal(g.shape)
        nu *= self.drift_sigma(g, self.g_max_us)
        nu += self.drift_mu(g, self.g_max_us)
        if self.drift_fold:
            np.abs(nu, out=nu)
        return _cast(_shaped(nu, np.ndim(g_target_us) == 0), dtype)

    def drift(self, g_prog_us: ArrayLike, nu: ArrayLike, t_inference_s: float) -> NDArray[np.float64]:
        """g_prog·((t + t0)/t0)^(−ν), noiseless, µS (exactly g_prog at t = 0)."""
        t = check_time_s(t_inference_s)
        scalar = np.ndim(g_prog_us) == 0 and np.ndim(nu) == 0
        return _shaped(self._drift(_f64(g_prog_us), _f64(nu), t), scalar)

    def _drift(self, g: NDArray[np.float64], nu: NDArray[np.float64], t: float) -> NDArray[np.float64]:
        out = np.multiply(nu, -math.log1p(t / self.t0_s))
        np.exp(out, out=out)
        out = out * g
        return out

    def bandwidth_factor(self, t_inference_s: float) -> float:
        """bw(t): sqrt(ln((t + t0 + t_read)/(2 t_read))) for 1/f read noise, 1 for ``flat``."""
        t = check_time_s(t_inference_s)
        if self.read_bandwidth == "flat":
            return 1.0
        return math.sqrt(math.log((t + self.t0_s + self.t_read_s) / (2.0 * self.t_read_s)))

    def relaxation_weights(self, t_inference_s: float) -> list[tuple[int, float]]:
        """(k, w_k): linear in ln t between relaxation times, held after the last, linear in t before the first."""
        times = self.relaxation_times_s
        t = check_time_s(t_inference_s)
        if not times:
            return []
        if t < times[0]:
            return [(0, t / times[0])]  # from no relaxation right after programming to V_1 at t_1
        if len(times) == 1:
            return [(0, 1.0)]
        if t >= times[-1]:
            return [(len(times) - 1, 1.0)]
        k = int(np.searchsorted(np.asarray(times), t, side="right")) - 1
        f = (math.log(t) - math.log(times[k])) / (math.log(times[k + 1]) - math.log(times[k]))
        return [(k, 1.0 - f), (k + 1, f)]

    def relaxation_variance(self, g_us: ArrayLike, t_inference_s: float) -> NDArray[np.float64]:
        """V(g, t) = interpolated max(σ_k(g)² − σ_prog(g)², 0), µS², same shape; 0 without relaxation."""
        g = _f64(g_us)
        out = np.zeros_like(g)
        weights = self.relaxation_weights(t_inference_s)
        if weights:
            s_prog2 = np.square(self.programming_sigma(g, self.g_max_us))
            for k, w in weights:
                excess = np.square(self.relaxation_sigma[k](g, self.g_max_us)) - s_prog2
                out += w * np.maximum(excess, 0.0)
        return _shaped(out, np.ndim(g_us) == 0)

    def read_sigma_us(self, g_prog_us: ArrayLike, nu: ArrayLike, t_inference_s: float) -> NDArray[np.float64]:
        """Std of one read around g_drift: sqrt(V(g_prog, t) + (|g_drift|·q(g_prog)·bw(t))²), µS."""
        t = check_time_s(t_inference_s)
        g = _f64(g_prog_us)
        g_drift = self._drift(g, _f64(nu), t)
        rel = np.abs(g_drift) * self.read_q(g, self.g_max_us) * self.bandwidth_factor(t)
        var = np.square(rel) + self.relaxation_variance(g, t)
        return _shaped(np.sqrt(var), np.ndim(g_prog_us) == 0 and np.ndim(nu) == 0)

    def read(
        self,
        g_prog_us: ArrayLike,
        nu: ArrayLike,
        t_inference_s: float,
        rng: np.random.Generator,
        *,
        dtype: Any = np.float64,
    ) -> NDArray[np.float64]:
        """One noisy read at t: clip(g_drift + s(t)·ξ, window), one normal per device, µS.

        ``dtype``: the result's float type (computed in float64, as :meth:`program`)."""
        t = check_time_s(t_inference_s)
        scalar = np.ndim(g_prog_us) == 0 and np.ndim(nu) == 0
        g = _f64(g_prog_us)
        n = _f64(nu)
        g_drift = self._drift(g, n, t)
        sigma = np.asarray(self.read_sigma_us(g, n, t), dtype=np.float64)
        out = rng.standard_normal(g_drift.shape)
        out *= sigma
        out += g_drift
        np.clip(out, self.window_us[0], self.window_us[1], out=out)
        return _cast(_shaped(out, scalar), dtype)

    # -- serialisation -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every parameter as plain JSON/YAML values; :meth:`from_dict` inverts it exactly."""
        return {
            "kind": KIND,
            "name": self.name,
            "g_max_us": self.g_max_us,
            "g_min_us": self.g_min_us,
            **{name: cast("Curve", getattr(self, name)).to_dict() for name in _CURVES},
            "drift_fold": self.drift_fold,
            "t0_s": self.t0_s,
            "relaxation_times_s": list(self.relaxation_times_s),
            "relaxation_sigma": [c.to_dict() for c in self.relaxation_sigma],
            "read_bandwidth": self.read_bandwidth,
            "t_read_s": self.t_read_s,
            "window_us": list(self.window_us),
            "citation": self.citation,
            "sources": dict(self.sources),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: TableDevice | None = None) -> TableDevice:
        """Build a device from a mapping (as :meth:`to_dict` writes), on top of ``base`` if given.

        Keys missing from ``data`` keep the value of ``base`` (or the default); a curve given replaces the
        base's curve whole.

        Raises:
            DeviceError: an unknown key (the message lists the allowed ones) or an invalid value.
        """
        allowed = list(cls().to_dict())
        for key in data:
            if key not in allowed:
                raise DeviceError(f"Unknown key {key!r} in a table device; allowed keys: {', '.join(allowed)}.")
        if data.get("kind", KIND) != KIND:
            raise DeviceError(f"kind = {data.get('kind')!r} is invalid for a table device; allowed: {KIND!r}.")
        merged: dict[str, Any] = (base or cls()).to_dict()
        merged.update({k: v for k, v in data.items() if k != "kind"})
        merged.pop("kind")
        relax = merged["relaxation_sigma"]
        if not isinstance(relax, (list, tuple)):
            raise DeviceError(f"relaxation_sigma = {relax!r} is malformed; allowed: a list of curves, one per time.")
        times = merged["relaxation_times_s"]
        window = merged["window_us"]
        return cls(
            name=merged["name"],
            g_max_us=merged["g_max_us"],
            g_min_us=merged["g_min_us"],
            programming_sigma=Curve.from_data(merged["programming_sigma"], "programming_sigma"),
            drift_mu=Curve.from_data(merged["drift_mu"], "drift_mu", nonnegative=False),
            drift_sigma=Curve.from_data(merged["drift_sigma"], "drift_sigma"),
            drift_fold=merged["drift_fold"],
            t0_s=merged["t0_s"],
            relaxation_times_s=tuple(times) if isinstance(times, (list, tuple)) else times,
            relaxation_sigma=tuple(Curve.from_data(c, f"relaxation_sigma[{i}]") for i, c in enumerate(relax)),
            read_q=Curve.from_data(merged["read_q"], "read_q"),
            read_bandwidth=merged["read_bandwidth"],
            t_read_s=merged["t_read_s"],
            window_us=tuple(window) if isinstance(window, (list, tuple)) else window,
            citation=merged["citation"],
            sources=merged["sources"],
        )

    def replace(self, **overrides: Any) -> TableDevice:
        """A new, validated device with some fields changed (curves as mappings or :class:`Curve`)."""
        return TableDevice.from_dict(
            {k: (v.to_dict() if isinstance(v, Curve) else v) for k, v in overrides.items()}, base=self
        )


# Wan et al., "A compute-in-memory chip based on resistive random-access memory", Nature 608, 504-512
# (2022), doi:10.1038/s41586-022-04992-8, as fitted in IBM aihwkit 1.2.0 ReRamWan2022NoiseModel
# (src/aihwkit/inference/noise/reram.py): std of g − g_T, 4th-order polynomials in ĝ = g_T/g_max in µS for
# g_max = 40 µS, at 1 s, 1 day and 2 days after programming (aihwkit lists them highest power first).
_WAN_1S = (0.348, 16.030, -43.853, 45.393, -16.815)
_WAN_1D = (0.701, 22.086, -50.773, 47.095, -16.458)
_WAN_2D = (0.782, 20.274, -43.507, 37.062, -11.934)

RRAM_WAN_2022 = TableDevice(
    name="rram_wan2022",
    g_max_us=40.0,
    g_min_us=0.0,
    programming_sigma=Curve(poly_g_hat=(_WAN_1S,)),
    relaxation_times_s=(1.0, 86400.0, 172800.0),
    relaxation_sigma=(Curve(poly_g_hat=(_WAN_1S,)), Curve(poly_g_hat=(_WAN_1D,)), Curve(poly_g_hat=(_WAN_2D,))),
    window_us=(0.0, 1.0e6),
    citation=(
        "Wan et al., Nature 608, 504 (2022), doi:10.1038/s41586-022-04992-8; polynomial fits of IBM aihwkit "
        "1.2.0 ReRamWan2022NoiseModel (src/aihwkit/inference/noise/reram.py)"
    ),
    sources={
        "g_max_us": "aihwkit ReRamWan2022NoiseModel: coefficients fitted for g_max = 40 µS",
        "g_min_us": "aihwkit SinglePairConductanceConverter default g_min = 0",
        "programming_sigma": "aihwkit coeff_dic[1 s] (Wan et al. 2022 data at 1 s; aihwkit programs with it)",
        "relaxation_sigma": "aihwkit coeff_dic at 1 s, 1 day, 2 days (fits to Wan et al. 2022 figures)",
        "relaxation_times_s": "aihwkit coeff_dic keys 1, 86400, 172800 s",
        "relaxation interpolation": (
            "inferred: variance interpolated linearly in ln t between the published times and held after "
            "2 days (aihwkit refuses other times; no data beyond 2 days)"
        ),
        "drift_mu, drift_sigma": "aihwkit: ReRAM shows no drift in the PCM sense (nu = 0)",
        "read_q": (
            "inferred: 0 (aihwkit: no separate 1/f data; it suggests ~1 % additive MVM noise, which is the "
            "periphery's output noise here)"
        ),
        "window_us": "aihwkit clamps at 0 (no upper clamp)",
        "t0_s, t_read_s": "unused by this model (nu = 0, read_q = 0); defaults of the PCM model",
    },
)
"""RRAM of Wan et al., Nature 2022 (NeuRRAM), via aihwkit ``ReRamWan2022NoiseModel`` (g_max = 40 µS).

Its programming noise is not monotone in conductance: 0.35 µS at ĝ = 0, a maximum of ~2.3 µS near
ĝ ≈ 0.3 and 1.10 µS at ĝ = 1."""
