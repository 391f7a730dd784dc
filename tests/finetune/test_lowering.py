"""The ONNX -> torch lowering computes what onnxruntime computes, and exports the same graph back."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

torch = pytest.importorskip("torch", reason="the finetune tests need the train extra (torch==2.13.0)")

from anacompile.errors import UnsupportedModelError  # noqa: E402
from anacompile.finetune.lowering import OnnxModule, supported_ops  # noqa: E402
from tests.conftest import MODELS  # noqa: E402

SHAPES = {"mlp": (64,), "cnn": (1, 8, 8), "lstm": (8, 8), "transformer": (8, 8)}


def _ort(proto: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def _torch(proto: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    module = OnnxModule(proto).eval()
    with torch.no_grad():
        return [o.numpy() for o in module(**{k: torch.from_numpy(v) for k, v in feeds.items()})]


@pytest.mark.parametrize("variant", ["fp", "hwa"])
@pytest.mark.parametrize("name", sorted(SHAPES))
def test_example_models_match_onnxruntime(name, variant):
    proto = onnx.load(MODELS / f"digits_{name}_{variant}.onnx")
    x = np.random.default_rng(0).uniform(0, 1, (33, *SHAPES[name])).astype(np.float32)
    (ref,), (got,) = _ort(proto, {"input": x}), _torch(proto, {"input": x})
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=2e-5)


def test_export_without_training_is_the_same_model():
    proto = onnx.load(MODELS / "digits_cnn_fp.onnx")
    exported = OnnxModule(proto).export()
    assert exported.SerializeToString() == proto.SerializeToString()


def test_export_writes_changed_weights_into_the_same_graph():
    proto = onnx.load(MODELS / "digits_lstm_fp.onnx")
    module = OnnxModule(proto)
    with torch.no_grad():
        for _, p in module.named_onnx_parameters():
            p.mul_(0.5)
    out = module.export()
    onnx.checker.check_model(out, full_check=True)
    assert [n.SerializeToString() for n in out.graph.node] == [n.SerializeToString() for n in proto.graph.node]
    assert out.graph.input == proto.graph.input and out.graph.output == proto.graph.output
    assert out.opset_import == proto.opset_import
    old = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    for init in out.graph.initializer:
        np.testing.assert_array_equal(numpy_helper.to_array(init), old[init.name] * np.float32(0.5))


def _model(nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def _rand(rng, *shape):
    return rng.normal(size=shape).astype(np.float32)


def _recurrent_case(op, direction, **attrs):
    rng = np.random.default_rng(1)
    hidden, gates = 5, {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    n_dir = 2 if direction == "bidirectional" else 1
    w = numpy_helper.from_array(_rand(rng, n_dir, gates * hidden, 3) * 0.5, "W")
    r = numpy_helper.from_array(_rand(rng, n_dir, gates * hidden, hidden) * 0.5, "R")
    b = numpy_helper.from_array(_rand(rng, n_dir, 2 * gates * hidden) * 0.5, "B")
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    node = helper.make_node(op, ["X", "W", "R", "B"], outs, hidden_size=hidden, direction=direction, **attrs)
    proto = _model([node], [_vi("X", [4, "B", 3])], [_vi(o, None) for o in outs], [w, r, b])
    return proto, {"X": _rand(rng, 4, 6, 3)}


def _conv_transpose_case():
    rng = np.random.default_rng(2)
    w = numpy_helper.from_array(_rand(rng, 3, 4, 3, 3), "W")
    node = helper.make_node(
        "ConvTranspose", ["X", "W"], ["Y"], strides=[2, 2], pads=[1, 0, 1, 1], output_padding=[1, 0]
    )
    return _model([node], [_vi("X", [2, 3, 5, 5])], [_vi("Y", None)], [w]), {"X": _rand(rng, 2, 3, 5, 5)}


def _grouped_conv_case():
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(_rand(rng, 6, 2, 3, 3), "W")
    b = numpy_helper.from_array(_rand(rng, 6), "b")
    node = helper.make_node("Conv", ["X", "W", "b"], ["Y"], group=2, auto_pad="SAME_UPPER", strides=[2, 2])
    return _model([node], [_vi("X", [2, 4, 7, 7])], [_vi("Y", None)], [w, b]), {"X": _rand(rng, 2, 4, 7, 7)}


def _pool_case():
    rng = np.random.default_rng(4)
    nodes = [
        helper.make_node("AveragePool", ["X"], ["A"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("MaxPool", ["X"], ["M"], kernel_shape=[2, 2], pads=[0, 0, 1, 1], ceil_mode=1),
        helper.make_node("GlobalAveragePool", ["X"], ["G"]),
    ]
    return _model(nodes, [_vi("X", [2, 3, 6, 6])], [_vi(o, None) for o in "AMG"]), {"X": _rand(rng, 2, 3, 6, 6)}


def _shape_ops_case():
    rng = np.random.default_rng(5)
    ints = [
        numpy_helper.from_array(np.array(v, np.int64), n)
        for n, v in [
            ("starts", [3, 0]),
            ("ends", [-10, 4]),
            ("axes", [1, 2]),
            ("steps", [-1, 2]),
            ("ax0", [0]),
            ("split", [1, 3]),
        ]
    ]
    nodes = [
        helper.make_node("Slice", ["X", "starts", "ends", "axes", "steps"], ["S"]),
        helper.make_node("Shape", ["X"], ["shape"]),
        helper.make_node("Gather", ["shape", "ax0"], ["n"]),
        helper.make_node("Transpose", ["X"], ["T"], perm=[0, 2, 1]),
        helper.make_node("Split", ["T", "split"], ["P1", "P2"], axis=1),
        helper.make_node("Concat", ["P2", "P1"], ["C"], axis=1),
        helper.make_node("ReduceMean", ["C"], ["R"], axes=[2], keepdims=0),
        helper.make_node("Unsqueeze", ["R", "ax0"], ["U"]),
        helper.make_node("LayerNormalization", ["X", "lns"], ["L"], axis=-1, epsilon=1e-5),
        helper.make_node("Erf", ["L"], ["E"]),
        helper.make_node("Softmax", ["E"], ["Y"], axis=1),
    ]
    lns = numpy_helper.from_array(_rand(rng, 4), "lns")
    outs = [_vi("S", None), _vi("n", None, TensorProto.INT64), _vi("U", None), _vi("Y", None)]
    return _model(nodes, [_vi("X", [2, 5, 4])], outs, [*ints, lns]), {"X": _rand(rng, 2, 5, 4)}


def _opset11_case():
    rng = np.random.default_rng(6)
    bounds = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("lo", -0.5), ("hi", 0.5))]
    nodes = [
        helper.make_node("Softmax", ["X"], ["Y"], axis=1),
        helper.make_node("Clip", ["X", "lo", "hi"], ["C"]),
        helper.make_node("Unsqueeze", ["X"], ["U"], axes=[0]),
        helper.make_node("HardSigmoid", ["X"], ["H"]),
    ]
    outs = [_vi(o, None) for o in "YCUH"]
    return _model(nodes, [_vi("X", [2, 3, 4])], outs, bounds, opset=11), {"X": _rand(rng, 2, 3, 4)}


def _opset9_case():
    rng = np.random.default_rng(7)
    nodes = [
        helper.make_node("Clip", ["X"], ["C"], min=-0.5, max=0.5),
        helper.make_node("Slice", ["X"], ["S"], starts=[1], ends=[3], axes=[2]),
        helper.make_node("Squeeze", ["S"], ["Q"], axes=[0]),
    ]
    return _model(nodes, [_vi("X", [1, 3, 4])], [_vi("C", None), _vi("Q", None)], opset=9), {"X": _rand(rng, 1, 3, 4)}


CASES = {
    "lstm_bidirectional": lambda: _recurrent_case("LSTM", "bidirectional"),
    "lstm_reverse": lambda: _recurrent_case("LSTM", "reverse"),
    "gru": lambda: _recurrent_case("GRU", "forward"),
    "gru_linear_before_reset_bidirectional": lambda: _recurrent_case("GRU", "bidirectional", linear_before_reset=1),
    "rnn": lambda: _recurrent_case("RNN", "forward"),
    "conv_transpose": _conv_transpose_case,
    "grouped_conv_same_upper": _grouped_conv_case,
    "pools": _pool_case,
    "shape_ops": _shape_ops_case,
    "opset11": _opset11_case,
    "opset9": _opset9_case,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_cases_match_onnxruntime(case):
    proto, feeds = CASES[case]()
    for got, ref in zip(_torch(proto, feeds), _ort(proto, feeds), strict=True):
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_uncovered_op_is_named_in_one_line():
    node = helper.make_node("NonMaxSuppression", ["boxes", "scores"], ["sel"], name="nms")
    proto = _model([node], [_vi("boxes", [1, 4, 4]), _vi("scores", [1, 1, 4])], [_vi("sel", None, TensorProto.INT64)])
    with pytest.raises(UnsupportedModelError, match=r"Node 'nms': op NonMaxSuppression is not covered") as err:
        OnnxModule(proto)
    assert "\n" not in str(err.value)


def test_covered_ops_include_the_common_layers():
    ops = set(supported_ops())
    assert {
        "MatMul",
        "Gemm",
        "Conv",
        "ConvTranspose",
        "BatchNormalization",
        "LSTM",
        "GRU",
        "RNN",
        "LayerNormalization",
        "Softmax",
        "Erf",
        "Reshape",
        "Transpose",
        "Concat",
        "Slice",
        "Gather",
    } <= ops
