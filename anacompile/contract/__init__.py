"""The contract between the compiler and the runtime: everything a compiled model's graph means.

This package alone defines the domain ``ai.anacompile`` and its version, the op names and signatures, the
initializer-name suffixes, the metadata keys, the typed per-layer specs and tile constants, and the compile
report. The compiler writes it, the runtime and ``inspect`` read it. It imports nothing of anacompile but
:mod:`anacompile.errors` and the version.
"""

from __future__ import annotations

from anacompile.contract.names import (
    ANALOG_MATMUL,
    BIAS,
    CHIP_WEIGHTS,
    COL_SCALE,
    DOMAIN,
    G_PROG,
    G_TARGET,
    GDC_REF,
    IN_RANGE,
    IN_SCALE,
    IR_WEIGHT,
    META_CHIP,
    META_REPORT,
    META_VERSION,
    NOISE,
    NOISE_BANK,
    NOISE_END,
    NOISE_START,
    NU,
    OUT_SCALE,
    SCALE,
    T_INFERENCE,
    TILE_INPUTS,
    TILED,
    W_EFF,
    layer_tensor,
)
from anacompile.contract.report import (
    REPORT_SCHEMA_VERSION,
    CompileReport,
    LayerReport,
    read_report,
)
from anacompile.contract.signatures import (
    ANALOG_MATMUL_SIGNATURE,
    CHIP_ATTRIBUTES,
    CHIP_INPUTS,
    CHIP_OUTPUTS,
    CHIP_WEIGHTS_SIGNATURE,
    MATMUL_ATTRIBUTES,
    MATMUL_INPUTS,
    MATMUL_NOISE_INPUTS,
    MATMUL_OUTPUTS,
    OpSignature,
)
from anacompile.contract.specs import (
    PLAN_RANK_ONE_TILE,
    PLAN_RANK_TILED,
    LayerSpec,
    TileConstants,
)
from anacompile.contract.versions import (
    DOMAIN_VERSION,
    DOMAIN_VERSIONS,
    check_domain_version,
)

__all__ = [
    "ANALOG_MATMUL",
    "ANALOG_MATMUL_SIGNATURE",
    "BIAS",
    "CHIP_ATTRIBUTES",
    "CHIP_INPUTS",
    "CHIP_OUTPUTS",
    "CHIP_WEIGHTS",
    "CHIP_WEIGHTS_SIGNATURE",
    "COL_SCALE",
    "CompileReport",
    "DOMAIN",
    "DOMAIN_VERSION",
    "DOMAIN_VERSIONS",
    "GDC_REF",
    "G_PROG",
    "G_TARGET",
    "IN_RANGE",
    "IN_SCALE",
    "IR_WEIGHT",
    "LayerReport",
    "LayerSpec",
    "MATMUL_ATTRIBUTES",
    "MATMUL_INPUTS",
    "MATMUL_NOISE_INPUTS",
    "MATMUL_OUTPUTS",
    "META_CHIP",
    "META_REPORT",
    "META_VERSION",
    "NOISE",
    "NOISE_BANK",
    "NOISE_END",
    "NOISE_START",
    "NU",
    "OUT_SCALE",
    "OpSignature",
    "PLAN_RANK_ONE_TILE",
    "PLAN_RANK_TILED",
    "REPORT_SCHEMA_VERSION",
    "SCALE",
    "TILED",
    "TILE_INPUTS",
    "T_INFERENCE",
    "TileConstants",
    "W_EFF",
    "check_domain_version",
    "layer_tensor",
    "read_report",
]
