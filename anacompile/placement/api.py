"""``anacompile.compile_model``: the compiler, or with ``accuracy_budget=`` the placement search.

The API layer's entry point (``anacompile/__init__.py`` points here), so the compiler never imports the
placement package above it: without a budget this is :func:`anacompile.compiler.compile_model` unchanged.
"""

from __future__ import annotations

import os
from typing import Any

from anacompile.errors import ConfigError

__all__ = ["compile_model"]


def compile_model(
    model,
    output: str | os.PathLike[str] | None = None,
    *,
    accuracy_budget: float | None = None,
    at: str | float = "1d",
    metric=None,
    data: str | os.PathLike[str] | None = None,
    chips: int = 3,
    verify_chips: int = 8,
    confidence: float = 0.95,
    placement_path: str | os.PathLike[str] | None = None,
    plot: str | os.PathLike[str] | None = None,
    progress=None,
    providers: str | list[str] | None = None,
    **options: Any,
):
    """Compile ``model`` (:func:`anacompile.compiler.compile_model`, every keyword of it works here).

    With ``accuracy_budget`` (e.g. ``0.02``) the placement search (:func:`anacompile.placement.search.place`)
    chooses per layer digital or an analog strategy so that ``metric`` (a built-in name with ``data``,
    ``"FILE.py:FUNCTION"``, or a callable ``metric(run) -> float``) at time ``at`` stays within the budget
    of the FP32 model's; ``calibration=`` calibrates the periphery as for any compile. ``chips`` search chips,
    ``verify_chips`` fresh chips per verification, whose lower ``confidence`` bound must clear the target.
    The placement JSON is written beside the output (``placement_path``), replayable with ``digital="@placement.json"``.
    ``providers`` (``"cuda"``): the onnxruntime execution providers of the search's sessions.

    Returns:
        The compile report; with a budget, the report of the placed model with ``report.placement`` (the
        :class:`~anacompile.placement.search.PlacementResult`).
    """
    if accuracy_budget is None:
        if metric is not None:
            raise ConfigError("metric= is used by the placement search: pass accuracy_budget= too (e.g. 0.02).")
        if providers is not None:
            raise ConfigError("providers= runs the placement search's sessions: pass accuracy_budget= too, or drop it.")
        from anacompile.compiler import compile_model as plain

        return plain(model, output, **options)
    from anacompile.compiler import read_report
    from anacompile.model_io import is_in_memory, load_proto, model_file, model_label
    from anacompile.placement.search import place

    if is_in_memory(model):  # the search compiles by path: the source through a private folder
        import tempfile
        from pathlib import Path

        import onnx
        import onnx_ir as ir

        with model_file(model) as path, tempfile.TemporaryDirectory(prefix="anacompile-place-") as folder:
            out = output if output is not None else Path(folder) / "model.analog.onnx"
            if output is None and placement_path is None:
                placement_path = Path(folder) / "model.placement.json"
            report = compile_model(
                path,
                out,
                accuracy_budget=accuracy_budget,
                at=at,
                metric=metric,
                data=data,
                chips=chips,
                verify_chips=verify_chips,
                confidence=confidence,
                placement_path=placement_path,
                plot=plot,
                progress=progress,
                providers=providers,
                **options,
            )
            report.source = model_label(model)
            if output is not None:
                return report
            compiled = onnx.load(str(out))
            if isinstance(model, ir.Model):
                compiled = ir.from_proto(compiled)
        report.output = ""
        return compiled, report

    result = place(
        model,
        output,
        accuracy_budget=accuracy_budget,
        at=at,
        metric=metric,
        data=data,
        chips=chips,
        verify_chips=verify_chips,
        confidence=confidence,
        placement_path=placement_path,
        plot=plot,
        progress=progress,
        providers=providers,
        **options,
    )
    report = read_report(load_proto(result.output))
    report.output = result.output
    report.placement = result
    return report
