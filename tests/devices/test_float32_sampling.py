"""The PCM kernels sampled in float32 (``dtype=np.float32``) have the statistics of the published model.

The chip stage (:mod:`anacompile.programming.chip_state`) programs and reads chips in float32. Here every
sampled quantity of the float32 path is compared with the formula (not with the float64 path's draws):
programming error mean and std, the drift exponent's folded-normal mean and std, and the relative read
noise at t, each within :data:`~tests._support.stats.TOLERANCE_SE` standard errors and with the power to see
a 5 % error; every check's 5 %-perturbed twin fails. Then the layer: the weight error of a chip programmed
and read by the float32 block path has the spread of the float64 path (ratio of stds over chips), and the
block size does not change a chip.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from anacompile.crossbar.periphery import DriftCompensation
from anacompile.devices import PCM_JOSHI_2020
from anacompile.errors import DeviceError
from anacompile.mapping import decode_pairs
from anacompile.mapping.registry import get_mapping
from anacompile.programming.chip import program_chip
from anacompile.programming.chip_state import chip_rng, program_layer, read_weights
from tests._support import stats as st

D = PCM_JOSHI_2020
G_MAX = D.g_max_us
F32 = np.float32
N = 200_000
DAY = 86400.0


@pytest.mark.parametrize(("g_hat", "seed"), [(0.3, 1), (0.8375, 2), (1.0, 3)])
def test_float32_programming_error_has_the_polynomial_std_and_zero_mean(g_hat: float, seed: int) -> None:
    g_t = np.full(N, g_hat * G_MAX, F32)
    g_prog = D.program(g_t, np.random.default_rng(seed), dtype=F32)
    assert g_prog.dtype == F32
    err = g_prog.astype(np.float64) - g_t
    sigma = float(D.programming_sigma_us(g_hat * G_MAX))
    st.assert_matches(st.std(err), sigma)
    st.assert_rejects(st.std(err), 1.05 * sigma)
    st.assert_matches(st.mean(err), 0.0, scale=g_hat * G_MAX)  # a 5 % gain error would show
    st.assert_rejects(st.mean(err), 0.05 * g_hat * G_MAX)
    st.assert_ks(err, stats.norm(scale=sigma).cdf)
    st.assert_ks_rejects(err, stats.norm(scale=1.05 * sigma).cdf)


def test_float32_programming_of_zero_targets_is_the_clamped_normal() -> None:
    g_prog = D.program(np.zeros(N, F32), np.random.default_rng(4), dtype=F32)
    sigma = float(D.programming_sigma_us(0.0))
    assert g_prog.min() == 0.0
    expected = sigma / math.sqrt(2 * math.pi)  # E[max(sigma xi, 0)]
    st.assert_matches(st.mean(g_prog), expected)
    st.assert_rejects(st.mean(g_prog), 1.05 * expected)


@pytest.mark.parametrize(("g_hat", "seed"), [(1.0, 11), (0.1, 12), (0.01, 13), (0.0, 14)])
def test_float32_drift_exponents_are_the_folded_normal(g_hat: float, seed: int) -> None:
    nu = D.drift_exponents(np.full(N, g_hat * G_MAX, F32), np.random.default_rng(seed), dtype=F32)
    assert nu.dtype == F32 and nu.min() >= 0.0
    mu, sigma = float(D.drift_mu(g_hat * G_MAX)), float(D.drift_sigma(g_hat * G_MAX))
    dist = stats.foldnorm(c=mu / sigma, scale=sigma)
    mean, var = (float(m) for m in dist.stats(moments="mv"))
    st.assert_matches(st.mean(nu), mean)
    st.assert_rejects(st.mean(nu), 1.05 * mean)
    st.assert_matches(st.std(nu), math.sqrt(var))
    st.assert_rejects(st.std(nu), 1.05 * math.sqrt(var))
    st.assert_ks(nu, dist.cdf)
    st.assert_ks_rejects(nu, stats.foldnorm(c=1.05 * mu / sigma, scale=sigma).cdf)


@pytest.mark.parametrize("t", [0.0, DAY, 365 * DAY])
@pytest.mark.parametrize("g_hat", [0.1, 0.6, 1.0])
def test_float32_read_has_the_drift_mean_and_the_1_over_f_std(g_hat: float, t: float) -> None:
    rng = np.random.default_rng(100 + int(10 * g_hat) + int(t) % 97)
    g_prog = np.full(N, g_hat * G_MAX, F32)
    nu = D.drift_exponents(g_prog, rng, dtype=F32)
    g_t = D.read(g_prog, nu, t, rng, dtype=F32)
    assert g_t.dtype == F32
    g_drift = D.drift(g_prog.astype(np.float64), nu.astype(np.float64), t)  # float64 formula, same nu
    rel = (g_t.astype(np.float64) - g_drift) / g_drift
    expected = float(D.read_noise_q(g_hat * G_MAX)) * D.read_noise_bandwidth_factor(t)
    st.assert_matches(st.std(rel), expected)
    st.assert_rejects(st.std(rel), 1.05 * expected)
    st.assert_matches(st.mean(rel), 0.0, scale=1.0)  # a 5 % error of the drift factor would show
    # the mean read follows the drift law: a 5 % faster drift (nu * 1.05) is rejected
    faster = D.drift(g_prog.astype(np.float64), 1.05 * nu.astype(np.float64), t)
    if t > 0:
        st.assert_rejects(st.mean((g_t - faster) / faster), 0.0)


def test_other_dtypes_are_refused() -> None:
    with pytest.raises(DeviceError, match="float64 or float32"):
        D.program(np.ones(3), np.random.default_rng(0), dtype=np.float16)


# -- the layer: the chip stage's float32 block path against the float64 path ------------------------------

SINGLE = get_mapping("single")
GAIN = SINGLE.gain_us(D.g_min_us, D.g_max_us)


def _targets(seed: int = 0) -> np.ndarray:
    u = np.random.default_rng(seed).uniform(-1, 1, (2, 64, 32))  # (n_tiles, rows, N)
    return SINGLE.encode(u, D.g_min_us, D.g_max_us).astype(F32)


def test_the_block_size_does_not_change_a_chip() -> None:
    g_t = _targets()
    big = program_layer(g_t, SINGLE.significance, GAIN, D, 7, 3, 1, DriftCompensation.COLUMN)
    small = program_layer(g_t, SINGLE.significance, GAIN, D, 7, 3, 1, DriftCompensation.COLUMN, block=7)
    for a, b in zip(big, small, strict=True):
        np.testing.assert_array_equal(a, b)
    assert big[0].dtype == F32 and big[1].dtype == F32
    rng = lambda: chip_rng(7, 3, "read", 1, DAY)  # noqa: E731
    w_big = read_weights(big[0], big[1], DAY, D, SINGLE.significance, GAIN, rng())
    w_small = read_weights(big[0], big[1], DAY, D, SINGLE.significance, GAIN, rng(), block=5)
    np.testing.assert_array_equal(w_big, w_small)
    assert w_big.shape == (2, 64, 32) and w_big.dtype == F32


def test_float32_layer_weight_error_has_the_spread_of_the_float64_path() -> None:
    """Per weight, the std over chips of u(1 d) - u_target: float32 block path vs float64 program_chip."""
    g_t = _targets(1)
    u_t = decode_pairs(g_t, SINGLE.significance, GAIN)
    chips = 60
    f32, f64 = [], []
    for chip in range(chips):
        g_prog, nu, _ = program_layer(g_t, SINGLE.significance, GAIN, D, 5, chip, 0, DriftCompensation.NONE)
        f32.append(read_weights(g_prog, nu, DAY, D, SINGLE.significance, GAIN, chip_rng(5, chip, "read", 0, DAY)))
        rng = np.random.default_rng([99, chip])
        gp64, nu64 = program_chip(g_t.astype(np.float64), SINGLE.significance, GAIN, D, rng)
        f64.append(decode_pairs(D.read(gp64, nu64, DAY, rng), SINGLE.significance, GAIN))
    e32, e64 = np.asarray(f32) - u_t, np.asarray(f64) - u_t
    ratio = st.std_ratio(e32, e64, axis=0)
    st.assert_matches(ratio, 1.0)
    st.assert_rejects(st.std_ratio(e32 * 1.05, e64, axis=0), 1.0)
    # and the same mean error (the drift): mean z^2 of the per-weight mean differences near its expectation
    z = st.mean_z(e32, e64, axis=0)
    st.assert_matches(z, st.expected_mean_z2(chips, chips), detect=None)  # power: the twin below
    st.assert_rejects(st.mean_z(e32 * 1.05, e64, axis=0), st.expected_mean_z2(chips, chips))


def test_a_table_device_chip_is_float32_and_independent_of_the_block_size() -> None:
    """The RRAM table device interpolates in float64 and hands float32 to the chip stage."""
    from anacompile.devices import RRAM_WAN_2022 as rram

    gain = SINGLE.gain_us(rram.g_min_us, rram.g_max_us)
    u = np.random.default_rng(3).uniform(-1, 1, (16, 8))
    g_t = SINGLE.encode(u, rram.g_min_us, rram.g_max_us).astype(F32)
    big = program_layer(g_t, SINGLE.significance, gain, rram, 1, 2, 0, DriftCompensation.GLOBAL)
    small = program_layer(g_t, SINGLE.significance, gain, rram, 1, 2, 0, DriftCompensation.GLOBAL, block=5)
    for a, b in zip(big, small, strict=True):
        np.testing.assert_array_equal(a, b)
    assert big[0].dtype == F32 and big[1].dtype == F32
    w = read_weights(big[0], big[1], DAY, rram, SINGLE.significance, gain, chip_rng(1, 2, "read", 0, DAY))
    assert w.dtype == F32 and w.shape == u.shape and np.isfinite(w).all()
