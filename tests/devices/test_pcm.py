"""Tests of anacompile/devices/pcm.py against reference/papers.md ("Device-model unit checks", "Formulas").

Unit checks compare with the printed table values at their printed precision and with full-precision
values computed by hand from the published constants. Statistical checks use a fixed seed, >= 1e5
samples and a tolerance of 5 standard errors of the estimator; each one is shown to fail for a model
perturbed by 5 %.
"""

from __future__ import annotations

import json
import math
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np
import pytest
import yaml
from scipy import stats

from anacompile.devices import PCM_JOSHI_2020, Device, PCMDevice, PCMDrift, PCMProgrammingNoise, PCMReadNoise
from anacompile.errors import AnacompileError, DeviceError
from tests._support import stats as st

D = PCM_JOSHI_2020
G_MAX = 25.0  # µS
HOUR, DAY, YEAR = 3600.0, 86400.0, 365 * 86400.0  # s
N = 200_000  # samples per statistical check
N_SE = st.TOLERANCE_SE  # tolerance in standard errors (tests/_support/stats.py)


def _round_half_up(value: Any, decimals: int) -> Decimal:
    return Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)


def assert_printed(value: Any, printed: float, decimals: int, *, double_rounded: bool = False) -> None:
    """Assert that ``value`` rounded half-up to ``decimals`` digits is ``printed``.

    With ``double_rounded`` the value is first rounded to ``decimals + 1`` digits, as the reference table
    did for three entries (e.g. 0.448249 -> 0.44825 -> 0.4483).
    """
    if double_rounded:
        value = float(_round_half_up(value, decimals + 1))
    assert _round_half_up(value, decimals) == Decimal(repr(printed)).quantize(Decimal(1).scaleb(-decimals))


# ------------------------------------------------------------------------------------------------
# Unit checks: reference/papers.md, table "Device-model unit checks"
# ------------------------------------------------------------------------------------------------

# (ĝ, printed value, exact value from the constants, double_rounded). Three printed values were rounded
# twice in the reference (0.448249 -> 0.44825 -> 0.4483; 1.0863478 -> 1.08635 -> 1.0864; 0.0315467 ->
# 0.03155 -> 0.0316; correctly rounded: 0.4482, 1.0863, 0.0315); the exact column pins all of them.
SIGMA_PROG = [
    (0.0, 0.2635, 0.26348, False),
    (0.1, 0.4483, 0.448249, True),
    (0.5, 0.9527, 0.952705, False),
    (0.8375, 1.0864, 1.086347828125, True),
    (1.0, 1.0554, 1.05538, False),
]
MU_NU = [
    (1.0, 0.0490, 0.049),
    (0.3, 0.0490, 0.049),
    (0.1, 0.0601, 0.06009006894140771),
    (0.05, 0.0708, 0.07083385024008686),
    (0.01, 0.0958, 0.09578013788281542),
]
SIGMA_NU = [
    (1.0, 0.0080, 0.008, False),
    (0.5, 0.0080, 0.008, False),
    (0.1, 0.0229, 0.02288231366242557, False),
    (0.05, 0.0316, 0.031546653419424885, True),
    (0.01, 0.0450, 0.045, False),
]
Q_S = [
    (1.0, 0.00880, 0.0088),
    (0.5, 0.01381, 0.013808680122982813),
    (0.1, 0.03931, 0.03930815610928476),
    (0.01, 0.17558, 0.17558308371726142),
]
BANDWIDTH = [
    (0.0, 4.184, 4.18382480806477),
    (HOUR, 4.765, 4.764754667704634),
    (DAY, 5.087, 5.08680962372419),
    (YEAR, 5.637, 5.636958282717241),
]
DRIFT_FACTOR_NU_0049 = [
    (HOUR, 0.775, 0.7751285793650408),
    (DAY, 0.664, 0.6635235948439212),
    (YEAR, 0.497, 0.49694569483461226),
]


@pytest.mark.parametrize(("g_hat", "printed", "exact", "double_rounded"), SIGMA_PROG)
def test_programming_sigma_matches_reference_table(
    g_hat: float, printed: float, exact: float, double_rounded: bool
) -> None:
    sigma = D.programming_sigma_us(g_hat * G_MAX)
    assert_printed(sigma, printed, 4, double_rounded=double_rounded)
    assert sigma == pytest.approx(exact, rel=1e-12)


def test_programming_sigma_maximum_is_at_0_8375() -> None:
    g_hat = np.linspace(0.0, 1.0, 100_001)
    sigma = D.programming_sigma_us(g_hat * G_MAX)
    assert g_hat[np.argmax(sigma)] == pytest.approx(0.8375, abs=1e-4)
    assert_printed(sigma.max(), 1.0864, 4, double_rounded=True)


@pytest.mark.parametrize("g_max_us", [12.5, 25.0, 30.0, 50.0])
def test_programming_sigma_scales_with_g_max(g_max_us: float) -> None:
    device = D.replace(g_max_us=g_max_us)
    g_hat = np.array([0.0, 0.1, 0.5, 0.8375, 1.0])
    expected = np.array([row[2] for row in SIGMA_PROG]) * (g_max_us / 25.0)
    np.testing.assert_allclose(device.programming_sigma_us(g_hat * g_max_us), expected, rtol=1e-12)


def test_programming_sigma_reference_g_max_rescales() -> None:
    device = D.replace(programming={"g_max_reference_us": 50.0})
    assert device.programming_sigma_us(12.5) == pytest.approx(0.952705 / 2, rel=1e-12)


def test_programming_sigma_clips_g_hat_to_unit_interval() -> None:
    assert D.programming_sigma_us(30.0) == D.programming_sigma_us(G_MAX)
    assert D.programming_sigma_us(-1.0) == D.programming_sigma_us(0.0)


@pytest.mark.parametrize(("g_hat", "printed", "exact"), MU_NU)
def test_drift_mu_matches_reference_table(g_hat: float, printed: float, exact: float) -> None:
    mu = D.drift_mu(g_hat * G_MAX)
    assert_printed(mu, printed, 4)
    assert mu == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize(("g_hat", "printed", "exact", "double_rounded"), SIGMA_NU)
def test_drift_sigma_matches_reference_table(g_hat: float, printed: float, exact: float, double_rounded: bool) -> None:
    sigma = D.drift_sigma(g_hat * G_MAX)
    assert_printed(sigma, printed, 4, double_rounded=double_rounded)
    assert sigma == pytest.approx(exact, rel=1e-12)


def test_drift_mu_and_sigma_floor_g_hat_and_clip() -> None:
    g = np.array([0.0, 1e-12, -3.0, 1e6])
    np.testing.assert_array_equal(D.drift_mu(g), [0.1, 0.1, 0.1, 0.049])
    np.testing.assert_array_equal(D.drift_sigma(g), [0.045, 0.045, 0.045, 0.008])


@pytest.mark.parametrize(("g_hat", "printed", "exact"), Q_S)
def test_read_noise_q_matches_reference_table(g_hat: float, printed: float, exact: float) -> None:
    q = D.read_noise_q(g_hat * G_MAX)
    assert_printed(q, printed, 5)
    assert q == pytest.approx(exact, rel=1e-12)


def test_read_noise_q_cap_floor_and_sign() -> None:
    assert D.read_noise_q(0.0) == 0.2
    assert D.read_noise_q(1e-4 * G_MAX) == 0.2  # ĝ^0.65 floored at 1e-3 -> 8.8, capped at 0.2
    assert D.read_noise_q(-12.5) == D.read_noise_q(12.5)  # uses |g_prog|
    unfloored = D.replace(read_noise={"q_max": 100.0})
    assert unfloored.read_noise_q(1e-6 * G_MAX) == pytest.approx(8.8, rel=1e-12)


@pytest.mark.parametrize(("t_inference_s", "printed", "exact"), BANDWIDTH)
def test_read_noise_bandwidth_factor_matches_reference_table(
    t_inference_s: float, printed: float, exact: float
) -> None:
    factor = D.read_noise_bandwidth_factor(t_inference_s)
    assert_printed(factor, printed, 3)
    assert factor == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize(("t_inference_s", "printed", "exact"), DRIFT_FACTOR_NU_0049)
def test_drift_factor_matches_reference_table(t_inference_s: float, printed: float, exact: float) -> None:
    factor = D.drift(1.0, 0.049, t_inference_s)
    assert_printed(factor, printed, 3)
    assert factor == pytest.approx(exact, rel=1e-12)


def test_drift_is_identity_at_t_zero() -> None:
    rng = np.random.default_rng(11)
    g_prog = D.program(rng.uniform(0.0, G_MAX, (64, 32)), rng)
    nu = D.drift_exponents(g_prog, rng)
    np.testing.assert_array_equal(D.drift(g_prog, nu, 0.0), g_prog)
    np.testing.assert_array_equal(D.drift(g_prog, nu, 0), g_prog)
    assert D.drift(3.5, 0.1, 0.0) == 3.5


def test_nu_is_drawn_once_and_reused_at_every_time() -> None:
    rng = np.random.default_rng(12)
    g_target = rng.uniform(5.0, G_MAX, 10_000)  # µS, so that no g_prog is clamped to 0
    g_prog = D.program(g_target, rng)
    nu = D.drift_exponents(g_target, rng)
    nu_copy = nu.copy()
    for t in (1.0, HOUR, DAY, YEAR):
        g_t = D.drift(g_prog, nu, t)
        recovered = -np.log(g_t / g_prog) / math.log((t + 20.0) / 20.0)
        np.testing.assert_allclose(recovered, nu, rtol=1e-9)
        np.testing.assert_array_equal(D.drift(g_prog, nu, t), g_t)  # deterministic
    np.testing.assert_array_equal(nu, nu_copy)  # not modified in place
    # Drawing again gives other exponents: reuse is the caller's job, and drift() takes no rng at all.
    assert not np.array_equal(D.drift_exponents(g_target, rng), nu)


def test_drift_scale_multiplies_nu() -> None:
    g_target = np.linspace(0.0, G_MAX, 1000)
    nu = D.drift_exponents(g_target, np.random.default_rng(13))
    half = D.replace(drift={"drift_scale": 0.5}).drift_exponents(g_target, np.random.default_rng(13))
    np.testing.assert_allclose(half, 0.5 * nu, rtol=1e-15)
    zero = D.replace(drift={"drift_scale": 0.0}).drift_exponents(g_target, np.random.default_rng(13))
    np.testing.assert_array_equal(zero, 0.0)


# ------------------------------------------------------------------------------------------------
# Statistical checks
# ------------------------------------------------------------------------------------------------


def _within(estimate: float, expected: float, standard_error: float) -> bool:
    return abs(st.Estimate(float(estimate), float(standard_error)).z(expected)) < N_SE


def _programming_errors(g_hat: float, seed: int) -> tuple[np.ndarray, float]:
    g_target = np.full(N, g_hat * G_MAX)
    err = D.program(g_target, np.random.default_rng(seed)) - g_target
    return err, float(D.programming_sigma_us(g_hat * G_MAX))


PROG_LEVELS = [(0.3, 101), (0.5, 102), (0.8, 103), (1.0, 104)]  # (ĝ_T, seed), far from the clamp at 0


@pytest.mark.parametrize(("g_hat", "seed"), PROG_LEVELS)
def test_programming_error_mean_is_zero(g_hat: float, seed: int) -> None:
    err, sigma = _programming_errors(g_hat, seed)
    se = sigma / math.sqrt(N)
    assert _within(err.mean(), 0.0, se)
    # The check would catch a 5 % gain error: g_prog compared with 1.05 g_T.
    assert not _within(err.mean(), 0.05 * g_hat * G_MAX, se)


@pytest.mark.parametrize(("g_hat", "seed"), PROG_LEVELS)
def test_programming_error_std_matches_polynomial(g_hat: float, seed: int) -> None:
    err, sigma = _programming_errors(g_hat, seed)
    se = sigma / math.sqrt(2 * N)  # standard error of the sample std of a normal
    assert _within(err.std(ddof=1), sigma, se)
    # 5 %-perturbed coefficients (all three) must fail the same check.
    perturbed = D.replace(programming={"coefficients_us": [1.05 * c for c in D.programming.coefficients_us]})
    sigma_perturbed = float(perturbed.programming_sigma_us(g_hat * G_MAX))
    assert not _within(err.std(ddof=1), sigma_perturbed, sigma_perturbed / math.sqrt(2 * N))
    # Gaussian shape: KS against N(0, sigma).
    assert stats.kstest(err, stats.norm(scale=sigma).cdf).pvalue > 1e-3


@pytest.mark.parametrize("index", [0, 1, 2])
def test_programming_std_check_detects_each_coefficient_perturbed_by_5_percent(index: int) -> None:
    err, sigma = _programming_errors(1.0, 104)
    coefficients = list(D.programming.coefficients_us)
    coefficients[index] *= 1.05
    perturbed = D.replace(programming={"coefficients_us": coefficients})
    sigma_perturbed = float(perturbed.programming_sigma_us(G_MAX))
    assert not _within(err.std(ddof=1), sigma_perturbed, sigma_perturbed / math.sqrt(2 * N))


def test_programming_zero_target_follows_published_formula_with_clamp() -> None:
    err, sigma = _programming_errors(0.0, 105)  # g_T = 0, so err = g_prog = max(sigma xi, 0)
    assert err.min() == 0.0
    # P(g_prog = 0) = 1/2
    assert _within(np.mean(err == 0.0), 0.5, math.sqrt(0.25 / N))
    # E[max(sigma xi, 0)] = sigma / sqrt(2 pi); Var = sigma^2 (1/2 - 1/(2 pi))
    mean, se = sigma / math.sqrt(2 * math.pi), sigma * math.sqrt(0.5 - 0.5 / math.pi) / math.sqrt(N)
    assert _within(err.mean(), mean, se)
    assert not _within(err.mean(), 1.05 * mean, 1.05 * se)


NU_LEVELS = [(1.0, 201), (0.3, 202), (0.1, 203), (0.05, 204), (0.01, 205)]


def _nu_samples(g_hat: float, seed: int, device: PCMDevice = D) -> np.ndarray:
    return device.drift_exponents(np.full(N, g_hat * G_MAX), np.random.default_rng(seed))


def _folded_normal(mu: float, sigma: float) -> stats.rv_continuous:
    return stats.foldnorm(c=mu / sigma, scale=sigma)


def _nu_checks(nu: np.ndarray, mu: float, sigma: float) -> tuple[bool, bool, bool]:
    dist = _folded_normal(mu, sigma)
    mean, var, _, kurtosis = (float(m) for m in dist.stats(moments="mvsk"))
    se_mean = math.sqrt(var / nu.size)
    se_std = math.sqrt(var) * math.sqrt((kurtosis + 2.0) / nu.size) / 2.0  # delta method
    return (
        stats.kstest(nu, dist.cdf).pvalue > 1e-3,
        _within(nu.mean(), mean, se_mean),
        _within(nu.std(ddof=1), math.sqrt(var), se_std),
    )


@pytest.mark.parametrize(("g_hat", "seed"), NU_LEVELS)
def test_nu_is_folded_normal(g_hat: float, seed: int) -> None:
    nu = _nu_samples(g_hat, seed)
    mu, sigma = float(D.drift_mu(g_hat * G_MAX)), float(D.drift_sigma(g_hat * G_MAX))
    assert nu.min() >= 0.0
    assert _nu_checks(nu, mu, sigma) == (True, True, True)
    # 5 %-perturbed mean or std of the normal: the KS test and the matching moment check must fail.
    ks_mu, mean_ok, _ = _nu_checks(nu, 1.05 * mu, sigma)
    assert not ks_mu and not mean_ok
    ks_sigma, _, std_ok = _nu_checks(nu, mu, 1.05 * sigma)
    assert not ks_sigma and not std_ok


def test_nu_statistics_detect_5_percent_drift_scale() -> None:
    nu = _nu_samples(0.1, 206, D.replace(drift={"drift_scale": 1.05}))
    mu, sigma = float(D.drift_mu(0.1 * G_MAX)), float(D.drift_sigma(0.1 * G_MAX))
    assert _nu_checks(nu, mu, sigma) == (False, False, False)
    assert _nu_checks(nu, 1.05 * mu, 1.05 * sigma) == (True, True, True)


READ_LEVELS = [0.1, 0.5, 1.0]
READ_TIMES = [0.0, HOUR, YEAR]


def _relative_read_noise(device: PCMDevice, g_hat: float, t: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    g_prog = np.full(N, g_hat * G_MAX)
    nu = device.drift_exponents(g_prog, rng)
    g_drift = device.drift(g_prog, nu, t)
    return (device.read(g_prog, nu, t, rng) - g_drift) / g_drift


@pytest.mark.parametrize("t", READ_TIMES)
@pytest.mark.parametrize("g_hat", READ_LEVELS)
def test_relative_read_noise_std_is_q_times_bandwidth(g_hat: float, t: float) -> None:
    seed = 300 + READ_LEVELS.index(g_hat) * 10 + READ_TIMES.index(t)
    rel = _relative_read_noise(D, g_hat, t, seed)
    expected = float(D.read_noise_q(g_hat * G_MAX)) * D.read_noise_bandwidth_factor(t)
    se = expected / math.sqrt(2 * N)
    assert _within(rel.std(ddof=1), expected, se)
    assert _within(rel.mean(), 0.0, expected / math.sqrt(N))
    # 5 %-perturbed q_coefficient must fail; so must a 5 %-perturbed q_exponent where ĝ < 1.
    perturbed = D.replace(read_noise={"q_coefficient": 1.05 * D.read_noise.q_coefficient})
    expected_p = float(perturbed.read_noise_q(g_hat * G_MAX)) * D.read_noise_bandwidth_factor(t)
    assert not _within(rel.std(ddof=1), expected_p, expected_p / math.sqrt(2 * N))
    if g_hat < 1.0:
        perturbed = D.replace(read_noise={"q_exponent": 1.05 * D.read_noise.q_exponent})
        expected_p = float(perturbed.read_noise_q(g_hat * G_MAX)) * D.read_noise_bandwidth_factor(t)
        assert not _within(rel.std(ddof=1), expected_p, expected_p / math.sqrt(2 * N))


def test_read_noise_is_drawn_anew_at_each_call() -> None:
    rng = np.random.default_rng(400)
    g_prog = np.full(N, 12.5)
    nu = D.drift_exponents(g_prog, rng)
    g_drift = D.drift(g_prog, nu, HOUR)
    first = D.read(g_prog, nu, HOUR, rng) - g_drift
    second = D.read(g_prog, nu, HOUR, rng) - g_drift
    assert abs(np.corrcoef(first, second)[0, 1]) < N_SE / math.sqrt(N)
    st.assert_matches(st.correlation(first, second), 0.0, scale=1.0)  # independent reads; sees a 0.05 correlation
    st.assert_rejects(st.correlation(first, second + 0.05 * first), 0.0)  # twin: reads correlated by 0.05
    st.assert_matches(st.std(first / g_drift), float(D.read_noise_q(12.5)) * D.read_noise_bandwidth_factor(HOUR))
    for factor in (1.05, 0.95):
        st.assert_rejects(
            st.std(factor * first / g_drift), float(D.read_noise_q(12.5)) * D.read_noise_bandwidth_factor(HOUR)
        )
    expected = float(D.read_noise_q(12.5)) * D.read_noise_bandwidth_factor(HOUR) * g_drift
    np.testing.assert_allclose([first.std(), second.std()], expected.mean(), rtol=N_SE / math.sqrt(2 * N))


def test_read_is_clamped_at_zero() -> None:
    rng = np.random.default_rng(401)
    g_prog = np.full(N, 0.01)  # Q_s at the 0.2 cap: relative std 0.2 * 5.6, so many reads would be < 0
    read = D.read(g_prog, np.zeros(N), YEAR, rng)
    assert read.min() == 0.0
    assert 0.1 < np.mean(read == 0.0) < 0.3


# ------------------------------------------------------------------------------------------------
# Shapes, randomness, arguments
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(), (1,), (7,), (3, 4), (2, 3, 5)])
def test_every_method_preserves_shape_and_returns_float64(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(500)
    g = rng.uniform(0.0, G_MAX, shape) if shape else 12.5
    nu = D.drift_exponents(g, rng)
    g_prog = D.program(g, rng)
    outputs = [
        D.programming_sigma_us(g),
        g_prog,
        D.drift_mu(g),
        D.drift_sigma(g),
        nu,
        D.drift(g_prog, nu, HOUR),
        D.read_noise_q(g_prog),
        D.read(g_prog, nu, HOUR, rng),
    ]
    for out in outputs:
        assert np.shape(out) == shape
        assert np.asarray(out).dtype == np.float64
    if not shape:
        assert all(isinstance(out, np.float64) for out in outputs)


def test_integer_and_list_inputs_are_accepted() -> None:
    np.testing.assert_array_equal(D.programming_sigma_us([0, 25]), D.programming_sigma_us([0.0, 25.0]))
    assert D.drift(np.array([2, 4]), 0, DAY).tolist() == [2.0, 4.0]


def test_drift_and_read_broadcast_nu_against_g_prog() -> None:
    rng = np.random.default_rng(501)
    g_prog = np.array([[1.0, 2.0, 3.0]])
    nu = np.full((4, 3), 0.05)
    assert D.drift(g_prog, nu, DAY).shape == (4, 3)
    assert D.read(g_prog, nu, DAY, rng).shape == (4, 3)
    np.testing.assert_allclose(D.drift(g_prog, 0.05, DAY), g_prog * (86420 / 20) ** -0.05, rtol=1e-14)


def test_same_seed_same_result_and_one_normal_per_device() -> None:
    g = np.random.default_rng(502).uniform(0.0, G_MAX, (100, 10))
    for draw in (
        lambda rng: D.program(g, rng),
        lambda rng: D.drift_exponents(g, rng),
        lambda rng: D.read(g, np.full(g.shape, 0.05), DAY, rng),
    ):
        rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
        np.testing.assert_array_equal(draw(rng_a), draw(rng_b))
        rng_c = np.random.default_rng(7)
        rng_c.standard_normal(g.size)
        assert rng_a.standard_normal() == rng_c.standard_normal()


def test_global_numpy_random_state_is_not_used() -> None:
    np.random.seed(1234)  # noqa: NPY002 - checking that the legacy global state stays untouched
    expected = np.random.random(5)  # noqa: NPY002
    np.random.seed(1234)  # noqa: NPY002
    rng = np.random.default_rng(503)
    g = np.full(1000, 10.0)
    D.read(D.program(g, rng), D.drift_exponents(g, rng), HOUR, rng)
    np.testing.assert_array_equal(np.random.random(5), expected)  # noqa: NPY002


@pytest.mark.parametrize("t", [-1.0, -1e-9, float("nan"), float("inf"), [0.0, 1.0], "1h", None, True])
def test_bad_inference_time_raises_device_error(t: object) -> None:
    rng = np.random.default_rng(504)
    for call in (
        lambda: D.drift(1.0, 0.05, t),  # type: ignore[arg-type]
        lambda: D.read(1.0, 0.05, t, rng),  # type: ignore[arg-type]
        lambda: D.read_noise_bandwidth_factor(t),  # type: ignore[arg-type]
    ):
        with pytest.raises(DeviceError, match="t_inference_s") as info:
            call()
        assert ">= 0" in str(info.value)


def test_negative_time_message_names_value() -> None:
    with pytest.raises(DeviceError, match=r"t_inference_s = -5\.0 is out of range"):
        D.drift(1.0, 0.05, -5)


def test_numpy_scalar_time_is_accepted() -> None:
    for t in (np.float32(3600.0), np.int64(3600), np.array(3600)):
        assert D.drift(1.0, 0.049, t) == pytest.approx(0.7751285793650408, rel=1e-12)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# Parameter validation, serialisation, protocol
# ------------------------------------------------------------------------------------------------

BAD_PARAMETERS = [
    (PCMDevice, {"g_max_us": -25.0}, "g_max_us", "-25.0"),
    (PCMDevice, {"g_max_us": 0}, "g_max_us", "0.0"),
    (PCMDevice, {"g_max_us": float("nan")}, "g_max_us", "nan"),
    (PCMDevice, {"g_max_us": "25"}, "g_max_us", "'25'"),
    (PCMDevice, {"g_max_us": True}, "g_max_us", "True"),
    (PCMDevice, {"g_min_us": -1.0}, "g_min_us", "-1.0"),
    (PCMDevice, {"g_min_us": 25.0}, "g_min_us", "25.0"),
    (PCMDevice, {"name": ""}, "name", "''"),
    (PCMDevice, {"name": 3}, "name", "3"),
    (PCMDevice, {"citation": None}, "citation", "None"),
    (PCMDevice, {"drift": {"t0_s": 20.0}}, "drift", "t0_s"),
    (PCMDevice, {"drift": PCMDrift(t0_s=1e-7)}, "t0_s", "t_read_s"),
    (PCMProgrammingNoise, {"coefficients_us": (1.0, 2.0)}, "coefficients_us", "(1.0, 2.0)"),
    (PCMProgrammingNoise, {"coefficients_us": (1.0, "a", 2.0)}, "coefficients_us", "'a'"),
    (PCMProgrammingNoise, {"coefficients_us": (-0.1, 0.0, 0.0)}, "coefficients_us", "negative"),
    (PCMProgrammingNoise, {"coefficients_us": (0.1, -1.0, 0.5)}, "coefficients_us", "ĝ = 1"),
    (PCMProgrammingNoise, {"g_max_reference_us": 0.0}, "g_max_reference_us", "0.0"),
    (PCMDrift, {"t0_s": 0.0}, "t0_s", "0.0"),
    (PCMDrift, {"t0_s": -20}, "t0_s", "-20.0"),
    (PCMDrift, {"mu_slope": float("inf")}, "mu_slope", "inf"),
    (PCMDrift, {"mu_bounds": (0.1, 0.049)}, "mu_bounds", "lower <= upper"),
    (PCMDrift, {"mu_bounds": (-0.1, 0.1)}, "mu_bounds", "-0.1"),
    (PCMDrift, {"sigma_bounds": (0.1,)}, "sigma_bounds", "(0.1,)"),
    (PCMDrift, {"sigma_bounds": "0.1, 0.2"}, "sigma_bounds", "list of 2"),
    (PCMDrift, {"g_floor": 0.0}, "g_floor", "> 0"),
    (PCMDrift, {"g_floor": 2.0}, "g_floor", "<= 1"),
    (PCMDrift, {"drift_scale": -1.0}, "drift_scale", ">= 0"),
    (PCMReadNoise, {"q_coefficient": -0.0088}, "q_coefficient", "-0.0088"),
    (PCMReadNoise, {"q_exponent": float("nan")}, "q_exponent", "nan"),
    (PCMReadNoise, {"q_floor": 0.0}, "q_floor", "> 0"),
    (PCMReadNoise, {"q_max": -0.2}, "q_max", "-0.2"),
    (PCMReadNoise, {"t_read_s": 0.0}, "t_read_s", "(s)"),
]


@pytest.mark.parametrize(("cls", "kwargs", "field_name", "detail"), BAD_PARAMETERS)
def test_bad_parameter_raises_device_error_naming_field(
    cls: type, kwargs: dict[str, object], field_name: str, detail: str
) -> None:
    with pytest.raises(DeviceError) as info:
        cls(**kwargs)
    message = str(info.value)
    assert field_name in message
    assert detail in message
    assert "allowed" in message or "must" in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, AnacompileError)


def test_parameters_are_normalised_and_hashable() -> None:
    device = PCMDevice(g_max_us=30, programming=PCMProgrammingNoise(coefficients_us=[1, 2, -1]))  # type: ignore[arg-type]
    assert type(device.g_max_us) is float and device.g_max_us == 30.0
    assert device.programming.coefficients_us == (1.0, 2.0, -1.0)
    assert isinstance(device.programming.coefficients_us, tuple)
    assert hash(device) == hash(D.replace(g_max_us=30.0, programming={"coefficients_us": (1.0, 2.0, -1.0)}))
    with pytest.raises(AttributeError):
        device.g_max_us = 10.0  # type: ignore[misc]


def test_preset_has_published_defaults() -> None:
    assert D == PCMDevice()
    assert D.name == "pcm" and D.g_max_us == 25.0 and D.g_min_us == 0.0
    assert D.programming == PCMProgrammingNoise((0.26348, 1.9650, -1.1731), 25.0)
    assert D.drift == PCMDrift(20.0, -0.0155, 0.0244, (0.049, 0.1), -0.0125, -0.0059, (0.008, 0.045), 1e-7, 1.0)
    assert D.read_noise == PCMReadNoise(0.0088, 0.65, 1e-3, 0.2, 250e-9)
    assert "Joshi" in D.citation and "Nandakumar" in D.citation and "aihwkit" in D.citation


def test_to_dict_round_trips_through_json_and_yaml() -> None:
    device = D.replace(name="other", g_max_us=30.0, drift={"drift_scale": 0.5, "mu_bounds": [0.04, 0.2]})
    data = device.to_dict()
    assert data["drift"]["mu_bounds"] == [0.04, 0.2]
    assert PCMDevice.from_dict(data) == device
    assert PCMDevice.from_dict(json.loads(json.dumps(data))) == device
    assert PCMDevice.from_dict(yaml.safe_load(yaml.safe_dump(data))) == device


def test_from_dict_missing_keys_keep_defaults() -> None:
    device = PCMDevice.from_dict({"g_max_us": 30, "read_noise": {"q_max": 0.3}})
    assert device.g_max_us == 30.0 and device.read_noise.q_max == 0.3
    assert device.read_noise.q_coefficient == 0.0088 and device.drift == D.drift


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        ({"g_max": 30}, ["'g_max'", "g_max_us", "read_noise"]),
        ({"drift": {"t0": 20}}, ["'drift.t0'", "t0_s", "drift_scale"]),
        ({"read_noise": {"q": 1}}, ["'read_noise.q'", "q_coefficient"]),
        ({"drift": 5}, ["drift = 5", "t0_s"]),
        ({"g_max_us": "thirty"}, ["g_max_us", "'thirty'", "str"]),
        ({"drift": {"t0_s": -1}}, ["t0_s", "-1.0", "> 0"]),
    ],
)
def test_from_dict_errors_name_the_key(data: dict[str, object], fragments: list[str]) -> None:
    with pytest.raises(DeviceError) as info:
        PCMDevice.from_dict(data)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_from_dict_refuses_a_non_mapping() -> None:
    with pytest.raises(DeviceError, match="mapping"):
        PCMDevice.from_dict([("g_max_us", 30)])  # type: ignore[arg-type]


def test_replace_returns_new_validated_device() -> None:
    device = D.replace(g_max_us=30.0, drift={"drift_scale": 0.5})
    assert device.g_max_us == 30.0 and device.drift.drift_scale == 0.5 and device.drift.t0_s == 20.0
    assert D.g_max_us == 25.0 and D.drift.drift_scale == 1.0  # preset untouched
    assert D.replace(drift=PCMDrift(t0_s=10.0)).drift == PCMDrift(t0_s=10.0)
    with pytest.raises(DeviceError, match="g_max_us"):
        D.replace(g_max_us=-1.0)
    with pytest.raises(DeviceError, match="'foo'"):
        D.replace(foo=1)


def test_pcm_device_satisfies_device_protocol() -> None:
    assert isinstance(D, Device)
    assert isinstance(D.drift, PCMDrift) and D.drift.t0_s == 20.0  # parameters ...
    assert D.drift(2.0, 0.049, HOUR) == pytest.approx(2 * 0.7751285793650408, rel=1e-12)  # ... and function
