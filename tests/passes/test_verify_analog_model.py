"""VerifyAnalogModelPass: the full ONNX checker on the compiled model; never modifies it."""

from __future__ import annotations

import pytest

from anacompile.errors import UnsupportedModelError
from anacompile.mapping import SinglePairMapping
from anacompile.passes import (
    AddAnalogFunctionsPass,
    MapConductancesPass,
    MarkAnalogOpsPass,
    PartitionWeightsPass,
    ProgramChipPass,
    RewriteToAnalogOpsPass,
    VerifyAnalogModelPass,
)
from tests._support.passes import PCM, STANDARD, mlp, run_truthfully

M = SinglePairMapping()


def _compiled(with_functions: bool = True):
    model = mlp()
    for p in (
        MarkAnalogOpsPass(),
        PartitionWeightsPass(STANDARD),
        MapConductancesPass(PCM, M),
        ProgramChipPass(PCM, M, STANDARD.drift_compensation),
        RewriteToAnalogOpsPass(PCM, M, STANDARD),
        *([AddAnalogFunctionsPass(STANDARD, STANDARD.drift_compensation)] if with_functions else []),
    ):
        p(model)
    return model


def test_a_compiled_model_passes_unchanged(tmp_path):
    model = _compiled()
    assert not run_truthfully(VerifyAnalogModelPass(), model)
    import onnx_ir as ir

    path = tmp_path / "m.onnx"
    ir.save(model, str(path))
    assert not run_truthfully(VerifyAnalogModelPass(path), model)  # by path: the saved file


def test_a_broken_model_fails_in_one_line():
    model = _compiled()
    name = next(n for n in model.graph.initializers if n.endswith("g_prog"))
    model.graph.initializers.pop(name)  # a node now reads a tensor nothing defines
    with pytest.raises(UnsupportedModelError, match="fails the ONNX checker"):
        VerifyAnalogModelPass()(model)
