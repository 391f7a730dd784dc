"""The ONNX function bodies against the numpy reference, on the ORT graph itself."""

from __future__ import annotations

import numpy as np
import pytest

from anacompile.crossbar.periphery import PERIPHERY_PRESETS, Periphery
from anacompile.crossbar.reference import analog_matmul_reference
from tests._support import stats as st
from tests._support.graphs import layer_inputs, matmul_session, run_layer

STANDARD = PERIPHERY_PRESETS["standard"]
NOISE_OFF = STANDARD.replace(read_noise=0.0, out_noise=0.0)


def _reference(inputs, periphery, noise=None):
    return analog_matmul_reference(
        inputs["X"],
        inputs["W"],
        inputs["col_scale"],
        inputs["in_range"],
        inputs["alpha"],
        inputs["bias"],
        periphery,
        noise,
    )


@pytest.mark.parametrize(
    ("k", "n", "tile_rows"),
    [(64, 32, 512), (512, 16, 512), (513, 8, 512), (1024, 12, 512), (100, 10, 32), (1, 3, 512)],
)
@pytest.mark.parametrize("input_range", ["static", "absmax"])
def test_ort_equals_numpy_with_noise_off(k, n, tile_rows, input_range):
    """DAC, tiles (one, exact multiples, partial), IR drop, ADC, scales: ORT == numpy, code for code."""
    p = NOISE_OFF.replace(tile_rows=tile_rows, input_range=input_range)
    inputs = layer_inputs(np.random.default_rng(k + n), 64, k, n, tile_rows, p.tile_rows)
    y_ort = run_layer(p, inputs)
    y_ref = _reference(inputs, p)
    # Same float32 ops in the same order; MLAS and numpy may sum a dot product in another order, which can
    # move a value sitting exactly on an ADC rounding boundary by one LSB. Allow that for <0.5% of outputs.
    lsb = p.adc_step * np.max(inputs["in_range"]) * np.max(inputs["col_scale"] * inputs["alpha"]) * (k // tile_rows + 1)
    diff = np.abs(y_ort - y_ref)
    assert np.mean(diff > 1e-5 * (1 + np.abs(y_ref))) <= 0.005
    assert diff.max() <= lsb * 1.01


def test_ort_equals_numpy_exactly_with_ideal_periphery():
    p = PERIPHERY_PRESETS["ideal"].replace(tile_rows=128)
    inputs = layer_inputs(np.random.default_rng(0), 32, 300, 20, 128, 128)
    y_ort = run_layer(p, inputs)
    np.testing.assert_allclose(y_ort, _reference(inputs, p), rtol=1e-5, atol=1e-5)
    # and it is the plain matmul of the decoded weights
    w = (inputs["W"] * inputs["col_scale"] * inputs["alpha"]).reshape(-1, 20)[:300]
    np.testing.assert_allclose(y_ort, inputs["X"] @ w + inputs["bias"], rtol=1e-4, atol=1e-4)


def _single_column(p: Periphery, x: np.ndarray, w: np.ndarray, bank: np.ndarray | None = None):
    """One tile, one output column, unit scales: y is the raw ADC output."""
    k = w.shape[0]
    inputs = {
        "X": x.astype(np.float32),
        "W": w.reshape(1, k, 1).astype(np.float32),
        "col_scale": np.ones((1, 1, 1), np.float32),
        "in_range": np.ones((1, 1, 1), np.float32),
        "alpha": np.ones((1, 1, 1), np.float32),
        "bias": np.zeros(1, np.float32),
        "noise_bank": (bank if bank is not None else np.zeros(16, np.float32)).astype(np.float32),
        "ir_row_weight": np.ones((k, 1), np.float32),
    }
    return run_layer(p, inputs)[:, 0]


def test_standard_dac_step_is_2_over_254():
    p = NOISE_OFF.replace(ir_drop=0.0, adc_bits=None, adc_bound=None)
    x = np.linspace(-1.2, 1.2, 4001).reshape(-1, 1)
    y = _single_column(p, x, np.ones(1))
    levels = np.unique(np.round(y, 7))
    assert len(levels) == 255  # 254 steps over [-1, 1]
    np.testing.assert_allclose(np.diff(levels), 2 / 254, atol=2e-7)
    assert y.min() == pytest.approx(-1.0) and y.max() == pytest.approx(1.0)


def test_standard_adc_step_is_20_over_254_and_clips_at_10():
    p = NOISE_OFF.replace(ir_drop=0.0, dac_bits=None)
    x = np.linspace(-0.9, 0.9, 20001).reshape(-1, 1)
    y = _single_column(p, x * 14.0, np.ones(1))  # z in [-12.6, 12.6]
    levels = np.unique(np.round(y, 6))
    steps = np.diff(levels)
    np.testing.assert_allclose(steps, 20 / 254, atol=2e-6)
    assert y.max() == pytest.approx(10.0, abs=1e-6) and y.min() == pytest.approx(-10.0, abs=1e-6)
    assert np.sum(np.isclose(y, 10.0)) > 1000  # saturation, not wrap-around


def test_standard_output_noise_std_is_0_04():
    p = STANDARD.replace(read_noise=0.0, ir_drop=0.0, adc_bits=None, adc_bound=None, dac_bits=None)
    rng = np.random.default_rng(3)
    bank = rng.standard_normal(1 << 20).astype(np.float32)
    x = np.zeros((200_000, 4))
    y = _single_column(p, x, np.full(4, 0.5), bank)
    se = 0.04 / np.sqrt(2 * y.size)
    assert abs(y.std() - 0.04) < 5 * se
    assert abs(y.mean()) < 5 * 0.04 / np.sqrt(y.size)
    assert abs(y.std() - 0.04 * 1.05) > 5 * se  # a 5 % wrong sigma would be caught
    st.assert_matches(st.std(y), 0.04)
    st.assert_matches(st.mean(y), 0.0, scale=0.04)  # a 5 % offset of sigma would be caught
    for factor in (1.05, 0.95):  # twins: 5 % more or less output noise in the graph
        st.assert_rejects(st.std(factor * y), 0.04)


def test_standard_short_term_read_noise_matches_formula():
    """y = z + sqrt(sigma_w^2 sum|w|x^2 + sigma_out^2) xi with sigma_w = 0.0175."""
    p = STANDARD.replace(ir_drop=0.0, adc_bits=None, adc_bound=None, dac_bits=None)
    rng = np.random.default_rng(4)
    k = 256
    w = rng.uniform(-1, 1, k)
    x = np.tile(rng.uniform(-1, 1, k), (100_000, 1))
    bank = rng.standard_normal(1 << 20).astype(np.float32)
    y = _single_column(p, x, w, bank)
    expected = np.sqrt(0.0175**2 * np.sum(np.abs(w) * x[0] ** 2) + 0.04**2)
    se = expected / np.sqrt(2 * y.size)
    assert abs(y.std() - expected) < 5 * se
    assert abs(y.mean() - float(x[0] @ w)) < 5 * expected / np.sqrt(y.size)
    assert abs(y.std() - expected * 1.05) > 5 * se
    st.assert_matches(st.std(y), expected)
    st.assert_matches(st.mean(y), float(x[0] @ w))
    z = float(x[0] @ w)
    for factor in (1.05, 0.95):  # twins: 5 % more or less read + output noise, and a 5 % gain error
        st.assert_rejects(st.std(z + factor * (y - z)), expected)
        st.assert_rejects(st.mean(factor * y), z)
    # and the read noise's sigma_w alone: 5 % on sigma_w must be seen too
    for factor in (1.05, 0.95):
        st.assert_rejects(st.std(y), np.sqrt((factor * 0.0175) ** 2 * np.sum(np.abs(w) * x[0] ** 2) + 0.04**2))


def test_noise_statistics_ort_equal_numpy():
    """With all noise on, the per-element error mean and std of ORT equal those of the numpy reference."""
    p = STANDARD.replace(tile_rows=64)
    rng = np.random.default_rng(5)
    inputs = layer_inputs(rng, 64, 100, 6, 64, 64, bank=1 << 18)
    sess = matmul_session(p, tiled=True)
    y_clean = _reference(inputs, p.replace(read_noise=0.0, out_noise=0.0))
    draws = 400
    starts = rng.integers(0, (1 << 18) - 2 * 64 * 6, draws)
    ort_err = np.stack([run_layer(p, inputs, int(s), sess) - y_clean for s in starts])
    ref_err = np.stack(
        [_reference(inputs, p, rng.standard_normal((2, 64, 6)).astype(np.float32)) - y_clean for _ in range(draws)]
    )
    scale = np.maximum(ref_err.std(axis=0), 1e-3)
    assert np.mean(np.abs(ort_err.mean(0) - ref_err.mean(0)) / scale) < 0.15
    ratio = ort_err.std(axis=0) / scale
    assert 0.85 < np.median(ratio) < 1.15
    _check_noise_against_reference(ort_err, ref_err, bank_size=1 << 18)


def _check_noise_against_reference(ort_err, ref_err, bank_size):
    """Element by element: the means agree (mean z^2) and the stds agree (std ratio) to a few SE, and the
    same checks reject 5 % more or less noise in the graph, or a 5 % gain error (the twins)."""
    n = ort_err.shape[0]
    bank = 1 / np.sqrt(2 * bank_size)  # the graph's noise comes from one bank: its sample std is shared
    st.assert_matches(st.mean_z(ort_err, ref_err), st.expected_mean_z2(n, ref_err.shape[0]), detect=None)
    st.assert_matches(st.with_common_error(st.std_ratio(ort_err, ref_err, floor=1e-6), bank, "noise bank"), 1.0)
    centred = ort_err - ort_err.mean(0)
    for factor in (1.05, 0.95):
        perturbed = st.std_ratio(ort_err.mean(0) + factor * centred, ref_err, floor=1e-6)
        st.assert_rejects(st.with_common_error(perturbed, bank, "noise bank"), 1.0)


def test_ir_drop_leaves_zero_input_and_zero_weights_unchanged():
    p = NOISE_OFF.replace(adc_bits=None, adc_bound=None, dac_bits=None)
    x = np.zeros((3, 16))
    assert np.all(_single_column(p, x, np.ones(16)) == 0)
    x = np.ones((3, 16))
    assert np.all(_single_column(p, x, np.zeros(16)) == 0)
    # and it lowers |z| of a positive full input on positive weights, as the formula says
    y = _single_column(p, x, np.ones(16))
    assert np.all(y < 16) and np.all(y > 15)


@pytest.mark.parametrize("tiles", [1, 2])
def test_iterative_bound_management_ort_equals_numpy(tiles):
    """Saturating inputs: every vector keeps the first halving whose outputs stay inside the ADC bound."""
    p = NOISE_OFF.replace(bound_management="iterative", bm_max_halvings=3, tile_rows=64)
    k = 64 * tiles
    inputs = layer_inputs(np.random.default_rng(9), 32, k, 5, 64, 64)
    inputs["W"] = np.where(inputs["W"] != 0, np.maximum(np.abs(inputs["W"]), 0.5), 0).astype(np.float32)  # z >> 10
    inputs["X"] = np.abs(inputs["X"])
    y_ort = run_layer(p, inputs)
    y_ref = _reference(inputs, p)
    y_clip = _reference(inputs, p.replace(bound_management="none"))
    assert np.mean(np.isclose(y_ort, y_ref, rtol=1e-4, atol=1e-4)) > 0.99
    assert not np.allclose(y_ref, y_clip)  # bound management changed the saturated outputs
    ideal = _reference(inputs, PERIPHERY_PRESETS["ideal"].replace(tile_rows=64))
    assert np.linalg.norm(y_ref - ideal) < np.linalg.norm(y_clip - ideal) / 2


def test_iterative_bound_management_noise_statistics():
    p = STANDARD.replace(bound_management="iterative", bm_max_halvings=2, ir_drop=0.0, read_noise=0.0)
    rng = np.random.default_rng(10)
    inputs = layer_inputs(rng, 32, 64, 8, 512, 512, bank=1 << 18)
    sess = matmul_session(p)
    y_clean = _reference(inputs, p.replace(out_noise=0.0))
    starts = rng.integers(0, (1 << 18) - 3 * 32 * 8, 400)
    err = np.stack([run_layer(p, inputs, int(s), sess) - y_clean for s in starts])
    ref = np.stack(
        [_reference(inputs, p, rng.standard_normal((3, 1, 32, 8)).astype(np.float32)) - y_clean for _ in range(400)]
    )
    assert 0.8 < np.median(err.std(0) / np.maximum(ref.std(0), 1e-6)) < 1.25
    _check_noise_against_reference(err, ref, bank_size=1 << 18)
