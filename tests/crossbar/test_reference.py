"""The numpy reference tile against hand-computed formulas (Rasch et al. 2023)."""

from __future__ import annotations

import numpy as np

from anacompile.crossbar.periphery import PERIPHERY_PRESETS
from anacompile.crossbar.reference import analog_matmul_reference, ir_row_weights, layer_scales, tile_forward

STANDARD = PERIPHERY_PRESETS["standard"]


def _layer(rng, k=40, n=7):
    w = rng.uniform(-1, 1, (k, n)).astype(np.float32)
    w /= np.abs(w).max(axis=0, keepdims=True)
    return w, rng.uniform(-1, 1, (5, k)).astype(np.float32)


def test_ideal_is_the_plain_matmul():
    rng = np.random.default_rng(0)
    w, x = _layer(rng)
    gamma = rng.uniform(0.5, 2, (1, 7)).astype(np.float32)
    y = analog_matmul_reference(
        x,
        w,
        gamma,
        np.ones((1, 1), np.float32),
        np.ones((1, 7), np.float32),
        np.zeros(7, np.float32),
        PERIPHERY_PRESETS["ideal"],
    )
    np.testing.assert_allclose(y, x @ (w * gamma), rtol=1e-5, atol=1e-6)


def test_dac_adc_and_ir_drop_by_hand():
    """One tile, static range 1, unit scales: the published formulas written out in float64."""
    rng = np.random.default_rng(1)
    w, x = _layer(rng)
    p = STANDARD.replace(read_noise=0.0, out_noise=0.0)
    y = analog_matmul_reference(
        x,
        w,
        np.ones((1, 7), np.float32),
        np.ones((1, 1), np.float32),
        np.ones((1, 7), np.float32),
        np.zeros(7, np.float32),
        p,
    )
    xq = np.round(np.clip(x.astype(np.float64), -1, 1) * 127) / 127
    z = xq @ w
    n = 512
    a = n * 0.35 * 5e-6 * (np.abs(xq) @ np.abs(w))
    c = a * (0.05 * a**2 - 0.2 * a + 0.5)
    j = np.arange(40)[:, None]
    z = z - c * (xq @ (w * (1 - (1 - j / n) ** 2)))
    step = 20 / 254
    expected = np.clip(np.round(z / step) * step, -10, 10)
    np.testing.assert_allclose(y, expected, atol=1e-5)


def test_tile_forward_is_the_reference_on_fed_quantities():
    rng = np.random.default_rng(2)
    w, x = _layer(rng, k=1000, n=3)
    p = STANDARD.replace(tile_rows=512)
    wt = np.zeros((2, 512, 3), np.float32)
    wt.reshape(-1, 3)[:1000] = w
    gamma = rng.uniform(0.5, 2, (2, 1, 3)).astype(np.float32)
    in_range = rng.uniform(0.5, 2, (2, 1, 1)).astype(np.float32)
    alpha = rng.uniform(0.9, 1.1, (2, 1, 3)).astype(np.float32)
    noise = rng.standard_normal((2, 5, 3)).astype(np.float32)
    y1 = analog_matmul_reference(x, wt, gamma, in_range, alpha, np.ones(3, np.float32), p, noise)
    from anacompile.crossbar.reference import tile_constants

    in_scale, out_scale = layer_scales(gamma, in_range, p)
    y2 = tile_forward(
        x,
        wt * np.float32(tile_constants(p)["code_gain"]),
        in_scale,
        out_scale * alpha,
        np.ones(3, np.float32),
        p,
        noise,
    )
    np.testing.assert_array_equal(y1, y2)


def test_ir_row_weights_formula():
    r = ir_row_weights(4)
    np.testing.assert_allclose(r[:, 0], [0.0, 1 - 0.75**2, 1 - 0.5**2, 1 - 0.25**2])
