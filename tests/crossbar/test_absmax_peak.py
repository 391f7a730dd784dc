"""Abs-max input ranges with iterative bound management: a vector's peak gets the same DAC code whatever its
last bits (the cause of the rare noise-off mismatches of ``tests/test_periphery_matrix.py``'s recurrent
``combined`` cells).

The peak x_max of a vector scales to L = 1/d DAC codes. Computed as x * 1/(x_max d), it lands a few ulp
either side of L depending on x_max's last bits; bound management's pass 1 halves the codes, and L is odd,
so L/2 is a rounding tie and the peak's code, L/2 +- 1/2, followed those bits. A recurrent layer's state is
computed by onnxruntime's tanh/sigmoid in the session and by numpy's in the reference, one ulp apart, and so
the two differed by an LSB of that code. Scaled as (x / x_max) * (1/d), the peak is exactly fl(1/d): inputs
one ulp apart give the same codes.

One tile, one output column whose only nonzero weight (1) reads the peak's row, unit scales: the output is
2 d q_1 (pass 1's code of the peak, doubled back), ADC-rounded. An ADC bound of 0.8 saturates pass 0
(d L = 1) and not pass 1 (~0.5), so every vector's output comes from pass 1.
"""

from __future__ import annotations

import numpy as np

from anacompile.crossbar.periphery import PERIPHERY_PRESETS
from anacompile.crossbar.reference import analog_matmul_reference
from tests._support.graphs import run_layer

F32 = np.float32
K, PEAK = 16, 3
PERIPHERY = PERIPHERY_PRESETS["standard"].replace(
    read_noise=0.0,
    out_noise=0.0,
    ir_drop=0.0,
    tile_rows=K,
    input_range="absmax",
    bound_management="iterative",
    bm_max_halvings=1,
    adc_bound=0.8,
)


def _inputs() -> dict[str, np.ndarray]:
    """64 copies of one vector whose peak (element PEAK) runs over 64 consecutive float32 values."""
    base = np.random.default_rng(7).uniform(-0.5, 0.5, K).astype(F32)
    peaks = [F32(0.9)]
    for _ in range(63):
        peaks.append(np.nextafter(peaks[-1], F32(1)))
    x = np.tile(base, (64, 1))
    x[:, PEAK] = peaks
    w = np.zeros((1, K, 1), F32)
    w[0, PEAK, 0] = 1.0
    one = np.ones((1, 1, 1), F32)
    return {
        "X": x,
        "W": w,
        "col_scale": one,
        "in_range": one,
        "alpha": one,
        "bias": np.zeros(1, F32),
        "noise_bank": np.zeros(16, F32),
        "ir_row_weight": np.ones((K, 1), F32),
    }


def _reference(inputs, periphery):
    keys = ("X", "W", "col_scale", "in_range", "alpha", "bias")
    return analog_matmul_reference(*(inputs[k] for k in keys), periphery)[:, 0]


def _codes(inputs, y: np.ndarray) -> np.ndarray:
    """The output in units of pass 1's DAC step of the peak's range: 2 q_1 as the ADC reads it."""
    return y / inputs["X"][:, PEAK] / F32(PERIPHERY.dac_step)


def test_inputs_one_ulp_apart_give_the_peak_one_code():
    inputs = _inputs()
    y_ref = _reference(inputs, PERIPHERY)
    y_ort = run_layer(PERIPHERY, inputs)[:, 0]
    np.testing.assert_allclose(y_ort, y_ref, rtol=1e-6)
    # pass 1's code of the peak is (L + 1) / 2 = 64 for all 64 peaks (the tie L/2 rounds half to even), read
    # by the ADC (step 0.8/127) as 80 of its steps: 2 * 80 * 0.8 / 127 / d = 128.0 DAC steps of the range
    step, d = PERIPHERY.adc_step, PERIPHERY.dac_step
    expected = 2 * np.round(64 * d / step) * step / d
    for y in (y_ref, y_ort):
        np.testing.assert_allclose(_codes(inputs, y), expected, rtol=1e-5)  # code 63 would read 126.4
    saturated = _reference(inputs, PERIPHERY.replace(bound_management="none"))  # pass 0 alone saturates
    np.testing.assert_allclose(saturated, PERIPHERY.adc_bound * inputs["X"][:, PEAK], rtol=1e-6)
