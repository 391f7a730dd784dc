"""Fine-tuning finds its analog layers with the compiler's own planning pipeline (no torch needed)."""

from __future__ import annotations

import onnx
import pytest

from anacompile.compiler import compile_model
from tests.conftest import MODELS


@pytest.mark.parametrize("name", ["digits_cnn_fp.onnx", "digits_lstm_fp.onnx"])
def test_finetune_plans_layers_with_the_planning_pipeline(name, monkeypatch):
    """``analog_layer_names`` runs :func:`planning_pipeline` (one definition of the planning passes, as
    ``compile`` and ``optimize`` run it) and finds exactly the layers the compiled report maps."""
    import anacompile.passes.pipeline as pipeline
    from anacompile.finetune.train import analog_layer_names

    calls: list[str] = []
    real = pipeline.planning_pipeline

    def spy(*args, **kwargs):
        calls.append("planning_pipeline")
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "planning_pipeline", spy)
    proto = onnx.load(str(MODELS / name))
    layers, _ = analog_layer_names(proto, 512)
    assert calls == ["planning_pipeline"]
    _, report = compile_model(proto)
    assert sorted(n for uses in layers.values() for n, _ in uses) == sorted(r.name for r in report.layers if r.analog)
