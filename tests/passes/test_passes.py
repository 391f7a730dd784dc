"""Compiler passes: before/expected op counts, ``modified`` and idempotence."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from anacompile import ops
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
from anacompile.passes._layer import DIGITAL_KEY, LAYER_KEY, analog_layers
from tests._support.passes import PCM, STANDARD
from tests._support.passes import count as _count
from tests._support.passes import mlp as before


def test_mark_analog_ops_marks_constant_weights_and_explains_the_rest():
    model = before()
    result = MarkAnalogOpsPass()(model)
    assert result.modified
    marked = {n.name: n.meta.get(LAYER_KEY) for n in model.graph if LAYER_KEY in n.meta}
    assert set(marked) == {"fc1", "fc2"}
    gram = next(n for n in model.graph if n.name == "gram")
    assert "activation x activation" in gram.meta[DIGITAL_KEY]
    # Gemm: W = alpha * W2^T, bias = beta * b2
    fc2 = marked["fc2"]
    w2 = model.graph.initializers["W2"].const_value.numpy()
    np.testing.assert_allclose(fc2.weight, 0.5 * w2.T, rtol=1e-6)
    np.testing.assert_allclose(fc2.bias, 2.0 * model.graph.initializers["b2"].const_value.numpy(), rtol=1e-6)
    assert not MarkAnalogOpsPass()(model).modified  # idempotent


@pytest.mark.parametrize(
    ("k", "tile_rows", "n_tiles", "rows"),
    [(64, 512, 1, 64), (512, 512, 1, 512), (513, 512, 2, 512), (1024, 512, 2, 512), (64, 16, 4, 16), (1, 512, 1, 1)],
)
def test_partition_weights(k, tile_rows, n_tiles, rows):
    model = before(k=k)
    MarkAnalogOpsPass()(model)
    p = STANDARD.replace(tile_rows=tile_rows, tile_cols=16)
    assert PartitionWeightsPass(p)(model).modified
    plan = dict((n.name, pl) for n, pl in analog_layers(model))["fc1"]
    assert (plan.n_tiles, plan.tile_rows, plan.n_col_tiles) == (n_tiles, rows, 2)
    assert plan.tiled_weight().shape == (n_tiles, rows, 32)
    np.testing.assert_array_equal(plan.tiled_weight().reshape(-1, 32)[:k], plan.weight)
    assert not PartitionWeightsPass(p)(model).modified


def _compile(model: ir.Model, periphery=STANDARD) -> ir.Model:
    m = SinglePairMapping()
    for p in (
        MarkAnalogOpsPass(),
        PartitionWeightsPass(periphery),
        MapConductancesPass(PCM, m),
        ProgramChipPass(PCM, m, periphery.drift_compensation),
        RewriteToAnalogOpsPass(PCM, m, periphery),
        AddAnalogFunctionsPass(periphery, periphery.drift_compensation),
        VerifyAnalogModelPass(),
    ):
        p(model)
    return model


def test_rewrite_produces_expected_graph():
    model = _compile(before())
    assert _count(model, ops.ANALOG_MATMUL, ops.DOMAIN) == 2
    assert _count(model, ops.CHIP_WEIGHTS, ops.DOMAIN) == 2
    assert _count(model, "Gemm") == 0
    assert _count(model, "MatMul") == 1  # the activation x activation product stays digital
    assert {f.name for f in model.functions.values()} == {ops.ANALOG_MATMUL, ops.CHIP_WEIGHTS}
    assert model.opset_imports[ops.DOMAIN] == ops.DOMAIN_VERSION
    assert "W1" not in model.graph.initializers and "W2" not in model.graph.initializers
    assert ops.T_INFERENCE in [v.name for v in model.graph.inputs]
    assert [v.name for v in model.graph.outputs] == ["y", "gram"]
    # a second run of every pass changes nothing
    m = SinglePairMapping()
    for p in (
        MarkAnalogOpsPass(),
        PartitionWeightsPass(STANDARD),
        MapConductancesPass(PCM, m),
        RewriteToAnalogOpsPass(PCM, m, STANDARD),
        AddAnalogFunctionsPass(STANDARD, STANDARD.drift_compensation),
    ):
        assert not p(model).modified


def test_compiled_model_passes_full_checker_and_runs_in_stock_onnxruntime():
    import onnxruntime as ort

    proto = ir.serde.serialize_model(_compile(before()))
    onnx.checker.check_model(proto, full_check=True)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((7, 64)).astype(np.float32)
    y, gram = sess.run(None, {"x": x})
    assert y.shape == (7, 10) and gram.shape == (7, 7)
    # drift acts at t: over 60 runs each (every run draws its noise afresh), the mean output at 1 y differs from
    # the mean at t = 0 by many standard errors of the difference (the in-graph noise alone would give ~1 SE)
    runs = {
        t: np.stack([sess.run(None, {"x": x, ops.T_INFERENCE: np.array(t, np.float32)})[0] for _ in range(60)])
        for t in (0.0, 3.15e7)
    }
    diff = runs[3.15e7].mean(axis=0) - runs[0.0].mean(axis=0)
    se = np.sqrt(runs[3.15e7].var(axis=0, ddof=1) / 60 + runs[0.0].var(axis=0, ddof=1) / 60)
    assert y.shape == runs[0.0].shape[1:]
    z = float(np.sqrt(np.mean((diff / se) ** 2)))
    assert z > 5, z  # rms z over the 70 outputs
