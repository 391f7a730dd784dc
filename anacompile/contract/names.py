"""Names of the custom op domain, its ops, graph inputs, initializer suffixes and metadata keys.

Nobody writes these strings inline: the compiler, the runtime, ``inspect`` and the tests all import them
from :mod:`anacompile.contract`.
"""

from __future__ import annotations

__all__ = [
    "ANALOG_MATMUL",
    "BIAS",
    "CHIP_STATES",
    "CHIP_STATE_FULL",
    "CHIP_STATE_NONE",
    "CHIP_WEIGHTS",
    "COL_SCALE",
    "DOMAIN",
    "G_PROG",
    "G_TARGET",
    "GDC_REF",
    "IN_RANGE",
    "IN_SCALE",
    "OUT_GAIN",
    "IR_WEIGHT",
    "META_CHIP",
    "META_REPORT",
    "META_VERSION",
    "NCHWC_PREFIX",
    "NOISE",
    "NOISE_BANK",
    "NOISE_END",
    "NOISE_START",
    "NU",
    "OUT_SCALE",
    "SCALE",
    "T_INFERENCE",
    "TILE_INPUTS",
    "TILED",
    "W_EFF",
    "layer_tensor",
]

DOMAIN = "ai.anacompile"
"""The custom op domain; its version is :data:`anacompile.contract.versions.DOMAIN_VERSION`."""

# Op types (model-local functions in DOMAIN); signatures in anacompile.contract.signatures.
ANALOG_MATMUL = "AnalogMatMul"
"""Y = periphery(X, W): DAC, tiled MVM, read/output noise, IR drop, ADC, digital scales, partial sums."""
CHIP_WEIGHTS = "AnalogChipWeights"
"""(g_prog, nu, t_inference, gdc_ref, out_scale) -> (W, scale): drift, 1/f read noise, pairs, drift
compensation, the layer's output scale."""

TILED = "tiled"
"""Overload name of the ``AnalogMatMul`` body for layers spread over several row tiles."""

# What a compiled file carries of the chip (``compile --chip-state``; the report's ``chip_state``).
CHIP_STATE_FULL = "full"
"""The file carries chip ``chip`` of ``seed`` programmed (``L.g_prog``, ``L.nu``, ``L.gdc_ref``) and its
in-graph chip stage (``AnalogChipWeights``): a stock onnxruntime runs that chip at any ``t_inference``."""
CHIP_STATE_NONE = "none"
"""The file carries the programming plan, the seed and the chip index only (domain version >= 2): no
``L.g_prog``, ``L.nu``, ``L.gdc_ref``, no ``AnalogChipWeights`` node and no ``t_inference``;
``L.w_eff`` and ``L.scale`` are graph inputs, which the analog session feeds after programming the chip on
load (the same chip, bit for bit, as a ``full`` file of the same seed gives)."""
CHIP_STATES = (CHIP_STATE_FULL, CHIP_STATE_NONE)

# Graph inputs / shared initializers.
T_INFERENCE = "t_inference"
"""Scalar float32, seconds since programming; overridable initializer with default 0."""
NOISE_BANK = "anacompile.noise_bank"
"""Float32 bank of standard normals sliced at offsets for per-MVM noise (the analog session's graph)."""

# Per-layer initializer suffixes (full name = layer_tensor(layer, suffix) = f"{layer}.{suffix}").
G_TARGET = "g_target"
"""Programming plan, µS, (P, 2, [n_tiles,] rows, N); the tile axis is present iff the layer is tiled."""
G_PROG = "g_prog"
"""The baked chip's programmed conductances, µS, shape of g_target."""
NU = "nu"
"""The baked chip's drift exponents, shape of g_target."""
GDC_REF = "gdc_ref"
"""Drift-compensation reference read right after programming (scalar, or ([n_tiles,] 1, N) per column)."""
COL_SCALE = "col_scale"
"""Per-column digital scale gamma, ([n_tiles,] 1, N)."""
IN_RANGE = "in_range"
"""Static DAC input range alpha_in per tile, ([n_tiles,] 1, 1)."""
BIAS = "bias"
IR_WEIGHT = "ir_row_weight"
OUT_SCALE = "out_scale"
"""gamma D alpha_in, ([n_tiles,] 1, N)."""
IN_SCALE = "in_scale"
"""1/(alpha_in d), ([n_tiles,] 1, 1)."""
OUT_GAIN = "out_gain"
"""The tiles' output gains before the ADC, ([n_tiles,] 1, 1) (``output_range: calibrated`` only)."""
W_EFF = "w_eff"
"""Output 0 of AnalogChipWeights: effective weights in ADC codes per DAC code, ([n_tiles,] rows, N) (a graph
input in a ``chip_state: none`` file)."""
SCALE = "scale"
"""Output 1 of AnalogChipWeights: out_scale * alpha_GDC, ([n_tiles,] 1, N) (a graph input in a
``chip_state: none`` file)."""
NOISE = "noise"
NCHWC_PREFIX = "nchwc_"
"""Prefix of the analog session's own fed tensors of a convolution run as NCHWc Convs, derived from ``L.w_eff``
and ``L.scale`` once per (chip, t) (:mod:`anacompile.runtime.nchwc`; never in a file)."""
NOISE_START = "noise_start"
NOISE_END = "noise_end"
TILE_INPUTS = "tile_inputs"
"""Not an initializer: in the session's digital model, the Loop output that stacks every step's input of an
AnalogMatMul in the Loop body, (T, ..., K): a recurrent layer's inputs of one run."""

# Metadata keys.
META_REPORT = "anacompile.report"
"""The compile report as JSON (:class:`anacompile.contract.report.CompileReport`)."""
META_VERSION = "anacompile.version"
"""The anacompile version that wrote the model."""
META_CHIP = "anacompile.chip"


def layer_tensor(layer: str, suffix: str) -> str:
    """Full name of a layer's tensor: ``layer_tensor("fc1", G_TARGET) == "fc1.g_target"``."""
    return f"{layer}.{suffix}"
