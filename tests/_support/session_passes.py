"""Compiled models and fresh session layers for the session-pass tests (tests/runtime/test_session_pass_*.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx
import onnx_ir as ir

from anacompile.compiler import compile_model
from anacompile.contract import read_report
from anacompile.crossbar.periphery import Periphery
from anacompile.runtime.session import _extract_layers

MODELS = Path(__file__).resolve().parents[2] / "models"


def compiled(folder: Path, name: str, **options) -> Path:
    """models/<name>.onnx compiled (digits calibration, seed 0) into ``folder``."""
    tag = hashlib.sha256(repr(sorted(options.items())).encode()).hexdigest()[:8]
    out = folder / f"{name}.{tag}.analog.onnx"  # one file per model and options
    if not out.exists():
        compile_model(MODELS / f"{name}.onnx", out, calibration="digits", seed=0, **options)
    return out


def loaded(path: Path) -> tuple[onnx.ModelProto, ir.Model, list, Periphery]:
    """(protobuf, onnx-ir model, fresh session layers, stored periphery) of a compiled file."""
    proto = onnx.load(str(path))
    return (
        proto,
        ir.serde.deserialize_model(proto),
        _extract_layers(proto),
        Periphery.from_dict(read_report(proto).periphery),
    )
