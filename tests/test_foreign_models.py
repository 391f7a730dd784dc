"""Model forms other exporters produce: every one compiles (or is refused with a precise message) and runs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper
from onnx import numpy_helper as nh

from anacompile.compiler import compile_model
from anacompile.errors import AnacompileError

W = np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32)
NP = {T.FLOAT: np.float32, T.FLOAT16: np.float16, T.DOUBLE: np.float64}


def _model(nodes, inputs, outputs, inits, opset=17):
    return helper.make_model(
        helper.make_graph(nodes, "g", inputs, outputs, inits), opset_imports=[helper.make_opsetid("", opset)]
    )


def _mm(elem=T.FLOAT, x_shape=("N", 16), y_shape=("N", 8)):
    return _model(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        [helper.make_tensor_value_info("x", elem, x_shape)],
        [helper.make_tensor_value_info("y", elem, y_shape)],
        [nh.from_array(W.astype(NP[elem]), "W")],
    )


def _if_branch():
    then = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["t"])],
        "then",
        [],
        [helper.make_tensor_value_info("t", T.FLOAT, [1, 8])],
    )
    other = helper.make_graph(
        [helper.make_node("Neg", ["h"], ["e"])], "else", [], [helper.make_tensor_value_info("e", T.FLOAT, [1, 8])]
    )
    return _model(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"]),
            helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
            helper.make_node("Less", ["s", "zero"], ["c"]),
            helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other),
        ],
        [helper.make_tensor_value_info("x", T.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", T.FLOAT, [1, 8])],
        [nh.from_array(W, "W"), nh.from_array(np.array(0, np.float32), "zero")],
    )


CASES = {
    "float16": lambda: _mm(T.FLOAT16),
    "float64": lambda: _mm(T.DOUBLE),
    "1-D input": lambda: _mm(x_shape=(16,), y_shape=(8,)),
    "3-D input": lambda: _mm(x_shape=("B", "T", 16), y_shape=("B", "T", 8)),
    "weight from a Constant node": lambda: _model(
        [
            helper.make_node("Constant", [], ["W"], value=nh.from_array(W, "W")),
            helper.make_node("MatMul", ["x", "W"], ["y"]),
        ],
        [helper.make_tensor_value_info("x", T.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", T.FLOAT, ["N", 8])],
        [],
    ),
    "weight also a graph input": lambda: _model(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        [helper.make_tensor_value_info("x", T.FLOAT, ["N", 16]), helper.make_tensor_value_info("W", T.FLOAT, [16, 8])],
        [helper.make_tensor_value_info("y", T.FLOAT, ["N", 8])],
        [nh.from_array(W, "W")],
    ),
    "Gemm with a 2-D constant C": lambda: _model(
        [helper.make_node("Gemm", ["x", "W", "C"], ["y"], alpha=0.5, beta=2.0)],
        [helper.make_tensor_value_info("x", T.FLOAT, [3, 16])],
        [helper.make_tensor_value_info("y", T.FLOAT, [3, 8])],
        [nh.from_array(W, "W"), nh.from_array(np.ones((3, 8), np.float32), "C")],
    ),
    "TF-style names": lambda: _model(
        [helper.make_node("MatMul", ["in:0", "w/kernel:0"], ["out:0"], name="dense/MatMul:0")],
        [helper.make_tensor_value_info("in:0", T.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("out:0", T.FLOAT, ["N", 8])],
        [nh.from_array(W, "w/kernel:0")],
    ),
    "MatMul inside an If branch": _if_branch,
    "opset 11 (upgraded on load)": lambda: _model(
        [helper.make_node("Gemm", ["x", "W"], ["h"]), helper.make_node("Dropout", ["h"], ["y"], ratio=0.1)],
        [helper.make_tensor_value_info("x", T.FLOAT, [2, 16])],
        [helper.make_tensor_value_info("y", T.FLOAT, [2, 8])],
        [nh.from_array(W, "W")],
        opset=11,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_foreign_forms_compile_and_run(tmp_path, case):
    src, out = tmp_path / "m.onnx", tmp_path / "m.analog.onnx"
    onnx.save(CASES[case](), src)
    report = compile_model(src, out, periphery="ideal")
    assert report.totals["analog_layers"] >= 1
    if "opset 11" in case:
        assert "opset 11 upgraded to 17 on load (onnx.version_converter)" in report.notes
    s0 = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    s1 = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    feeds = {
        i.name: rng.random([d if isinstance(d, int) else 3 for d in i.shape]).astype(
            {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}[i.type]
        )
        for i in s0.get_inputs()
    }
    y0, y1 = s0.run(None, feeds)[0], s1.run(None, feeds)[0]
    assert y1.shape == y0.shape and y1.dtype == y0.dtype
    err = np.linalg.norm(y1.astype(np.float64) - y0) / np.linalg.norm(y0.astype(np.float64))
    assert err < 0.3  # PCM programming and read noise only (ideal periphery)


@pytest.mark.parametrize("case", ["batched 3-D weight", "op unknown to the opset converter"])
def test_unsupported_forms_are_refused_precisely(tmp_path, case):
    if case == "op unknown to the opset converter":  # opset 11 is upgraded on load; an op it cannot is named
        m = _model(
            [helper.make_node("Gemm", ["x", "W"], ["h"]), helper.make_node("FooBar", ["h"], ["y"], name="fb")],
            [helper.make_tensor_value_info("x", T.FLOAT, [2, 16])],
            [helper.make_tensor_value_info("y", T.FLOAT, [2, 8])],
            [nh.from_array(W, "W")],
            opset=11,
        )
        match = "opset 11 could not be upgraded.*FooBar.*'fb'"
    else:
        m = _model(
            [helper.make_node("MatMul", ["x", "W3"], ["y"], name="bmm")],
            [helper.make_tensor_value_info("x", T.FLOAT, [2, 4, 16])],
            [helper.make_tensor_value_info("y", T.FLOAT, [2, 4, 8])],
            [nh.from_array(np.stack([W, W]), "W3")],
        )
        match = "bmm.*rank 3"
    onnx.save(m, tmp_path / "m.onnx")
    with pytest.raises(AnacompileError, match=match):
        compile_model(tmp_path / "m.onnx", tmp_path / "o.onnx")
    assert not (tmp_path / "o.onnx").exists()
