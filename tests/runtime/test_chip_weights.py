"""The in-graph chip stage (AnalogChipWeights) against the numpy device kernels."""

from __future__ import annotations

import numpy as np
import pytest

from anacompile import devices
from anacompile.crossbar.periphery import DriftCompensation
from anacompile.mapping import SinglePairMapping
from anacompile.runtime.chip_state import compensation_factors, compensation_reference, read_weights
from anacompile.runtime.functions import chip_weights_attributes
from tests._support import stats as st
from tests._support.graphs import chip_session

PCM = devices.get("pcm")
MAP = SinglePairMapping()
GAIN = MAP.gain_us(PCM.g_min_us, PCM.g_max_us)


def _state(rng, shape=(1, 2, 1, 200, 5)):
    u = rng.uniform(-1, 1, shape[2:])
    g_t = MAP.encode(u, PCM.g_min_us, PCM.g_max_us)
    g_prog = PCM.program(g_t, rng)
    nu = PCM.drift_exponents(g_t, rng)
    return g_prog.astype(np.float32), nu.astype(np.float32)


@pytest.mark.parametrize("t", [0.0, 3600.0, 365 * 86400.0])
def test_in_graph_drift_and_read_noise_match_numpy_statistics(t):
    rng = np.random.default_rng(11)
    g_prog, nu = _state(rng)
    sess = chip_session(DriftCompensation.NONE, chip_weights_attributes(PCM, MAP.significance, GAIN, seed=3))
    feeds = {
        "g_prog": g_prog,
        "nu": nu,
        "t_inference": np.array(t, np.float32),
        "gdc_ref": np.array(1, np.float32),
        "out_scale": np.ones((1, 1, 5), np.float32),
    }
    draws = 300
    w_ort = np.stack([sess.run(["W"], feeds)[0] for _ in range(draws)])
    w_np = np.stack(
        [
            read_weights(g_prog.astype(np.float64), nu.astype(np.float64), t, PCM, MAP.significance, GAIN, rng)
            for _ in range(draws)
        ]
    )
    # the deterministic part (drift) is the same, element by element
    sd = np.maximum(w_np.std(0), 1e-6)
    z = (w_ort.mean(0) - w_np.mean(0)) / (sd * np.sqrt(2 / draws))
    assert np.mean(np.abs(z) < 4) > 0.99
    means = st.mean_z(w_ort, w_np)
    st.assert_matches(means, st.expected_mean_z2(draws, draws), detect=None)  # power: the twin below
    # the 1/f read noise: std over reads of the graph's weights / numpy's, element by element
    ratio = st.std_ratio(w_ort, w_np, floor=1e-6)
    st.assert_matches(ratio, 1.0)
    # twins: 5 % more or less read noise, or a 5 % drift error, in the graph must fail these checks
    centred = w_ort - w_ort.mean(0)
    for factor in (1.05, 0.95):
        st.assert_rejects(st.std_ratio(w_ort.mean(0) + factor * centred, w_np, floor=1e-6), 1.0)
    st.assert_rejects(st.mean_z(1.05 * w_ort, w_np), st.expected_mean_z2(draws, draws))


def test_global_compensation_restores_t0_outputs_exactly_with_equal_drift():
    """Drift only, equal nu everywhere: alpha(t) W(t) == W(t0) (reference/papers.md, crossbar checks)."""
    pcm = PCM.replace(read_noise={"q_coefficient": 0.0})
    rng = np.random.default_rng(2)
    g_prog, _ = _state(rng)
    nu = np.full_like(g_prog, 0.06)
    w0 = read_weights(g_prog, nu, 0.0, pcm, MAP.significance, GAIN, rng)
    ref = compensation_reference(w0, DriftCompensation.GLOBAL)
    for t in (1.0, 3600.0, 86400.0, 365 * 86400.0):
        wt = read_weights(g_prog, nu, t, pcm, MAP.significance, GAIN, rng)
        assert np.abs(wt).sum() < np.abs(w0).sum() * (0.999 if t > 1 else 1.0)
        alpha = compensation_factors(wt, ref, DriftCompensation.GLOBAL)
        np.testing.assert_allclose(alpha * wt, w0, rtol=1e-5, atol=1e-7)
    # the same inside the graph
    sess = chip_session(DriftCompensation.GLOBAL, chip_weights_attributes(pcm, MAP.significance, GAIN, seed=1))
    w_g, a_g = sess.run(
        None,
        {
            "g_prog": g_prog,
            "nu": nu.astype(np.float32),
            "t_inference": np.array(86400.0, np.float32),
            "gdc_ref": ref,
            "out_scale": np.ones((1, 1, 5), np.float32),
        },
    )
    np.testing.assert_allclose(a_g * w_g, w0, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("mode", list(DriftCompensation))
def test_compensation_factors_in_graph_equal_numpy(mode):
    pcm = PCM.replace(read_noise={"q_coefficient": 0.0})
    rng = np.random.default_rng(3)
    g_prog, nu = _state(rng, (1, 2, 2, 50, 4))
    w0 = read_weights(g_prog, nu, 0.0, pcm, MAP.significance, GAIN, rng)
    ref = compensation_reference(w0, mode)
    wt = read_weights(g_prog, nu, 1e5, pcm, MAP.significance, GAIN, rng)
    sess = chip_session(mode, chip_weights_attributes(pcm, MAP.significance, GAIN, seed=1))
    _, a_g = sess.run(
        None,
        {
            "g_prog": g_prog,
            "nu": nu,
            "t_inference": np.array(1e5, np.float32),
            "gdc_ref": np.asarray(ref, np.float32),
            "out_scale": np.full((2, 1, 4), 2.0, np.float32),
        },
    )
    np.testing.assert_allclose(a_g, 2.0 * compensation_factors(wt, ref, mode), rtol=1e-4)  # scale = out_scale alpha
    assert a_g.shape == (2, 1, 4)
