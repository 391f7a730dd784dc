"""The contract between the compiler and the runtime: everything a compiled model's graph means.

This package alone defines the domain ``ai.anacompile`` and its version, the op names and signatures, the
initializer-name suffixes, the metadata keys, the typed per-layer specs and tile constants, and the compile
report. The compiler writes it, the runtime and ``inspect`` read it. It imports nothing of anacompile but
:mod:`anacompile.errors` and the version.
"""

from __future__ import annotations

from anacompile.contract.names import *  # noqa: F403
from anacompile.contract.names import __all__ as _names
from anacompile.contract.report import REPORT_SCHEMA_VERSION, CompileReport, LayerReport, read_report
from anacompile.contract.signatures import *  # noqa: F403
from anacompile.contract.signatures import __all__ as _signatures
from anacompile.contract.specs import PLAN_RANK_ONE_TILE, PLAN_RANK_TILED, LayerSpec, TileConstants
from anacompile.contract.versions import DOMAIN_VERSION, DOMAIN_VERSIONS, check_domain_version

__all__ = [
    *_names,
    *_signatures,
    "DOMAIN_VERSION",
    "DOMAIN_VERSIONS",
    "PLAN_RANK_ONE_TILE",
    "PLAN_RANK_TILED",
    "REPORT_SCHEMA_VERSION",
    "CompileReport",
    "LayerReport",
    "LayerSpec",
    "TileConstants",
    "check_domain_version",
    "read_report",
]
