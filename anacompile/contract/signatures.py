"""Signatures of the ops of domain ``ai.anacompile``: inputs, outputs, attributes, overloads.

The ONNX function bodies (:mod:`anacompile.crossbar.functions`), the rewrite that emits the nodes and the
session that feeds them all read these tuples, so an input's position is defined once.
"""

from __future__ import annotations

from dataclasses import dataclass

from anacompile.contract.names import ANALOG_MATMUL, CHIP_WEIGHTS, TILED

__all__ = [
    "ANALOG_MATMUL_SIGNATURE",
    "CHIP_ATTRIBUTES",
    "CHIP_INPUTS",
    "CHIP_OUTPUTS",
    "CHIP_WEIGHTS_SIGNATURE",
    "MATMUL_ATTRIBUTES",
    "MATMUL_INPUTS",
    "OUT_GAIN_INPUT",
    "MATMUL_NOISE_INPUTS",
    "MATMUL_OUTPUTS",
    "OpSignature",
]


@dataclass(frozen=True)
class OpSignature:
    """One op of the domain: formal inputs and outputs (in order), attribute names and function overloads."""

    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: tuple[str, ...]
    overloads: tuple[str, ...] = ("",)

    def input_index(self, name: str) -> int:
        """Position of formal input ``name``."""
        return self.inputs.index(name)


MATMUL_INPUTS = (
    "X",
    "W",
    "in_scale",
    "scale",
    "bias",
    "ir_row_weight",
    "noise_bank",
    "noise_start",
    "noise_end",
    "out_gain",
)
"""X (..., K); W ([n_tiles,] rows, N) in ADC codes per DAC code; in_scale ([n_tiles,] 1, 1); scale
([n_tiles,] 1, N); bias (N,); ir_row_weight (rows, 1); inputs 6..8 are optional (the session's noise);
out_gain ([n_tiles,] 1, 1), the tiles' gains before the ADC, only with ``output_range: calibrated``."""
OUT_GAIN_INPUT = MATMUL_INPUTS.index("out_gain")
"""Position of the tiles' output gains (the noise inputs before it may be empty)."""
MATMUL_NOISE_INPUTS = MATMUL_INPUTS[6:9]
"""Inputs 6..8: where the per-MVM noise comes from when the caller feeds it (absent in the compiled file)."""
MATMUL_OUTPUTS = ("Y",)
MATMUL_ATTRIBUTES = (
    "seed",
    "dac_step",
    "dac_levels",
    "code_gain",
    "adc_step",
    "code_bound",
    "ir_drop",
    "ir_a_scale",
    "noise_k1",
    "noise_k2",
    "noise_std",
)
"""``seed`` of the in-graph RandomNormalLike and the fields of :class:`~anacompile.contract.specs.TileConstants`."""

CHIP_INPUTS = ("g_prog", "nu", "t_inference", "gdc_ref", "out_scale")
CHIP_OUTPUTS = ("W", "scale")
CHIP_ATTRIBUTES = (
    "seed",
    "significance",
    "inv_gain",
    "code_gain",
    "g_max_us",
    "t0_s",
    "q_coefficient",
    "q_exponent",
    "q_floor",
    "q_max",
    "two_t_read_s",
    "t_read_s",
)

ANALOG_MATMUL_SIGNATURE = OpSignature(
    ANALOG_MATMUL, MATMUL_INPUTS, MATMUL_OUTPUTS, MATMUL_ATTRIBUTES, ("", TILED, "fed", f"{TILED}_fed")
)
"""Overloads: ``""`` one tile, ``tiled`` several row tiles; ``_fed``: the noise is fed in input 6 (session).
The analog session's own model (never a file) adds ``conv.<layer>``: a convolution's body without patches, X
the conv's input (:mod:`anacompile.runtime.native_conv`)."""
CHIP_WEIGHTS_SIGNATURE = OpSignature(CHIP_WEIGHTS, CHIP_INPUTS, CHIP_OUTPUTS, CHIP_ATTRIBUTES)
