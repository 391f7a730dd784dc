"""MarkAnalogOpsPass: which ops become analog layers, their weights, and why the rest stay digital."""

from __future__ import annotations

import numpy as np

from anacompile.passes import MarkAnalogOpsPass
from anacompile.passes._layer import DIGITAL_KEY, LAYER_KEY
from tests._support.passes import assert_idempotent, mlp, op_counts, plans, run_truthfully


def test_marks_constant_weight_ops_and_leaves_the_graph_unchanged():
    model = mlp()
    counts = op_counts(model)
    assert run_truthfully(MarkAnalogOpsPass(), model)
    assert op_counts(model) == counts  # analysis only: no node added or removed
    assert set(plans(model)) == {"fc1", "fc2"}
    fc1, fc2 = plans(model)["fc1"], plans(model)["fc2"]
    np.testing.assert_array_equal(fc1.weight, model.graph.initializers["W1"].const_value.numpy())
    assert fc1.bias is None and fc1.source_op == "MatMul" and fc1.input.name == "x"
    w2 = model.graph.initializers["W2"].const_value.numpy()
    np.testing.assert_allclose(fc2.weight, 0.5 * w2.T, rtol=1e-6)  # Gemm: alpha W^T
    np.testing.assert_allclose(fc2.bias, 2.0 * model.graph.initializers["b2"].const_value.numpy(), rtol=1e-6)
    assert fc2.input.name == "r"
    digital = {n.name: n.meta[DIGITAL_KEY] for n in model.graph if DIGITAL_KEY in n.meta}
    assert set(digital) == {"gram"} and "activation x activation" in digital["gram"]
    assert sum(LAYER_KEY in n.meta for n in model.graph) == 2
    assert_idempotent(MarkAnalogOpsPass(), model)


def test_a_model_without_weights_is_not_modified():
    model = mlp()
    for name in ("fc1", "fc2"):  # kept digital beforehand (as a placement does): nothing left to mark
        node = next(n for n in model.graph if n.name == name)
        node.meta[DIGITAL_KEY] = "kept digital by the test"
    MarkAnalogOpsPass()(model)
    assert not plans(model)
    assert_idempotent(MarkAnalogOpsPass(), model)
