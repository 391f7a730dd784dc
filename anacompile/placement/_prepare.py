"""An all-analog compiled plan of a model (compiled into a temporary folder when given a source model)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from anacompile.errors import UnsupportedModelError
from anacompile.model_io import ModelInput, load_proto

__all__ = ["analog_plan", "is_compiled"]


def is_compiled(model: str | os.PathLike[str]) -> bool:
    """Whether ``model`` is an anacompile output (it carries a compile report)."""
    from anacompile.compiler import read_report

    try:
        read_report(load_proto(model))
    except UnsupportedModelError:
        return False
    return True


@contextlib.contextmanager
def analog_plan(model: ModelInput, compile_options: dict[str, Any]) -> Iterator[Path]:
    """Yield a compiled model with every analog-capable layer analog: ``model`` itself when compiled, else
    ``model`` compiled with ``compile_options`` (no placement, the simulation form) into a temporary folder
    removed afterwards."""
    from anacompile.model_io import model_file

    with model_file(model) as path:  # a path, or an in-memory ModelProto / onnx-ir Model written privately
        if is_compiled(path):
            yield path
            return
        from anacompile.compiler import compile_model

        skip = ("digital", "layer_strategies", "output", "force", "target")  # evaluated: the simulation form
        options = {k: v for k, v in compile_options.items() if k not in skip}
        with tempfile.TemporaryDirectory(prefix="anacompile-placement-") as tmp:
            out = Path(tmp) / "all_analog.onnx"
            compile_model(path, out, force=True, **options)
            yield out
