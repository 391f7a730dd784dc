"""RewriteToAnalogOpsPass: every analog layer becomes AnalogChipWeights + AnalogMatMul (exact graph)."""

from __future__ import annotations

import numpy as np

from anacompile import contract
from anacompile.mapping import SinglePairMapping
from anacompile.passes import (
    MapConductancesPass,
    MarkAnalogOpsPass,
    PartitionWeightsPass,
    ProgramChipPass,
    RewriteToAnalogOpsPass,
)
from tests._support.passes import PCM, STANDARD, assert_idempotent, count, mlp, op_counts, run_truthfully

M = SinglePairMapping()


def _programmed(periphery=STANDARD):
    model = mlp()
    for p in (
        MarkAnalogOpsPass(),
        PartitionWeightsPass(periphery),
        MapConductancesPass(PCM, M),
        ProgramChipPass(PCM, M, periphery.drift_compensation),
    ):
        p(model)
    return model


def test_expected_graph():
    model = _programmed()
    before = op_counts(model)
    assert before == {("", "MatMul"): 2, ("", "Relu"): 1, ("", "Gemm"): 1, ("", "Transpose"): 1}
    assert run_truthfully(RewriteToAnalogOpsPass(PCM, M, STANDARD), model)
    after = op_counts(model)
    assert after[(contract.DOMAIN, contract.ANALOG_MATMUL)] == 2
    assert after[(contract.DOMAIN, contract.CHIP_WEIGHTS)] == 2
    assert count(model, "Gemm") == 0 and count(model, "MatMul") == 1  # the Gram product stays digital
    assert count(model, "Relu") == 1 and count(model, "Transpose") == 1
    assert "W1" not in model.graph.initializers and "W2" not in model.graph.initializers
    assert contract.T_INFERENCE in [v.name for v in model.graph.inputs]
    assert [v.name for v in model.graph.outputs] == ["y", "gram"]
    # the programmed state is stored as initializers of each layer
    for layer in ("fc1", "fc2"):
        names = [n for n in model.graph.initializers if n.startswith(f"{layer}.")]
        assert names, layer
    g_prog = [v for n, v in model.graph.initializers.items() if n.endswith("g_prog")]
    assert len(g_prog) == 2 and all(v.const_value.numpy().dtype == np.float32 for v in g_prog)
    assert_idempotent(RewriteToAnalogOpsPass(PCM, M, STANDARD), model)


def test_tiled_layers_use_the_tiled_overload():
    model = _programmed(STANDARD.replace(tile_rows=16))
    RewriteToAnalogOpsPass(PCM, M, STANDARD.replace(tile_rows=16))(model)
    mm = [n for n in model.graph if n.op_type == contract.ANALOG_MATMUL]
    assert len(mm) == 2 and {n.overload for n in mm} == {contract.TILED}
