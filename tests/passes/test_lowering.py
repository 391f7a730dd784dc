"""The op-lowering registry: one registry, one key per op for planning and emitting, explicit registration."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from anacompile import contract
from anacompile.errors import UnsupportedModelError
from anacompile.mapping import SinglePairMapping
from anacompile.passes import (
    MapConductancesPass,
    MarkAnalogOpsPass,
    PartitionWeightsPass,
    ProgramChipPass,
    RewriteToAnalogOpsPass,
    conv,
    matmul,
    recurrent,
)
from anacompile.passes._layer import DIGITAL_KEY, LAYER_KEY
from anacompile.passes.lowering import Lowering, LoweringRegistry
from anacompile.passes.op_registry import LOWERINGS
from tests._support.passes import PCM, STANDARD, count, mlp

PACKAGE = Path(__file__).resolve().parents[2] / "anacompile"


def test_the_registry_lists_every_analog_capable_op_once():
    keys = [lowering.key for lowering in LOWERINGS]
    assert sorted(keys) == sorted(("", op) for op in ("MatMul", "Gemm", "Conv", "ConvTranspose", "LSTM", "GRU", "RNN"))
    assert len(set(keys)) == len(keys)
    assert {lw.plan for lw in LOWERINGS if lw.op_type in ("Conv", "ConvTranspose")} == {conv.plan_conv}
    assert {lw.emit for lw in LOWERINGS if lw.op_type in ("LSTM", "GRU", "RNN")} == {recurrent.emit_recurrent}


def test_a_second_lowering_for_one_op_is_refused():
    registry = LoweringRegistry(matmul.LOWERINGS)
    with pytest.raises(ValueError, match="MatMul"):
        registry.register(Lowering("MatMul", conv.plan_conv, conv.emit_conv))


def test_plan_and_rewrite_use_the_registry_they_are_given():
    only_matmul = LoweringRegistry([lw for lw in matmul.LOWERINGS if lw.op_type == "MatMul"])
    model = mlp()
    MarkAnalogOpsPass(lowerings=only_matmul)(model)
    fc1, fc2 = (n for n in model.graph if n.name in ("fc1", "fc2"))
    assert LAYER_KEY in fc1.meta
    assert LAYER_KEY not in fc2.meta and DIGITAL_KEY not in fc2.meta  # no lowering: the Gemm is left as it is
    m = SinglePairMapping()
    for p in (
        PartitionWeightsPass(STANDARD),
        MapConductancesPass(PCM, m),
        ProgramChipPass(PCM, m, STANDARD.drift_compensation),
    ):
        p(model)
    RewriteToAnalogOpsPass(PCM, m, STANDARD, lowerings=only_matmul)(model)
    assert count(model, contract.ANALOG_MATMUL, contract.DOMAIN) == 1 and count(model, "Gemm") == 1


def test_rewriting_with_a_registry_that_lacks_a_planned_op_is_one_clear_error():
    model = mlp()
    m = SinglePairMapping()
    for p in (MarkAnalogOpsPass(), PartitionWeightsPass(STANDARD), MapConductancesPass(PCM, m)):
        p(model)
    ProgramChipPass(PCM, m, STANDARD.drift_compensation)(model)
    with pytest.raises(UnsupportedModelError, match=r"'fc2'.*Gemm.*no lowering"):
        RewriteToAnalogOpsPass(PCM, m, STANDARD, lowerings=LoweringRegistry(matmul.LOWERINGS[:1]))(model)


def _private_imports() -> list[str]:
    """``from anacompile.x import _name`` anywhere in the package: a private helper used across modules."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("anacompile"):
                found += [
                    f"{path.relative_to(PACKAGE.parent)}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    return found


def test_no_module_imports_a_private_helper_of_another():
    assert _private_imports() == []


def test_no_op_module_writes_into_a_registry_at_import():
    """Module-level ``X[key] = ...`` (the old registration by import side effect) is found by the check."""
    offenders = []
    for path in sorted((PACKAGE / "passes").glob("*.py")):
        for stmt in ast.parse(path.read_text(encoding="utf-8")).body:
            for target in getattr(stmt, "targets", []) if isinstance(stmt, ast.Assign) else []:
                if isinstance(target, ast.Subscript):
                    offenders.append(f"{path.name}:{stmt.lineno}")
            if isinstance(stmt, ast.For):
                offenders += [
                    f"{path.name}:{s.lineno}"
                    for s in ast.walk(stmt)
                    if isinstance(s, ast.Assign) and any(isinstance(t, ast.Subscript) for t in s.targets)
                ]
    assert offenders == []
    # the check sees the old form
    old = ast.parse('HANDLERS[("", "Conv")] = plan_conv')
    assert isinstance(old.body[0].targets[0], ast.Subscript)
