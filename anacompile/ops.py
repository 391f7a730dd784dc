"""Names of the custom op domain, its ops, attributes, initializer suffixes and metadata keys.

Nobody writes these strings inline: the compiler, the runtime and the tests all import them from here.
"""

from __future__ import annotations

__all__ = [
    "ANALOG_MATMUL",
    "CHIP_WEIGHTS",
    "DOMAIN",
    "DOMAIN_VERSION",
    "META_CHIP",
    "META_REPORT",
    "META_VERSION",
    "NOISE_BANK",
    "T_INFERENCE",
]

DOMAIN = "ai.anacompile"
DOMAIN_VERSION = 1

# Op types (model-local functions in DOMAIN).
ANALOG_MATMUL = "AnalogMatMul"
"""Y = periphery(X, W_eff): DAC, tiled MVM, read/output noise, IR drop, ADC, digital scales, partial sums."""
CHIP_WEIGHTS = "AnalogChipWeights"
"""(G_prog, nu, t_inference, gdc_ref) -> (W_eff, alpha): drift, 1/f read noise, pairs, drift compensation."""

# Graph inputs / shared initializers.
T_INFERENCE = "t_inference"
"""Scalar float32, seconds since programming; overridable initializer with default 0."""
NOISE_BANK = "anacompile.noise_bank"
"""Float32 bank of standard normals sliced at random offsets for per-MVM noise (see runtime.functions)."""

# Per-layer initializer suffixes (full name = f"{layer}.{suffix}").
G_TARGET = "g_target"
G_PROG = "g_prog"
NU = "nu"
GDC_REF = "gdc_ref"
COL_SCALE = "col_scale"
IN_RANGE = "in_range"
BIAS = "bias"
IR_WEIGHT = "ir_row_weight"
OUT_SCALE = "out_scale"
IN_SCALE = "in_scale"
OUT_GAIN = "out_gain"  # per-tile output gain before the ADC (output_range: calibrated)
W_EFF = "w_eff"
SCALE = "scale"
NOISE = "noise"
NOISE_START = "noise_start"
NOISE_END = "noise_end"
TILE_INPUTS = "tile_inputs"
"""Not an initializer: in the session's digital model, the Loop output that stacks every step's input of an
AnalogMatMul in the Loop body, (T, ..., K): a recurrent layer's inputs of one run."""

# Metadata keys.
META_REPORT = "anacompile.report"
META_VERSION = "anacompile.version"
META_CHIP = "anacompile.chip"
