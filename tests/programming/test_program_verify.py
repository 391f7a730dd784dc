"""Tests of closed-loop program-and-verify (anacompile/programming/program_verify.py) and program_chip."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from anacompile import devices
from anacompile.errors import ConfigError
from anacompile.mapping import decode_pairs, get_mapping
from anacompile.programming import (
    PROGRAMMING_METHODS,
    ProgramVerifyParams,
    p_fail_curve,
    program_and_verify,
    program_chip,
    reference_weight_sets,
)

PCM = devices.get("pcm")


@pytest.fixture(scope="module")
def weight_sets() -> dict[str, list[np.ndarray]]:
    """normal, uniform (128 x 128) and the digits MLP (or its clipped-Laplace stand-in), column-normalised."""
    return reference_weight_sets(np.random.default_rng(11), shape=(128, 128))


def test_three_reference_distributions(weight_sets) -> None:
    assert list(weight_sets)[:2] == ["normal", "uniform"] and len(weight_sets) == 3
    for mats in weight_sets.values():
        for u in mats:
            np.testing.assert_allclose(np.abs(u).max(axis=0), 1.0)  # per-column normalised


@pytest.mark.parametrize("which", [0, 1, 2])
def test_default_settings_reach_p_fail_at_most_2_percent(weight_sets, which: int) -> None:
    name = list(weight_sets)[which]
    u = np.concatenate([m.ravel() for m in weight_sets[name]])
    res = program_and_verify(u, get_mapping("dual"), PCM, np.random.default_rng(100 + which))
    assert res.budget == ProgramVerifyParams().budget
    assert res.p_fail <= 0.02, f"{name}: P_fail = {res.p_fail:.2%}"
    assert res.mean_pulses < res.budget  # masking: converged weights stop receiving pulses


def test_p_fail_falls_with_the_pulse_budget_and_a_tiny_budget_fails(weight_sets) -> None:
    curve = p_fail_curve(
        weight_sets["uniform"], get_mapping("dual"), PCM, np.random.default_rng(5), budgets=(3, 6, 12, 24)
    )
    p = [pt.p_fail for pt in curve]
    assert p[0] > 0.2  # 3 pulses are far too few: the 2 % check can fail
    assert p[0] > p[1] > p[2] >= p[3] - 0.002
    assert p[3] <= 0.02
    assert all(a.time_s <= b.time_s for a, b in zip(curve, curve[1:], strict=False))  # more pulses, more time
    assert all(pt.mean_pulses <= pt.budget for pt in curve)


def test_ideal_devices_converge_within_the_verify_margin() -> None:
    ideal = replace(
        ProgramVerifyParams(),
        step_gain_sigma=0.0,
        nonlinearity_sigma=0.0,
        c2c_sigma_rel=0.0,
        c2c_sigma_us=0.0,
        verify_read_sigma_rel=0.0,
        verify_read_floor_us=0.0,
    )
    u = np.random.default_rng(0).uniform(-1, 1, size=(64, 64))
    res = program_and_verify(u, get_mapping("dual"), PCM, np.random.default_rng(1), ideal)
    assert res.converged.all() and res.p_fail == 0.0
    assert np.abs(res.u_prog - res.u_target).max() <= ideal.verify_fraction * ideal.tol + 1e-12
    np.testing.assert_allclose(res.u_target, u, atol=1e-12)


@pytest.mark.parametrize("spec", ["single", "dual:F=3"])
def test_other_strategies_program_too(spec: str) -> None:
    u = np.random.default_rng(2).standard_normal((64, 64))
    u /= np.abs(u).max(axis=0)
    res = program_and_verify(u, get_mapping(spec), PCM, np.random.default_rng(3))
    assert res.g_prog_us.shape == (len(get_mapping(spec).significance), 2, 64, 64)
    assert res.p_fail <= 0.03


def test_program_chip_verify_returns_simulated_state() -> None:
    assert "verify" in PROGRAMMING_METHODS
    m = get_mapping("dual")
    u = np.random.default_rng(4).uniform(-1, 1, size=(32, 48))
    g_t = m.encode(u, PCM.g_min_us, PCM.g_max_us)
    gain = m.gain_us(PCM.g_min_us, PCM.g_max_us)
    g_prog, nu = program_chip(g_t, m.significance, gain, PCM, np.random.default_rng(5), method="verify")
    assert g_prog.shape == g_t.shape == nu.shape
    assert g_prog.min() >= 0.0 and np.all(nu >= 0.0)
    err = decode_pairs(g_prog, m.significance, gain) - u
    assert np.mean(np.abs(err) > ProgramVerifyParams().tol) <= 0.02
    # the Gaussian residual model of the same device is much wider than the verify tolerance
    g_gauss, _ = program_chip(g_t, m.significance, gain, PCM, np.random.default_rng(5), method="gaussian")
    assert np.std(decode_pairs(g_gauss, m.significance, gain) - u) > np.std(err)
    with pytest.raises(ConfigError):
        program_chip(g_t, m.significance, gain, PCM, np.random.default_rng(5), method="magic")


def test_same_seed_same_chip() -> None:
    u = np.random.default_rng(6).uniform(-1, 1, size=(16, 16))
    a = program_and_verify(u, get_mapping("dual"), PCM, np.random.default_rng(7))
    b = program_and_verify(u, get_mapping("dual"), PCM, np.random.default_rng(7))
    np.testing.assert_array_equal(a.g_prog_us, b.g_prog_us)


@pytest.mark.parametrize(
    "field,value",
    [
        ("budget", 0),
        ("eta", -0.1),
        ("tol", 0.0),
        ("msp_fraction", 1.5),
        ("reset_above_ratio", 2.0),
        ("c2c_sigma_rel", float("nan")),
    ],
)
def test_invalid_params_raise_config_error(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        ProgramVerifyParams(**{field: value})
