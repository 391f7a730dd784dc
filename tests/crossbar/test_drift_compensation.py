"""One drift compensation: the optimiser's objective, the chip stage and the ONNX body agree on random matrices."""

from __future__ import annotations

import numpy as np
import pytest

from anacompile import devices
from anacompile.crossbar.compensation import (
    CalibrationRead,
    calibration_read,
    compensation_factors,
    compensation_reference,
    gdc_alpha,
)
from anacompile.crossbar.functions import chip_weights_attributes
from anacompile.crossbar.periphery import DriftCompensation
from anacompile.mapping import SinglePairMapping
from anacompile.programming import weight_error
from tests._support.graphs import chip_session

PCM = devices.get("pcm").replace(read_noise={"q_coefficient": 0.0})  # no read noise: W of the body is exact
MAP = SinglePairMapping()
GAIN = MAP.gain_us(PCM.g_min_us, PCM.g_max_us)


def _in_graph_alpha(w_t: np.ndarray, ref: np.ndarray, mode: DriftCompensation) -> np.ndarray:
    """alpha of the AnalogChipWeights body at t = 0 with nu = 0 (g(t) = g_prog): the pairs encode w_t."""
    g_prog = MAP.encode(w_t, PCM.g_min_us, PCM.g_max_us).astype(np.float32)
    sess = chip_session(mode, chip_weights_attributes(PCM, MAP.significance, GAIN, seed=1))
    w_g, a_g = sess.run(
        None,
        {
            "g_prog": g_prog,
            "nu": np.zeros_like(g_prog),
            "t_inference": np.array(0, np.float32),
            "gdc_ref": np.asarray(ref, np.float32),
            "out_scale": np.ones(w_t.shape[:-2] + (1, w_t.shape[-1]), np.float32),
        },
    )
    np.testing.assert_allclose(w_g, w_t, atol=2e-6)  # the body decodes the weights the chip stage sees
    return a_g


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(1, 64, 16), (3, 40, 7)])  # one tile / three row tiles
def test_optimiser_chip_stage_and_onnx_body_agree(seed: int, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(seed)
    w0 = rng.uniform(-1, 1, shape)
    w_t = w0 * rng.uniform(0.3, 1.0, shape)  # drifted, unevenly
    ref = compensation_reference(w0, DriftCompensation.GLOBAL)
    chip = compensation_factors(w_t, ref, DriftCompensation.GLOBAL)
    body = _in_graph_alpha(w_t.astype(np.float32), ref, DriftCompensation.GLOBAL)
    # the optimiser's objective with the chip's reference as its target: the same alpha
    opt = weight_error.gdc_alpha(w0.reshape(-1, shape[-1]), w_t.reshape(-1, shape[-1]))
    assert chip.shape == body.shape == (shape[0], 1, shape[-1])
    np.testing.assert_allclose(chip, opt, rtol=1e-6)
    np.testing.assert_allclose(body, opt, rtol=1e-6)
    # and the formula is the one-hot read sum |w| (aihwkit's code), not the all-ones read of its docs
    np.testing.assert_allclose(opt, np.abs(w0).sum() / np.abs(w_t).sum(), rtol=1e-12)
    ones = gdc_alpha(w0, w_t, read=CalibrationRead.ALL_ONES)
    assert not np.allclose(ones, opt, rtol=1e-3)


@pytest.mark.parametrize("seed", [0, 1])
def test_per_column_chip_stage_and_onnx_body_agree(seed: int) -> None:
    rng = np.random.default_rng(seed)
    w0 = rng.uniform(-1, 1, (2, 30, 5))
    w_t = w0 * rng.uniform(0.3, 1.0, w0.shape)
    ref = compensation_reference(w0, DriftCompensation.COLUMN)
    chip = compensation_factors(w_t, ref, DriftCompensation.COLUMN)
    body = _in_graph_alpha(w_t.astype(np.float32), ref, DriftCompensation.COLUMN)
    expected = np.abs(w0).sum(axis=-2, keepdims=True) / np.abs(w_t).sum(axis=-2, keepdims=True)
    np.testing.assert_allclose(chip, expected, rtol=1e-6)
    np.testing.assert_allclose(body, expected, rtol=1e-6)


def test_strategy_error_applies_the_chip_stage_compensation() -> None:
    """evaluate_strategy_error's alpha is gdc_alpha: a uniform drift is undone exactly, a 5 % one is not 1."""
    u = np.random.default_rng(4).uniform(-1, 1, (20, 6))
    assert weight_error.gdc_alpha is gdc_alpha
    assert gdc_alpha(u, 0.95 * u) == pytest.approx(1 / 0.95, rel=1e-12)
    stacked = np.stack([0.5 * u, 0.8 * u])
    np.testing.assert_allclose(gdc_alpha(u, stacked), [2.0, 1.25], rtol=1e-12)


def test_calibration_read_batch_axes() -> None:
    w = np.random.default_rng(5).standard_normal((4, 3, 10, 6))
    np.testing.assert_allclose(calibration_read(w, batch_dims=2, dtype=np.float64), np.abs(w).sum(axis=(2, 3)))
    np.testing.assert_allclose(
        calibration_read(w, DriftCompensation.COLUMN, dtype=np.float64), np.abs(w).sum(axis=-2, keepdims=True)
    )
