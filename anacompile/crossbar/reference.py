"""Plain numpy reference of the analog tile forward pass, the same arithmetic as the ONNX function.

The runtime's ``AnalogMatMul`` function body (:mod:`anacompile.crossbar.functions`) computes exactly this,
operation by operation in float32; tests compare the two (equal with noise off, equal statistics with
noise on). Rasch et al. 2023 (Nat. Commun. 14, 5282), reference/papers.md, "Standard AIMC forward pass
for one tile":

    x~ = clip(x / alpha_in, -b, b)                      DAC range (static per tile, or abs-max per vector)
    x^ = round(x~ / d_dac) d_dac                        DAC, d_dac = b / (2^(bits-1) - 1)
                                                        (computed as integer codes, see tile_constants)
    z  = sum_j w_ij x^_j                                MVM on the tile (w = normalised conductances)
    z -= g_IR c(a_i) sum_j w_ij x^_j (1 - (1 - j/n)^2)  IR drop, a_i = n/G_ratio sum_j |w_ij||x^_j|,
                                                        c(a) = a (0.05 a^2 - 0.2 a + 0.5), computed as
                                                        0.05 a ((a - 2)^2 + 6) with 0.05 g_IR in the weights
    z += s_w sqrt(sum_j |w_ij| x^_j^2) xi_1             PCM short-term read noise
    z  = g z + s_out xi_2                               output gain g (1, or calibrated per tile) and the
                                                        ADC-referred output noise
    z^ = clip(round(z / d_adc) d_adc, -B, B) / g        ADC (the 1/g is part of the digital scale)
    y  = sum_tiles alpha_in gamma_i alpha_i z^_i + beta  digital scale, drift compensation, partial sums, bias

The two Gaussian terms are independent, so one draw with the summed variance g^2 s_w^2 (...) + s_out^2 has
their joint law.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from anacompile.contract.specs import TileConstants
from anacompile.crossbar.periphery import InputRange, Periphery

__all__ = [
    "ABSMAX_EPS",
    "analog_matmul_reference",
    "ir_row_weights",
    "layer_scales",
    "tile_constants",
    "tile_forward",
    "tile_input",
]

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
    tiled: NDArray[np.float32] = x2.reshape(-1, n_tiles, tile_rows).transpose(1, 0, 2)
    return tiled


def tile_constants(periphery: Periphery) -> TileConstants:
    """The scalars of the tile arithmetic in DAC/ADC code units (shared with the ONNX function's attributes).

    With the DAC on, an input becomes the integer code q = round(clip(x / alpha_in / d, -L, L)), L = b/d,
    and the normalised input is x^ = d q. The tile's weights are fed pre-scaled to ADC codes per DAC code,
    w' = (d / D) w (``code_gain``), so the MVM gives ADC codes directly: z = q . w'. In these units the IR
    drop's a = (n / G) D sum|w'||q|, and the noise standard deviation in ADC codes is
    sqrt(k1 sum|w'| q^2 + k2) with k1 = sigma_w^2 d / D and k2 = (sigma_out / D)^2. With a converter off its
    step is 1 (no rounding).
    """
    p = periphery
    dac_step, adc_step = p.dac_step, p.adc_step  # None when that converter is off
    d = 1.0 if dac_step is None else dac_step
    big_d = 1.0 if adc_step is None else adc_step
    return TileConstants(
        dac_step=float(d),
        dac_levels=float(p.dac_bound / d) if p.dac_bits is not None else 0.0,
        code_gain=float(d / big_d),
        adc_step=float(big_d),
        code_bound=float(p.adc_bound / big_d) if p.adc_bound is not None else 0.0,
        ir_drop=float(p.ir_drop),
        ir_a_scale=float(p.tile_rows / p.ir_drop_g_ratio * big_d),  # n = physical rows of a tile
        noise_k1=float(p.read_noise**2 * d / big_d),
        noise_k2=float((p.out_noise / big_d) ** 2),
        noise_std=float(p.out_noise / big_d),
    )


def _f32_constants(p: Periphery) -> dict[str, np.float32]:
    return {k: F32(v) for k, v in tile_constants(p).as_attributes().items()}


def layer_scales(
    col_scale: NDArray[Any],
    in_range: NDArray[Any],
    periphery: Periphery,
    out_gain: NDArray[Any] | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Static per-layer scales: ``in_scale`` = 1/(alpha_in d) (n_tiles, 1, 1) and ``out_scale`` =
    gamma D alpha_in / g (n_tiles, 1, N); alpha_in only where input ranges are static and the DAC is on, the
    output gain g only where output ranges are calibrated (``out_gain``, (n_tiles, 1, 1))."""
    c = tile_constants(periphery)
    static = periphery.dac_bits is not None and periphery.input_range is InputRange.STATIC
    a_in = np.asarray(in_range, np.float64) if static else np.ones_like(np.asarray(in_range, np.float64))
    in_scale = (1.0 / (a_in * c.dac_step)).astype(F32)
    out_scale = np.asarray(col_scale, np.float64) * c.adc_step * a_in
    if out_gain is not None:
        g = np.asarray(out_gain, np.float64)
        out_scale = out_scale / (g.reshape(-1, 1, 1) if out_scale.ndim == 3 else g.reshape(1, 1))
    return in_scale, out_scale.astype(F32)


def analog_matmul_reference(
    x: NDArray[np.float32],
    w_eff: NDArray[np.float32],
    col_scale: NDArray[np.float32],
    in_range: NDArray[np.float32],
    alpha: NDArray[np.float32],
    bias: NDArray[np.float32],
    periphery: Periphery,
    noise: NDArray[np.float32] | None = None,
    out_gain: NDArray[np.float32] | None = None,
) -> NDArray[np.float32]:
    """Forward pass of one analog layer through its tiles.

    Args:
        x: input, shape (..., K).
        w_eff: normalised effective weights per tile, (n_tiles, tile_rows, N), rows past K zero; or (K, N)
            for a layer on one tile.
        col_scale: digital per-column scales gamma, (n_tiles, 1, N) (or (1, N)).
        in_range: static DAC input ranges alpha_in per tile, (n_tiles, 1, 1) (or (1, 1); unused for abs-max).
        alpha: drift-compensation factors, (n_tiles, 1, N) (or (1, N)).
        bias: (N,).
        periphery: the periphery configuration.
        noise: standard normals of shape (n_tiles, B, N) for the per-MVM noise (with iterative bound management
            (passes, n_tiles, B, N)), or ``None`` for none.

    Returns:
        y with shape (..., N), float32.
    """
    p = periphery
    if w_eff.ndim == 2:  # a layer on one tile, stored without the tile axis
        n = w_eff.shape[1]
        w_eff, col_scale = w_eff[None], np.reshape(col_scale, (1, 1, n))
        in_range, alpha = np.reshape(in_range, (1, 1, 1)), np.reshape(alpha, (1, 1, n))
        noise = None if noise is None else noise.reshape((p.bm_passes, 1, -1, n))
    c = _f32_constants(p)
    in_scale, out_scale = layer_scales(col_scale, in_range, p, out_gain)
    return tile_forward(x, w_eff * c["code_gain"], in_scale, out_scale * alpha, bias, p, noise, out_gain)


def _mvm_codes(
    q: NDArray[np.float32],
    w_eff: NDArray[np.float32],
    p: Periphery,
    c: dict[str, np.float32],
    tile_rows: int,
    noise: NDArray[np.float32] | None,
    gain: NDArray[np.float32] | None = None,
) -> NDArray[np.float32]:
    """MVM of DAC codes in ADC-code units, with IR drop, output gain ``gain`` (None = 1) and noise, before
    the ADC."""
    need_abs = p.read_noise > 0 or p.ir_drop > 0
    abs_w = np.abs(w_eff) if need_abs else w_eff  # |W|: used only where need_abs holds
    w_g = w_eff if gain is None else w_eff * gain  # the gain folded into the weights: (q W) g = q (W g)
    z = np.matmul(q, w_g)
    if p.ir_drop > 0:  # g_IR c(a) z_ir with c(a) = 0.05 a ((a - 2)^2 + 6); 0.05 g_IR folded into W_ir
        a = np.matmul(np.abs(q), abs_w) * c["ir_a_scale"]
        d = a - F32(2.0)
        corr = a * (d * d + F32(6.0))
        z_ir = np.matmul(q, w_g * (ir_row_weights(p.tile_rows)[:tile_rows] * (c["ir_drop"] * F32(0.05))))
        z = z - corr * z_ir
    if noise is not None and p.has_mvm_noise:
        if p.read_noise > 0:
            k1 = c["noise_k1"] if gain is None else c["noise_k1"] * (gain * gain)
            z = z + np.sqrt(np.matmul(q * q, abs_w) * k1 + c["noise_k2"]) * noise
        else:
            z = z + c["noise_std"] * noise
    out: NDArray[np.float32] = z
    return out


def _adc(z: NDArray[np.float32], p: Periphery, c: dict[str, np.float32]) -> NDArray[np.float32]:
    if p.adc_bits is not None:
        z = np.round(z)
    if p.adc_bound is not None:
        z = np.clip(z, -c["code_bound"], c["code_bound"])
    return z


def tile_forward(
    x: NDArray[np.float32],
    w_codes: NDArray[np.float32],
    in_scale: NDArray[np.float32],
    scale: NDArray[np.float32],
    bias: NDArray[np.float32],
    periphery: Periphery,
    noise: NDArray[np.float32] | None = None,
    out_gain: NDArray[np.float32] | None = None,
) -> NDArray[np.float32]:
    """:func:`analog_matmul_reference` on the quantities the graph is fed (the analog session's state).

    Args:
        w_codes: the effective weights pre-scaled to ADC codes per DAC code (``code_gain`` w), with the tile
            axis (n_tiles, tile_rows, N) or without it (K, N).
        in_scale: 1/(alpha_in d), (n_tiles, 1, 1) or (1, 1).
        scale: gamma D alpha_in alpha_GDC, (n_tiles, 1, N) or (1, N) (with a calibrated output range, also
            divided by the gain).
        out_gain: the tiles' output gains g before the ADC, (n_tiles, 1, 1) or (1, 1); None for 1
            (``output_range: fixed``).
    """
    p = periphery
    x = np.asarray(x, F32)
    if w_codes.ndim == 2:
        n = w_codes.shape[1]
        w_codes, in_scale, scale = w_codes[None], np.reshape(in_scale, (1, 1, 1)), np.reshape(scale, (1, 1, n))
        noise = None if noise is None else noise.reshape((p.bm_passes, 1, -1, n))
    gain = None if out_gain is None else np.reshape(np.asarray(out_gain, F32), (-1, 1, 1))
    c = _f32_constants(p)
    w_eff = w_codes
    n_tiles, tile_rows, n_out = w_eff.shape
    xt = tile_input(np.asarray(x, F32), n_tiles, tile_rows)
    a_in = None
    if p.dac_bits is None:
        xs, inv = xt, None
    else:
        if p.input_range is InputRange.STATIC:
            inv = in_scale
            xs = xt * inv
        else:
            a_in = np.maximum(np.max(np.abs(xt), axis=2, keepdims=True), F32(ABSMAX_EPS))
            inv = np.reciprocal(a_in * c["dac_step"])
            # With bound management pass 1 halves the codes, and a vector's peak, at L = 1/d (a few ulp either
            # way as x * 1/(a d)), lands on the rounding tie L/2 (L odd): its code, L/2 +- 1/2, would follow the
            # last bits of x, so inputs one ulp apart (a recurrent state from another tanh) differ by an LSB.
            # As (x / a) * (1/d) the peak is exactly fl(1/d) whatever x is: the same code everywhere.
            xs = (xt / a_in) * np.reciprocal(c["dac_step"]) if p.bm_passes > 1 else xt * inv
    noises = [None] * p.bm_passes if noise is None else list(np.reshape(noise, (p.bm_passes, *noise.shape[-3:])))
    z, saturated = None, None
    # iterative bound management: pass k halves the input k times; from the last pass back to the first, a
    # vector keeps the first pass in which none of its outputs saturates (all passes computed, then selected)
    for k in reversed(range(p.bm_passes)):
        if inv is None:
            q = xt
        else:
            q = np.round(np.clip(xs * F32(0.5**k), -c["dac_levels"], c["dac_levels"]))
        z_k = _mvm_codes(q, w_eff, p, c, tile_rows, noises[k], gain)
        if p.bm_passes > 1:
            saturated = np.max(np.abs(z_k), axis=-1, keepdims=True) >= c["code_bound"]
        z_k = _adc(z_k, p, c)
        if k:
            z_k = z_k * F32(2.0**k)
        z = z_k if z is None or saturated is None else np.where(saturated, z, z_k)
    if a_in is not None:
        z = z * a_in  # abs-max: one input range per vector
    assert z is not None  # bm_passes >= 1
    y = np.sum(z * scale, axis=0) + bias
    result: NDArray[np.float32] = y.reshape(x.shape[:-1] + (n_out,)).astype(F32)
    return result
