"""Transformers: projections (B, T, K) @ (K, N) on tiles, attention products digital, dynamic B and T kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from anacompile.compiler import compile_model
from anacompile.evaluate.datasets import load_digits_split
from anacompile.evaluate.monte_carlo import evaluate
from anacompile.runtime.session import AnalogSession
from tests._support.devices import NOISELESS_DEVICE

MODELS = Path(__file__).resolve().parents[1] / "models"

D, HEADS = 8, 2


@pytest.fixture(scope="module")
def noiseless(tmp_path_factory):
    path = tmp_path_factory.mktemp("device") / "noiseless.yaml"
    path.write_text(NOISELESS_DEVICE)
    return path


def _plain(path, feeds):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def _digits_x() -> np.ndarray:
    return load_digits_split()[1].x.reshape(-1, 8, 8)


@pytest.mark.parametrize("variant", ["fp", "hwa"])
def test_digits_transformer_noise_off_reproduces_the_source(tmp_path, noiseless, variant):
    src = MODELS / f"digits_transformer_{variant}.onnx"
    out = tmp_path / "t.analog.onnx"
    report = compile_model(src, out, device=noiseless, periphery="ideal")
    matmuls = [layer for layer in report.layers if layer.op == "MatMul"]
    assert len(matmuls) == 17
    digital = [layer for layer in matmuls if not layer.analog]
    assert len(digital) == 4 and all("activation x activation" in layer.reason for layer in digital)
    assert report.totals["analog_layers"] == 14  # 13 projections + the Gemm head
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    x = _digits_x()
    y_src = _plain(src, {"input": x})[0]
    np.testing.assert_allclose(_plain(out, {"input": x})[0], y_src, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(AnalogSession(out, chip_seed=3).run({"input": x})[0], y_src, rtol=1e-5, atol=1e-5)


def test_digits_transformer_evaluates_over_time(tmp_path):
    out = tmp_path / "t.analog.onnx"
    compile_model(MODELS / "digits_transformer_hwa.onnx", out, calibration="digits")
    result = evaluate(out, data="digits", times="1s,1d", chips=2)
    assert result.baseline > 0.9
    assert len(result.accuracy_mean) == 2
    assert min(result.accuracy_mean) > result.baseline - 0.1


def _attention_model(k: int = D) -> onnx.ModelProto:
    """One self-attention block over x (B, T, D) with symbolic B and T: q/k/v/out projections are weights,
    Q K^T and A V are activation x activation products; the heads are split by Reshape with dynamic dims."""
    rng = np.random.default_rng(0)
    dh = k // HEADS
    w = {name: (rng.standard_normal((k, k)) / np.sqrt(k)).astype(np.float32) for name in ("Wq", "Wk", "Wv", "Wo")}
    b = {"bo": rng.standard_normal(k).astype(np.float32)}
    consts = {
        "split_shape": np.array([0, 0, HEADS, dh], np.int64),
        "merge_shape": np.array([0, 0, k], np.int64),
        "scale": np.array(1 / np.sqrt(dh), np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "Wq"], ["q"], name="q_proj"),
        helper.make_node("MatMul", ["x", "Wk"], ["kk"], name="k_proj"),
        helper.make_node("MatMul", ["x", "Wv"], ["v"], name="v_proj"),
        helper.make_node("Reshape", ["q", "split_shape"], ["q4"]),
        helper.make_node("Reshape", ["kk", "split_shape"], ["k4"]),
        helper.make_node("Reshape", ["v", "split_shape"], ["v4"]),
        helper.make_node("Transpose", ["q4"], ["qh"], perm=[0, 2, 1, 3]),
        helper.make_node("Transpose", ["k4"], ["khT"], perm=[0, 2, 3, 1]),
        helper.make_node("Transpose", ["v4"], ["vh"], perm=[0, 2, 1, 3]),
        helper.make_node("MatMul", ["qh", "khT"], ["s"], name="scores"),
        helper.make_node("Mul", ["s", "scale"], ["s2"]),
        helper.make_node("Softmax", ["s2"], ["a"], axis=-1),
        helper.make_node("MatMul", ["a", "vh"], ["ctx"], name="context"),
        helper.make_node("Transpose", ["ctx"], ["ctx_t"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["ctx_t", "merge_shape"], ["merged"]),
        helper.make_node("MatMul", ["merged", "Wo"], ["o"], name="out_proj"),
        helper.make_node("Add", ["o", "bo"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "attention",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", "T", k])],
        [numpy_helper.from_array(a, n) for n, a in {**w, **b, **consts}.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    return model


def test_dynamic_batch_and_sequence_are_kept(tmp_path, noiseless):
    src = tmp_path / "attention.onnx"
    onnx.save(_attention_model(), src)
    out = tmp_path / "attention.analog.onnx"
    # 3 row tiles of 3 rows: the tiled AnalogMatMul body on 3-D activations
    report = compile_model(src, out, device=noiseless, periphery="ideal", periphery_overrides=["tile_rows=3"])
    analog = {layer.name for layer in report.layers if layer.analog}
    assert analog == {"q_proj", "k_proj", "v_proj", "out_proj"}
    assert all(layer.tiles == [3, 1] for layer in report.layers if layer.analog)
    proto = onnx.load(str(out))
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["B", "T", D]
    assert [d.dim_param or d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim] == ["B", "T", D]
    rng = np.random.default_rng(1)
    for batch, seq in ((2, 3), (1, 7)):
        x = rng.standard_normal((batch, seq, D)).astype(np.float32)
        y_src = _plain(src, {"x": x})[0]
        y = _plain(out, {"x": x})[0]
        assert y.shape == (batch, seq, D)
        np.testing.assert_allclose(y, y_src, rtol=1e-5, atol=1e-5)


def test_noisy_chip_runs_any_sequence_length(tmp_path):
    """The standard periphery (MVM noise from the session's bank) on two sequence lengths and batch sizes."""
    src = tmp_path / "attention.onnx"
    onnx.save(_attention_model(), src)
    out = tmp_path / "attention.analog.onnx"
    compile_model(src, out)
    session = AnalogSession(out, chip_seed=1)
    rng = np.random.default_rng(2)
    for batch, seq in ((4, 5), (2, 11)):
        x = rng.standard_normal((batch, seq, D)).astype(np.float32)
        y_src = _plain(src, {"x": x})[0]
        y = session.run({"x": x})[0]
        assert y.shape == (batch, seq, D)
        err = np.linalg.norm(y - y_src) / np.linalg.norm(y_src)
        assert 1e-4 < err < 0.3  # an analog chip: near the source, not equal to it
