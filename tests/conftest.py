"""Shared fixtures: paths of the committed example models and small builders."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"


@pytest.fixture(scope="session")
def mlp_hwa() -> Path:
    """The noise-trained digits MLP (models/train_digits_mlp.py)."""
    return MODELS / "digits_mlp_hwa.onnx"


@pytest.fixture(scope="session")
def mlp_fp() -> Path:
    """The FP32-trained digits MLP (models/train_digits_mlp.py)."""
    return MODELS / "digits_mlp_fp.onnx"


@pytest.fixture(scope="session")
def compiled_mlp(tmp_path_factory, mlp_hwa) -> Path:
    """The noise-trained MLP compiled once with the standard periphery and digits calibration."""
    from anacompile.compiler import compile_model

    out = tmp_path_factory.mktemp("compiled") / "mlp.analog.onnx"
    compile_model(mlp_hwa, out, calibration="digits")
    return out
