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

from anacompile.errors import ConfigError, UnsupportedModelError
from anacompile.model_io import ModelInput, load_proto
from anacompile.placement._evaluator import ConfigEvaluator
from anacompile.runtime.providers import resolve_providers

__all__ = ["analog_plan", "is_compiled", "plan_evaluator"]

PLAN_OPTIONS = ("seed", "periphery_overrides")
"""The options that hold for an already compiled model too (the experiment seed; the periphery keys its
sessions change): every other compile option would be dropped there, so it is refused."""


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
    the simulation form) into a temporary folder removed afterwards.

    Raises:
        ConfigError: ``model`` is compiled and ``compile_options`` set anything but :data:`PLAN_OPTIONS`.
    """
    from anacompile.model_io import model_file, model_label

    with model_file(model) as path:  # a path, or an in-memory ModelProto / onnx-ir Model written privately
        if is_compiled(path):
            dropped = [k for k, v in compile_options.items() if k not in PLAN_OPTIONS and v is not None]
            if dropped:
                raise ConfigError(
                    f"{', '.join(dropped)}: {model_label(model)} is compiled already, with its own device, "
                    "periphery and calibration; drop them (change periphery keys with --set), or give the "
                    "source model."
                )
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
    providers: str | list[str] | None,
    metric,
    data,
    chips: int,
    seed: int | None = None,
    compensation: str | None = None,
    progress=None,
) -> Iterator[ConfigEvaluator]:
    """The :class:`ConfigEvaluator` of ``model``'s all-analog plan (:func:`analog_plan`), on ``providers``
    (``metric`` ... ``progress``: the evaluator's).

    The providers are resolved first: one this onnxruntime lacks is a one-line ConfigError before anything is
    compiled (``ev.session.providers`` holds the resolved names, for the caller's other sessions).
    ``compile_options["periphery_overrides"]`` (``--set``) hold either way: a source model is compiled with
    them, and a compiled model's session applies them as ``evaluate`` does (``AnalogSession``'s
    ``periphery_overrides``; a key that changes the tiling is a one-line error asking for a recompile).
    """
    resolved = resolve_providers(providers)
    with analog_plan(model, compile_options) as (plan, compiled):
        overrides = (compile_options.get("periphery_overrides") or None) if compiled else None  # else compiled in
        ev = ConfigEvaluator(
            plan,
            metric,
            data,
            chips,
            seed=seed,
            compensation=compensation,
            progress=progress,
            providers=resolved,
            periphery_overrides=overrides,
        )
        yield ev
