"""Statistical model of IBM's doped-GST phase-change memory (PCM): programming noise, drift, read noise.

This is the "PCM-like" model of aihwkit (``PCMLikeNoiseModel``, ``src/aihwkit/inference/noise/pcm.py``),
calibrated on the one-million-device PCM array of Joshi et al., Nat. Commun. 11, 2473 (2020),
doi:10.1038/s41467-020-16108-9, and on Nandakumar et al., ICECS 2019, doi:10.1109/ICECS46596.2019.8964852.
All constants and formulas are those of reference/papers.md, sections "Common PCM device model" and
"Formulas to implement". Conductances are in µS, times in s, and ĝ = g / g_max (dimensionless)::

    σ_prog(ĝ)  = (c0 + c1·ĝ + c2·ĝ²) · g_max / g_max_ref          (ĝ clipped to [0, 1])
    g_prog     = max(g_T + σ_prog(ĝ_T)·ξ, 0)
    μ_ν(ĝ)     = clip(mu_slope·ln ĝ + mu_offset, mu_bounds)        (ĝ floored at g_floor)
    σ_ν(ĝ)     = clip(sigma_slope·ln ĝ + sigma_offset, sigma_bounds)
    ν          = |μ_ν(ĝ_T) + σ_ν(ĝ_T)·ξ| · drift_scale              (drawn once, at programming)
    g_drift(t) = g_prog · ((t_inf + t0) / t0)^(−ν)
    Q_s(ĝ)     = min(q_coefficient / max(ĝ^q_exponent, q_floor), q_max)
    bw(t)      = sqrt(ln((t_inf + t0 + t_read) / (2 t_read)))
    g(t)       = max(g_drift + |g_drift| · Q_s(|g_prog| / g_max) · bw(t) · ξ, 0)

with ξ ~ N(0, 1) i.i.d. Every draw uses the ``numpy.random.Generator`` passed in: ``program``,
``drift_exponents`` and ``read`` each consume exactly one ``rng.standard_normal(shape)`` call, one normal
per device in C order, so a given seed reproduces a chip exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from anacompile.devices._validate import (
    check_bounds,
    check_name_and_window,
    check_real,
    check_reals,
    check_text,
    check_time_s,
    merge_overrides,
)
from anacompile.errors import DeviceError

__all__ = ["PCM_JOSHI_2020", "SAMPLE_DTYPES", "PCMDevice", "PCMDrift", "PCMProgrammingNoise", "PCMReadNoise"]

_CITATION = (
    "Joshi et al., Nat. Commun. 11, 2473 (2020), doi:10.1038/s41467-020-16108-9; "
    "Nandakumar et al., ICECS 2019, doi:10.1109/ICECS46596.2019.8964852; "
    "constants of IBM aihwkit PCMLikeNoiseModel (src/aihwkit/inference/noise/pcm.py)"
)


SAMPLE_DTYPES = (np.float64, np.float32)
"""Float types the kernels compute and sample in (``dtype=``): float64 (default) or float32.

float32 draws float32 normals (numpy's float32 ziggurat, 24-bit mantissa) and evaluates every formula in
float32: the relative rounding error, 6e-8, is six orders of magnitude below the smallest relative noise of
the model (σ_prog/g_max >= 1 %, Q_s >= 0.88 %, σ_ν >= 0.008), and ĝ's floors (1e-7, 1e-3) are normal
float32 numbers, so the sampled statistics are the same (tests/devices/test_float32_sampling.py checks
means and stds against the formulas to a fraction of their standard error, with 5 % twins that fail).
"""


def _as_f64(x: ArrayLike, dtype: Any = np.float64) -> NDArray[np.float64]:
    """Return ``x`` as a float array (float64, or ``dtype``) of at least one dimension (0-d becomes (1,))."""
    a: NDArray[np.float64] = np.asarray(x, dtype=_sample_dtype(dtype))
    return a.reshape(1) if a.ndim == 0 else a


def _sample_dtype(dtype: Any) -> type:
    """``dtype`` as one of :data:`SAMPLE_DTYPES`; anything else is a DeviceError."""
    for allowed in SAMPLE_DTYPES:
        if np.dtype(dtype) == np.dtype(allowed):
            return allowed
    raise DeviceError(f"dtype={dtype!r}: the device kernels compute in float64 or float32.")


def _shaped(out: NDArray[np.float64], scalar: bool) -> NDArray[np.float64]:
    """Return ``out`` unchanged, or its single element as a numpy float64 scalar when the input was 0-d."""
    return cast("NDArray[np.float64]", out[0]) if scalar else out


@dataclass(frozen=True)
class PCMProgrammingNoise:
    """Residual error of closed-loop program-and-verify: σ_prog(ĝ) = (c0 + c1 ĝ + c2 ĝ²)·g_max/g_max_ref.

    Source: Joshi et al. 2020 / Nandakumar et al. ICECS 2019 via aihwkit ``PCMLikeNoiseModel.prog_coeff``
    (reference/papers.md, "Common PCM device model", item 1). The polynomial gives 0.263 µS at ĝ = 0,
    0.953 µS at ĝ = 0.5 and its maximum 1.086 µS at ĝ = 0.8375, for g_max = 25 µS.

    Attributes:
        coefficients_us: (c0, c1, c2) in µS, for a device of g_max = ``g_max_reference_us``.
        g_max_reference_us: g_max for which the coefficients were fitted, µS; σ_prog scales linearly
            with g_max / g_max_reference_us (aihwkit ``prog_coeff_g_max_reference``).
    """

    coefficients_us: tuple[float, float, float] = (0.26348, 1.9650, -1.1731)  # µS; aihwkit prog_coeff
    g_max_reference_us: float = 25.0  # µS; aihwkit prog_coeff_g_max_reference

    def __post_init__(self) -> None:
        """Validate and normalise (ints to floats, lists to tuples); σ_prog must be >= 0 on ĝ ∈ [0, 1].

        Raises:
            DeviceError: a value is malformed or out of range.
        """
        owner = type(self).__name__
        c0, c1, c2 = check_reals(owner, "coefficients_us", self.coefficients_us, 3, unit="µS")
        object.__setattr__(self, "coefficients_us", (c0, c1, c2))
        g_ref = check_real(owner, "g_max_reference_us", self.g_max_reference_us, unit="µS", low=0.0, low_open=True)
        object.__setattr__(self, "g_max_reference_us", g_ref)
        candidates = [0.0, 1.0]
        if c2 != 0.0 and 0.0 < -c1 / (2.0 * c2) < 1.0:
            candidates.append(-c1 / (2.0 * c2))
        g_hat = min(candidates, key=lambda x: c0 + c1 * x + c2 * x * x)
        lowest = c0 + c1 * g_hat + c2 * g_hat * g_hat
        if lowest < 0.0:
            raise DeviceError(
                f"{owner}.coefficients_us = {self.coefficients_us!r} give a negative programming-noise "
                f"std ({lowest:.4g} µS at ĝ = {g_hat:.4g}); allowed: c0 + c1·ĝ + c2·ĝ² >= 0 for every "
                "ĝ in [0, 1]."
            )


@dataclass(frozen=True)
class PCMDrift:
    """Conductance drift g(t) = g_prog·((t_inf + t0)/t0)^(−ν), ν ~ |N(μ_ν(ĝ_T), σ_ν(ĝ_T))|·drift_scale.

    Source: Nandakumar et al., ICECS 2019 and Joshi et al. 2020 via aihwkit
    ``PCMLikeNoiseModel.generate_drift_coefficients`` (reference/papers.md, "Common PCM device model",
    item 2): μ_ν = clip(−0.0155 ln ĝ + 0.0244, 0.049, 0.1), σ_ν = clip(−0.0125 ln ĝ − 0.0059, 0.008,
    0.045), ĝ floored at 1e-7.

    Attributes:
        t0_s: time of the first read after programming, s; the drift reference time.
        mu_slope: d μ_ν / d ln ĝ (dimensionless).
        mu_offset: μ_ν at ĝ = 1 before clipping (dimensionless).
        mu_bounds: (lower, upper) clip of μ_ν (dimensionless).
        sigma_slope: d σ_ν / d ln ĝ (dimensionless).
        sigma_offset: σ_ν at ĝ = 1 before clipping (dimensionless).
        sigma_bounds: (lower, upper) clip of σ_ν (dimensionless).
        g_floor: floor of ĝ before the logarithm (dimensionless).
        drift_scale: factor applied to every ν (1 = published model; aihwkit ``drift_scale``).
    """

    t0_s: float = 20.0  # s; aihwkit t_0
    mu_slope: float = -0.0155  # 1; aihwkit generate_drift_coefficients
    mu_offset: float = 0.0244  # 1; idem
    mu_bounds: tuple[float, float] = (0.049, 0.1)  # 1; idem (clamp of mu_drift)
    sigma_slope: float = -0.0125  # 1; idem
    sigma_offset: float = -0.0059  # 1; idem
    sigma_bounds: tuple[float, float] = (0.008, 0.045)  # 1; idem (clamp of sig_drift)
    g_floor: float = 1e-7  # 1; idem (g_relative clamped at 1e-7)
    drift_scale: float = 1.0  # 1; aihwkit drift_scale

    def __post_init__(self) -> None:
        """Validate and normalise (ints to floats, lists to tuples).

        Raises:
            DeviceError: a value is malformed or out of range.
        """
        owner = type(self).__name__
        set_ = object.__setattr__
        set_(self, "t0_s", check_real(owner, "t0_s", self.t0_s, unit="s", low=0.0, low_open=True))
        for name in ("mu_slope", "mu_offset", "sigma_slope", "sigma_offset"):
            set_(self, name, check_real(owner, name, getattr(self, name)))
        set_(self, "mu_bounds", check_bounds(owner, "mu_bounds", self.mu_bounds, low=0.0))
        set_(self, "sigma_bounds", check_bounds(owner, "sigma_bounds", self.sigma_bounds, low=0.0))
        set_(self, "g_floor", check_real(owner, "g_floor", self.g_floor, low=0.0, low_open=True, high=1.0))
        set_(self, "drift_scale", check_real(owner, "drift_scale", self.drift_scale, low=0.0))

    def __call__(self, g_prog_us: ArrayLike, nu: ArrayLike, t_inference_s: float) -> NDArray[np.float64]:
        """Return the noiseless drifted conductance t_inference_s after programming, µS.

        g_drift = g_prog · ((t_inf + t0)/t0)^(−ν) (Joshi et al. 2020; aihwkit
        ``apply_drift_noise_to_conductance``; reference/papers.md, "Formulas to implement").
        Deterministic; exactly g_prog at t_inf = 0. Because the drift model is the ``drift`` field of
        :class:`PCMDevice`, this is what ``device.drift(g_prog_us, nu, t_inference_s)`` calls.

        Args:
            g_prog_us: programmed conductances, µS.
            nu: drift exponents from :meth:`PCMDevice.drift_exponents` (broadcast against ``g_prog_us``),
                drawn once per device and reused at every t.
            t_inference_s: time since the end of programming, s (one number >= 0).

        Returns:
            Drifted conductances, µS, of the broadcast shape.

        Raises:
            DeviceError: ``t_inference_s`` is negative, not finite or not a single number.
        """
        t = check_time_s(t_inference_s)
        scalar = np.ndim(g_prog_us) == 0 and np.ndim(nu) == 0
        return _shaped(self._apply(_as_f64(g_prog_us), _as_f64(nu), t), scalar)

    def _apply(self, g_prog_us: NDArray[np.float64], nu: NDArray[np.float64], t_s: float) -> NDArray[np.float64]:
        """Return g_prog·((t_s + t0)/t0)^(−ν) for float64 arrays and an already checked time.

        Args:
            g_prog_us: programmed conductances, µS, float64 array.
            nu: drift exponents, float64 array (broadcast against ``g_prog_us``).
            t_s: time since the end of programming, s, already checked to be finite and >= 0.

        Returns:
            A new float64 array of the broadcast shape.
        """
        log_ratio = math.log1p(t_s / self.t0_s)  # ln((t + t0)/t0), accurate for t << t0
        shape = np.broadcast_shapes(np.shape(g_prog_us), np.shape(nu))
        out = np.multiply(np.broadcast_to(nu, shape), -log_ratio)
        np.exp(out, out=out)
        out *= g_prog_us
        return out


@dataclass(frozen=True)
class PCMReadNoise:
    """1/f read noise: relative std Q_s(ĝ)·sqrt(ln((t_inf + t0 + t_read)/(2 t_read))).

    Source: Joshi et al. 2020 via aihwkit ``PCMLikeNoiseModel.apply_drift_noise_to_conductance``
    (reference/papers.md, "Common PCM device model", item 3): PSD S_G/G² = Q/f integrated over the
    bandwidth [1/t, 1/(2 t_read)], Q_s(ĝ) = min(0.0088 / max(ĝ^0.65, 1e-3), 0.2), t_read = 250 ns.

    Attributes:
        q_coefficient: Q_s at ĝ = 1 (dimensionless).
        q_exponent: exponent of ĝ in the denominator of Q_s (dimensionless).
        q_floor: floor of ĝ^q_exponent (dimensionless).
        q_max: cap of Q_s (dimensionless).
        t_read_s: duration of one read, s.
    """

    q_coefficient: float = 0.0088  # 1; aihwkit read noise fit
    q_exponent: float = 0.65  # 1; idem
    q_floor: float = 1e-3  # 1; idem
    q_max: float = 0.2  # 1; idem
    t_read_s: float = 250e-9  # s; aihwkit t_read

    def __post_init__(self) -> None:
        """Validate and normalise (ints to floats).

        Raises:
            DeviceError: a value is malformed or out of range.
        """
        owner = type(self).__name__
        set_ = object.__setattr__
        set_(self, "q_coefficient", check_real(owner, "q_coefficient", self.q_coefficient, low=0.0))
        set_(self, "q_exponent", check_real(owner, "q_exponent", self.q_exponent, low=0.0))
        set_(self, "q_floor", check_real(owner, "q_floor", self.q_floor, low=0.0, low_open=True))
        set_(self, "q_max", check_real(owner, "q_max", self.q_max, low=0.0))
        set_(self, "t_read_s", check_real(owner, "t_read_s", self.t_read_s, unit="s", low=0.0, low_open=True))


@dataclass(frozen=True)
class PCMDevice:
    """A PCM device: conductance range plus programming, drift and read-noise models.

    The methods implement reference/papers.md, "Formulas to implement" (PCM device model); see the module
    docstring for the formulas. They are pure and vectorised: array-like in, float64 array of the same
    shape out (a scalar in gives a numpy float64 scalar out). Targets are expected in [0, g_max_us];
    ĝ = g / g_max_us in every formula (as in aihwkit; ``g_min_us`` is the floor the weight mapping adds to
    both devices of a pair and does not enter the noise model).

    ``drift`` is both the drift parameters (``device.drift.t0_s``) and, being callable, the drift function
    ``device.drift(g_prog_us, nu, t_inference_s)`` (see :meth:`PCMDrift.__call__`).

    Attributes:
        name: short name of the device (preset name or the device file's ``name``).
        g_max_us: largest programmable conductance, µS.
        g_min_us: smallest conductance used by the weight mapping, µS.
        programming: programming-noise model.
        drift: drift model.
        read_noise: read-noise model.
        citation: where the parameters come from.
    """

    name: str = "pcm"
    g_max_us: float = 25.0  # µS; Joshi et al. 2020, aihwkit g_max
    g_min_us: float = 0.0  # µS; aihwkit SinglePairConductanceConverter g_min
    programming: PCMProgrammingNoise = field(default_factory=PCMProgrammingNoise)
    drift: PCMDrift = field(default_factory=PCMDrift)
    read_noise: PCMReadNoise = field(default_factory=PCMReadNoise)
    citation: str = _CITATION

    def __post_init__(self) -> None:
        """Validate and normalise the parameters, including the cross-field constraints.

        Raises:
            DeviceError: a value is malformed or out of range.
        """
        owner = type(self).__name__
        set_ = object.__setattr__
        check_name_and_window(self, owner)
        for name, cls in (
            ("programming", PCMProgrammingNoise),
            ("drift", PCMDrift),
            ("read_noise", PCMReadNoise),
        ):
            value = getattr(self, name)
            if not isinstance(value, cls):
                raise DeviceError(
                    f"{owner}.{name} = {value!r} has type {type(value).__name__}; allowed: a {cls.__name__}."
                )
        set_(self, "citation", check_text(owner, "citation", self.citation, nonempty=False))
        if not self.drift.t0_s > self.read_noise.t_read_s:
            raise DeviceError(
                f"{owner}: drift.t0_s = {self.drift.t0_s!r} s must exceed read_noise.t_read_s = "
                f"{self.read_noise.t_read_s!r} s (the read-noise bandwidth runs from 1/t to 1/(2 t_read))."
            )

    # ----------------------------------------------------------------------------------------------
    # Programming
    # ----------------------------------------------------------------------------------------------

    def programming_sigma_us(self, g_target_us: ArrayLike) -> NDArray[np.float64]:
        """Return the programming-noise std σ_prog of each target, µS.

        σ_prog(ĝ_T) = (c0 + c1·ĝ_T + c2·ĝ_T²) · g_max / g_max_ref with ĝ_T = clip(g_T/g_max, 0, 1)
        (Joshi et al. 2020; aihwkit ``PCMLikeNoiseModel``; reference/papers.md, "Formulas to implement").

        Args:
            g_target_us: target conductances g_T, µS (any shape).

        Returns:
            σ_prog, µS, same shape.
        """
        g = _as_f64(g_target_us)
        return _shaped(self._programming_sigma(g), np.ndim(g_target_us) == 0)

    def _programming_sigma(self, g: NDArray[np.float64]) -> NDArray[np.float64]:
        scale = self.g_max_us / self.programming.g_max_reference_us
        c0, c1, c2 = (c * scale for c in self.programming.coefficients_us)
        x = g / self.g_max_us
        np.clip(x, 0.0, 1.0, out=x)
        sigma = x * c2  # Horner: c0 + x (c1 + x c2)
        sigma += c1
        sigma *= x
        sigma += c0
        return sigma

    def program(
        self, g_target_us: ArrayLike, rng: np.random.Generator, *, dtype: Any = np.float64
    ) -> NDArray[np.float64]:
        """Program target conductances with closed-loop residual noise and return the reached ones, µS.

        g_prog = max(g_T + σ_prog(ĝ_T)·ξ, 0), ξ ~ N(0, 1) (Joshi et al. 2020; aihwkit
        ``apply_programming_noise_to_conductance``). As published, every device gets noise, including
        targets of exactly 0 (which then sit at 0 half of the time and are positive otherwise).

        Args:
            g_target_us: target conductances g_T, µS (any shape).
            rng: source of the normals (one ``standard_normal`` call, one value per device).
            dtype: float64 (default) or float32: the type the normals are drawn in and the result computed
                in (:data:`SAMPLE_DTYPES`).

        Returns:
            Programmed conductances g_prog >= 0, µS, same shape, of ``dtype``.
        """
        g = _as_f64(g_target_us, dtype)
        sigma = self._programming_sigma(g)
        out = rng.standard_normal(g.shape, dtype=g.dtype)
        out *= sigma
        out += g
        np.maximum(out, 0.0, out=out)
        return _shaped(out, np.ndim(g_target_us) == 0)

    # ----------------------------------------------------------------------------------------------
    # Drift
    # ----------------------------------------------------------------------------------------------

    def _log_g_hat(self, g: NDArray[np.float64]) -> NDArray[np.float64]:
        x = g / self.g_max_us
        np.maximum(x, self.drift.g_floor, out=x)
        return np.log(x, out=x)

    def _drift_mu(self, log_g: NDArray[np.float64]) -> NDArray[np.float64]:
        p = self.drift
        mu = log_g * p.mu_slope
        mu += p.mu_offset
        return np.clip(mu, p.mu_bounds[0], p.mu_bounds[1], out=mu)

    def _drift_sigma(self, log_g: NDArray[np.float64]) -> NDArray[np.float64]:
        p = self.drift
        sigma = log_g * p.sigma_slope
        sigma += p.sigma_offset
        return np.clip(sigma, p.sigma_bounds[0], p.sigma_bounds[1], out=sigma)

    def drift_mu(self, g_target_us: ArrayLike) -> NDArray[np.float64]:
        """Return the mean μ_ν of the (unfolded) drift-exponent normal for each target.

        μ_ν(ĝ) = clip(mu_slope·ln ĝ + mu_offset, mu_bounds), ĝ = max(g_T/g_max, g_floor) (Nandakumar et
        al., ICECS 2019; aihwkit ``generate_drift_coefficients``; reference/papers.md, "Formulas").

        Args:
            g_target_us: target conductances g_T, µS (any shape).

        Returns:
            μ_ν (dimensionless), same shape.
        """
        log_g = self._log_g_hat(_as_f64(g_target_us))
        return _shaped(self._drift_mu(log_g), np.ndim(g_target_us) == 0)

    def drift_sigma(self, g_target_us: ArrayLike) -> NDArray[np.float64]:
        """Return the std σ_ν of the (unfolded) drift-exponent normal for each target.

        σ_ν(ĝ) = clip(sigma_slope·ln ĝ + sigma_offset, sigma_bounds), ĝ = max(g_T/g_max, g_floor)
        (Nandakumar et al., ICECS 2019; aihwkit ``generate_drift_coefficients``).

        Args:
            g_target_us: target conductances g_T, µS (any shape).

        Returns:
            σ_ν (dimensionless), same shape.
        """
        log_g = self._log_g_hat(_as_f64(g_target_us))
        return _shaped(self._drift_sigma(log_g), np.ndim(g_target_us) == 0)

    def drift_exponents(
        self, g_target_us: ArrayLike, rng: np.random.Generator, *, dtype: Any = np.float64
    ) -> NDArray[np.float64]:
        """Draw the drift exponent ν of each device; call once, at programming, and reuse at every t.

        ν = |μ_ν(ĝ_T) + σ_ν(ĝ_T)·ξ| · drift_scale, a folded normal, computed from the *target*
        conductance (Nandakumar et al., ICECS 2019; aihwkit ``generate_drift_coefficients``).

        Args:
            g_target_us: target conductances g_T, µS (any shape).
            rng: source of the normals (one ``standard_normal`` call, one value per device).
            dtype: float64 (default) or float32 (:data:`SAMPLE_DTYPES`).

        Returns:
            ν >= 0 (dimensionless), same shape, of ``dtype``.
        """
        log_g = self._log_g_hat(_as_f64(g_target_us, dtype))
        mu = self._drift_mu(log_g)
        nu = self._drift_sigma(log_g)
        nu *= rng.standard_normal(log_g.shape, dtype=log_g.dtype)
        nu += mu
        np.abs(nu, out=nu)
        if self.drift.drift_scale != 1.0:
            nu *= self.drift.drift_scale
        return _shaped(nu, np.ndim(g_target_us) == 0)

    # ----------------------------------------------------------------------------------------------
    # Read noise
    # ----------------------------------------------------------------------------------------------

    def read_noise_q(self, g_prog_us: ArrayLike, *, dtype: Any = np.float64) -> NDArray[np.float64]:
        """Return the 1/f noise amplitude Q_s of each device.

        Q_s(ĝ) = min(q_coefficient / max(ĝ^q_exponent, q_floor), q_max), ĝ = |g_prog|/g_max (Joshi et al.
        2020; aihwkit ``PCMLikeNoiseModel``; reference/papers.md, "Formulas to implement").

        Args:
            g_prog_us: programmed conductances, µS (any shape).
            dtype: float64 (default) or float32, as :meth:`read` computes it (its ``q_s``).

        Returns:
            Q_s (dimensionless), same shape.
        """
        return _shaped(self._read_noise_q(_as_f64(g_prog_us, dtype)), np.ndim(g_prog_us) == 0)

    def _read_noise_q(self, g: NDArray[np.float64]) -> NDArray[np.float64]:
        p = self.read_noise
        q = np.abs(g)
        q /= self.g_max_us
        np.power(q, p.q_exponent, out=q)
        np.maximum(q, p.q_floor, out=q)
        np.divide(p.q_coefficient, q, out=q)
        return np.minimum(q, p.q_max, out=q)

    def read_noise_bandwidth_factor(self, t_inference_s: float) -> float:
        """Return sqrt(ln((t_inf + t0 + t_read)/(2 t_read))), the 1/f noise integrated over the bandwidth.

        For S_G/G² = Q/f the variance between 1/t and 1/(2 t_read) is Q² ln((t + t_read)/(2 t_read)),
        t = t_inf + t0 (Joshi et al. 2020; aihwkit ``apply_drift_noise_to_conductance``). It is 4.184 at
        t_inf = 0 and 5.637 after one year for the defaults.

        Args:
            t_inference_s: time since the end of programming, s (one number >= 0).

        Returns:
            The dimensionless factor.

        Raises:
            DeviceError: ``t_inference_s`` is negative, not finite or not a single number.
        """
        return self._bandwidth_factor(check_time_s(t_inference_s))

    def _bandwidth_factor(self, t: float) -> float:
        t_read = self.read_noise.t_read_s
        return math.sqrt(math.log((t + self.drift.t0_s + t_read) / (2.0 * t_read)))

    def read(
        self,
        g_prog_us: ArrayLike,
        nu: ArrayLike,
        t_inference_s: float,
        rng: np.random.Generator,
        *,
        dtype: Any = np.float64,
        q_s: NDArray[Any] | None = None,
    ) -> NDArray[np.float64]:
        """Return one noisy read of each device t_inference_s after programming, µS.

        g(t) = max(g_drift + |g_drift|·Q_s(|g_prog|/g_max)·sqrt(ln((t + t_read)/(2 t_read)))·ξ, 0), with
        g_drift from :meth:`drift` (Joshi et al. 2020; aihwkit ``apply_drift_noise_to_conductance``). The
        noise is drawn anew at every call (the expected 1/f noise at t, not a correlated trajectory).

        Args:
            g_prog_us: programmed conductances, µS.
            nu: drift exponents from :meth:`drift_exponents` (broadcast against ``g_prog_us``).
            t_inference_s: time since the end of programming, s (one number >= 0).
            rng: source of the normals (one ``standard_normal`` call, one value per device).
            dtype: float64 (default) or float32 (:data:`SAMPLE_DTYPES`).
            q_s: :meth:`read_noise_q` of these ``g_prog_us`` in ``dtype``, if the caller keeps it: it does not
                depend on t, so a chip read at many times computes it once (the same values).

        Returns:
            Read conductances >= 0, µS, of the broadcast shape, of ``dtype``.

        Raises:
            DeviceError: ``t_inference_s`` is negative, not finite or not a single number.
        """
        t = check_time_s(t_inference_s)
        bandwidth = self._bandwidth_factor(t)
        scalar = np.ndim(g_prog_us) == 0 and np.ndim(nu) == 0
        g = _as_f64(g_prog_us, dtype)
        g_drift = self.drift._apply(g, _as_f64(nu, dtype), t)
        noise = np.abs(g_drift)
        noise *= self._read_noise_q(g) if q_s is None else q_s  # broadcasts when nu has more dimensions
        noise *= bandwidth
        noise *= rng.standard_normal(g_drift.shape, dtype=g_drift.dtype)
        g_drift += noise
        np.maximum(g_drift, 0.0, out=g_drift)
        return _shaped(g_drift, scalar)

    # ----------------------------------------------------------------------------------------------
    # Serialisation and variants
    # ----------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Return every parameter as nested dicts of plain Python values (tuples become lists).

        Returns:
            A dict that ``json.dumps``/``yaml.safe_dump`` accept and :meth:`from_dict` inverts exactly.
        """

        def plain(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, (tuple, list)):
                return [plain(v) for v in value]
            return value

        return cast("dict[str, Any]", plain(asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PCMDevice:
        """Build a device from nested dicts (as :meth:`to_dict` writes); missing keys keep their defaults.

        Args:
            data: field name -> value; ``programming``, ``drift`` and ``read_noise`` are nested dicts.

        Returns:
            The validated device.

        Raises:
            DeviceError: an unknown key (the message lists the allowed ones), a wrong type, or a value out
                of range.
        """
        return merge_overrides(cls(), data)

    def replace(self, **overrides: Any) -> PCMDevice:
        """Return a new, validated device with some parameters changed.

        Nested models accept a dict of their fields, merged onto the current values, e.g.
        ``device.replace(g_max_us=30, drift={"drift_scale": 0.5})``, or a whole instance.

        Args:
            **overrides: field name -> new value.

        Returns:
            The new device.

        Raises:
            DeviceError: an unknown key, a wrong type, or a value out of range.
        """
        return merge_overrides(self, overrides)


PCM_JOSHI_2020 = PCMDevice()
"""The PCM preset of Joshi et al. 2020 / aihwkit ``PCMLikeNoiseModel`` defaults (g_max = 25 µS)."""
