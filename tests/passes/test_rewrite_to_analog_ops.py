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
from tests._support.devices import NOISELESS_DEVICE
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


def test_source_values_named_like_the_layers_tensors_are_renamed_not_clashing(tmp_path):
    """A Gemm named ``fc1`` with its bias ``fc1.bias`` (scikit-learn/onnx.helper naming) and a graph output
    ``fc2.scale``: the compiler's ``<layer>.<suffix>`` tensors meet neither (was: 'Initializer fc1.bias is
    already registered'); the output keeps its name and the noise-free chip equals the source."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from anacompile.compiler import compile_model

    rng = np.random.default_rng(0)
    inits = {
        "fc1.weight": rng.standard_normal((6, 5)).astype(np.float32),
        "fc1.bias": rng.standard_normal(5).astype(np.float32),
        "fc2.weight": rng.standard_normal((5, 3)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["fc1.out"], name="fc1"),
        helper.make_node("MatMul", ["fc1.out", "fc2.weight"], ["fc2.scale"], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor_value_info("fc2.scale", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(a, n) for n, a in inits.items()],
    )
    src = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    out = tmp_path / "m.analog.onnx"
    device = tmp_path / "d.yaml"
    device.write_text(NOISELESS_DEVICE)
    report = compile_model(src, out, device=device, periphery="ideal")
    names = [layer.name for layer in report.layers]
    assert names[0] == "fc1" and names[1] != "fc2" and all(layer.analog for layer in report.layers)
    proto = onnx.load(str(out))
    assert [o.name for o in proto.graph.output] == ["fc2.scale"]
    x = rng.standard_normal((4, 6)).astype(np.float32)
    run = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0] for p in (src, out)]
    np.testing.assert_allclose(run[1], run[0], rtol=1e-5, atol=1e-5)
