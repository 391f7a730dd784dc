"""Plain numpy reference of the analog tile forward pass, the same arithmetic as the ONNX function.

The runtime's ``AnalogMatMul`` function body (:mod:`anacompile.runtime.functions`) computes exactly this,
operation by operation in float32; tests compare the two (equal with noise off, equal statistics with
noise on). Rasch et al. 2023 (Nat. Commun. 14, 5282), reference/papers.md, "Standard AIMC forward pass
for one tile":

    x~ = clip(x / alpha_in, -b, b)                      DAC range (static per tile, or abs-max per vector)
    x^ = round(x~ / d_dac) d_dac                        DAC, d_dac = b / (2^(bits-1) - 1)
    z  = sum_j w_ij x^_j                                MVM on the tile (w = normalised conductances)
    z -= g_IR c(a_i) sum_j w_ij x^_j (1 - (1 - j/n)^2)  IR drop, a_i = n/G_ratio sum_j |w_ij||x^_j|,
                                                        c(a) = a (0.05 a^2 - 0.2 a + 0.5)
    z += sqrt(s_w^2 sum_j |w_ij| x^_j^2 + s_out^2) xi   PCM short-term read noise + output noise
    z^ = clip(round(z / d_adc) d_adc, -B, B)            ADC
    y  = sum_tiles alpha_in gamma_i alpha_i z^_i + beta  digital scale, drift compensation, partial sums, bias

The two Gaussian terms are independent, so one draw with the summed variance has their joint law.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from anacompile.crossbar.periphery import InputRange, Periphery

__all__ = ["ABSMAX_EPS", "analog_matmul_reference", "ir_row_weights", "tile_input"]

ABSMAX_EPS = 1e-12
"""Floor of an abs-max input range (an all-zero input vector is left at zero)."""

F32 = np.float32


def ir_row_weights(tile_rows: int) -> NDArray[np.float32]:
    """Row-position factor 1 - (1 - j/n)^2 of the IR-drop model, j = 0..n-1, shape (n, 1)."""
    j = np.arange(tile_rows, dtype=np.float64)
    return (1.0 - (1.0 - j / tile_rows) ** 2).astype(F32).reshape(tile_rows, 1)


def tile_input(x: NDArray[np.float32], n_tiles: int, tile_rows: int) -> NDArray[np.float32]:
    """Flatten the leading dims, zero-pad K to n_tiles*tile_rows and split: shape (n_tiles, B, tile_rows)."""
    k = x.shape[-1]
    x2 = x.reshape(-1, k)
    pad = n_tiles * tile_rows - k
    x2 = np.pad(x2, ((0, 0), (0, pad)))
    return x2.reshape(-1, n_tiles, tile_rows).transpose(1, 0, 2)


def analog_matmul_reference(
    x: NDArray[np.float32],
    w_eff: NDArray[np.float32],
    col_scale: NDArray[np.float32],
    in_range: NDArray[np.float32],
    alpha: NDArray[np.float32],
    bias: NDArray[np.float32],
    periphery: Periphery,
    noise: NDArray[np.float32] | None = None,
) -> NDArray[np.float32]:
    """Forward pass of one analog layer through its tiles.

    Args:
        x: input, shape (..., K).
        w_eff: normalised effective weights per tile, (n_tiles, tile_rows, N), rows past K zero.
        col_scale: digital per-column scales gamma, (n_tiles, 1, N).
        in_range: static DAC input ranges alpha_in per tile, (n_tiles, 1, 1) (unused for abs-max).
        alpha: drift-compensation factors, (n_tiles, 1, N).
        bias: (N,).
        periphery: the periphery configuration.
        noise: standard normals of shape (n_tiles, B, N) for the per-MVM noise, or ``None`` for none.

    Returns:
        y with shape (..., N), float32.
    """
    n_tiles, tile_rows, n_out = w_eff.shape
    xt = tile_input(np.asarray(x, F32), n_tiles, tile_rows)
    if periphery.dac_bits is None:
        scale = np.ones((1, 1, 1), F32)
        xq = xt
    else:
        if periphery.input_range is InputRange.STATIC:
            scale = in_range.astype(F32)
        else:
            scale = np.maximum(np.max(np.abs(xt), axis=2, keepdims=True), F32(ABSMAX_EPS))
        xc = np.clip(xt / scale, F32(-periphery.dac_bound), F32(periphery.dac_bound))
        step = F32(periphery.dac_step)
        xq = np.round(xc / step) * step
    z = np.matmul(xq, w_eff)
    need_abs = periphery.read_noise > 0 or periphery.ir_drop > 0
    abs_w = np.abs(w_eff) if need_abs else None
    if periphery.ir_drop > 0:
        # n = the physical rows of a tile; a layer on one tile occupies its first K rows
        a = np.matmul(np.abs(xq), abs_w) * F32(periphery.tile_rows / periphery.ir_drop_g_ratio)
        c = a * (a * (a * F32(0.05) - F32(0.2)) + F32(0.5))
        z_ir = np.matmul(xq, w_eff * ir_row_weights(periphery.tile_rows)[:tile_rows])
        z = z - F32(periphery.ir_drop) * c * z_ir
    if noise is not None and periphery.has_mvm_noise:
        if periphery.read_noise > 0:
            var = np.matmul(xq * xq, abs_w) * F32(periphery.read_noise**2) + F32(periphery.out_noise**2)
            z = z + np.sqrt(var) * noise
        else:
            z = z + F32(periphery.out_noise) * noise
    if periphery.adc_bits is not None:
        step = F32(periphery.adc_step)
        z = np.round(z / step) * step
    if periphery.adc_bound is not None:
        z = np.clip(z, F32(-periphery.adc_bound), F32(periphery.adc_bound))
    y = np.sum(z * scale * (col_scale * alpha), axis=0) + bias
    return y.reshape(x.shape[:-1] + (n_out,)).astype(F32)
