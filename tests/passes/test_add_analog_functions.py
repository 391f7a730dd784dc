"""AddAnalogFunctionsPass: the model-local functions of the analog ops, and the domain import."""

from __future__ import annotations

from anacompile import contract
from anacompile.mapping import SinglePairMapping
from anacompile.passes import (
    AddAnalogFunctionsPass,
    MapConductancesPass,
    MarkAnalogOpsPass,
    PartitionWeightsPass,
    ProgramChipPass,
    RewriteToAnalogOpsPass,
)
from tests._support.passes import PCM, STANDARD, assert_idempotent, mlp, op_counts, run_truthfully

M = SinglePairMapping()


def _rewritten(periphery=STANDARD):
    model = mlp()
    for p in (
        MarkAnalogOpsPass(),
        PartitionWeightsPass(periphery),
        MapConductancesPass(PCM, M),
        ProgramChipPass(PCM, M, periphery.drift_compensation),
        RewriteToAnalogOpsPass(PCM, M, periphery),
    ):
        p(model)
    return model


def test_adds_one_function_per_used_op():
    model = _rewritten()
    counts = op_counts(model)
    assert not model.functions
    p = AddAnalogFunctionsPass(STANDARD, STANDARD.drift_compensation)
    assert run_truthfully(p, model)
    assert op_counts(model) == counts  # functions only: the graph is the same
    assert sorted((f.name, f.overload) for f in model.functions.values()) == sorted(
        [
            (contract.ANALOG_MATMUL, ""),
            (contract.CHIP_WEIGHTS, ""),
        ]
    )
    assert model.opset_imports[contract.DOMAIN] == contract.DOMAIN_VERSION
    assert model.ir_version >= 8
    assert_idempotent(p, model)


def test_tiled_overload_needs_ir_version_10():
    p = STANDARD.replace(tile_rows=16)
    model = _rewritten(p)
    assert run_truthfully(AddAnalogFunctionsPass(p, p.drift_compensation), model)
    assert (contract.ANALOG_MATMUL, contract.TILED) in {(f.name, f.overload) for f in model.functions.values()}
    assert model.ir_version >= 10


def test_a_digital_model_gets_no_functions():
    model = mlp()
    assert not run_truthfully(AddAnalogFunctionsPass(STANDARD, STANDARD.drift_compensation), model)
    assert not model.functions and contract.DOMAIN not in model.opset_imports
