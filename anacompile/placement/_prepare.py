"""An all-analog compiled plan of a model (compiled into a temporary folder when given a source model), and the
:class:`~anacompile.placement._evaluator.ConfigEvaluator` on it that ``sensitivity`` and ``compile
--accuracy-budget`` share (:func:`plan_evaluator`)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from anacompile.errors import UnsupportedModelError
from anacompile.model_io import ModelInput, load_proto
from anacompile.placement._evaluator import ConfigEvaluator
from anacompile.runtime.providers import resolve_providers

__all__ = ["analog_plan", "is_compiled", "plan_evaluator"]


def is_compiled(model: str | os.PathLike[str]) -> bool:
    """Whether ``model`` is an anacompile output (it carries a compile report)."""
    from anacompile.compiler import read_report

    try:
        read_report(load_proto(model))
    except UnsupportedModelError:
        return False
    return True


@contextlib.contextmanager
def analog_plan(model: ModelInput, compile_options: dict[str, Any]) -> Iterator[tuple[Path, bool]]:
    """Yield a compiled model with every analog-capable layer analog, and whether ``model`` was compiled
    already: ``model`` itself when compiled, else ``model`` compiled with ``compile_options`` (no placement,
    the simulation form) into a temporary folder removed afterwards."""
    from anacompile.model_io import model_file

    with model_file(model) as path:  # a path, or an in-memory ModelProto / onnx-ir Model written privately
        if is_compiled(path):
            yield Path(path), True
            return
        from anacompile.compiler import compile_model

        skip = ("digital", "layer_strategies", "output", "force", "target")  # evaluated: the simulation form
        options = {k: v for k, v in compile_options.items() if k not in skip}
        with tempfile.TemporaryDirectory(prefix="anacompile-placement-") as tmp:
            out = Path(tmp) / "all_analog.onnx"
            compile_model(path, out, force=True, **options)
            yield out, False


@contextlib.contextmanager
def plan_evaluator(
    model: ModelInput,
    compile_options: dict[str, Any],
    metric,
    data,
    chips: int,
    *,
    seed: int | None = None,
    compensation: str | None = None,
    progress=None,
    providers: str | list[str] | None = None,
) -> Iterator[ConfigEvaluator]:
    """The :class:`ConfigEvaluator` of ``model``'s all-analog plan (:func:`analog_plan`), on ``providers``.

    The providers are resolved first: one this onnxruntime lacks is a one-line ConfigError before anything is
    compiled (``ev.session.providers`` holds the resolved names, for the caller's other sessions).
    ``compile_options["periphery_overrides"]`` (``--set``) hold either way: a source model is compiled with
    them, and a compiled model's session applies them as ``evaluate`` does (``AnalogSession``'s
    ``periphery_overrides``; a key that changes the tiling is a one-line error asking for a recompile).
    """
    resolved = resolve_providers(providers)
    with analog_plan(model, compile_options) as (plan, compiled):
        overrides = compile_options.get("periphery_overrides") if compiled else None  # compiled in otherwise
        yield ConfigEvaluator(
            plan,
            metric,
            data,
            chips,
            seed=seed,
            compensation=compensation,
            progress=progress,
            providers=resolved,
            periphery_overrides=overrides or None,
        )
