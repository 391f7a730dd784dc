"""Models of any size: external data in, external data out (streamed), atomic outputs, check by path.

The models here are small; the size rule is exercised by lowering the limit. bench/large_model.py runs a
~100 M-parameter model past protobuf's 2 GB limit and measures time and memory.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import anacompile.compiler as compiler
from anacompile.compiler import compile_model
from anacompile.errors import OutputError, UnsupportedModelError
from anacompile.model_io import atomic_output, external_data_name
from anacompile.runtime.session import AnalogSession
from tests._support.devices import NOISELESS_DEVICE

SIZES = (40, 24, 10)


def _mlp(rng: np.random.Generator) -> onnx.ModelProto:
    """x (B, 40) -> MatMul 40x24 -> Relu -> Gemm 24x10 (+ bias): a small model whose weights go external."""
    w1 = rng.standard_normal(SIZES[:2]).astype(np.float32) / 6
    w2 = rng.standard_normal(SIZES[1:][::-1]).astype(np.float32) / 5
    b2 = rng.standard_normal(SIZES[2]).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W1"], ["h"], name="fc1"),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1, name="fc2"),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", SIZES[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", SIZES[2]])],
        [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2"), numpy_helper.from_array(b2, "b2")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture()
def source(tmp_path):
    """The MLP saved with every tensor in ``weights.bin`` beside it."""
    folder = tmp_path / "src"
    folder.mkdir()
    path = folder / "mlp.onnx"
    onnx.save_model(
        _mlp(np.random.default_rng(0)),
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    return path


@pytest.fixture()
def noiseless(tmp_path):
    path = tmp_path / "noiseless.yaml"
    path.write_text(NOISELESS_DEVICE)
    return path


def _run(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _external_tensors(path) -> dict[str, str]:
    proto = onnx.load(str(path), load_external_data=False)
    return {
        t.name: next(e.value for e in t.external_data if e.key == "location")
        for t in proto.graph.initializer
        if t.data_location == onnx.TensorProto.EXTERNAL
    }


def test_external_data_source_gives_external_data_output(tmp_path, source, noiseless):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "mlp.analog.onnx"
    report = compile_model(source, out, device=noiseless, periphery="ideal", periphery_overrides=["tile_rows=16"])
    assert [layer.tiles[0] for layer in report.layers] == [3, 2]  # tiled layers: 5-D conductance arrays
    assert sorted(p.name for p in out_dir.iterdir()) == ["mlp.analog.onnx", "mlp.analog.onnx.data"]
    assert any("external data" in note for note in report.notes)
    external = _external_tensors(out)
    assert {f"fc1.{s}" for s in ("g_target", "g_prog", "nu")} <= set(external)
    assert set(external.values()) == {external_data_name(out)}
    onnx.checker.check_model(str(out), full_check=True)
    x = np.random.default_rng(1).standard_normal((7, SIZES[0])).astype(np.float32)
    y_src = _run(source, x)
    np.testing.assert_allclose(_run(out, x), y_src, rtol=1e-5, atol=1e-5)  # stock onnxruntime, by path
    np.testing.assert_allclose(AnalogSession(out, chip_seed=2).run({"x": x})[0], y_src, rtol=1e-5, atol=1e-5)


def test_one_tile_layers_store_squeezed_views_of_the_streamed_arrays(tmp_path, source, noiseless):
    out = tmp_path / "m.onnx"
    compile_model(source, out, device=noiseless, periphery="ideal")
    proto = onnx.load(str(out))  # external data loaded
    shapes = {t.name: list(t.dims) for t in proto.graph.initializer}
    assert shapes["fc1.g_target"] == [1, 2, SIZES[0], SIZES[1]]  # (P, 2, rows, N): no tile axis
    assert shapes["fc2.nu"] == [1, 2, SIZES[1], SIZES[2]]
    x = np.random.default_rng(3).standard_normal((4, SIZES[0])).astype(np.float32)
    np.testing.assert_allclose(_run(out, x), _run(source, x), rtol=1e-5, atol=1e-5)


def test_large_output_of_an_embedded_source_goes_external(tmp_path, noiseless, monkeypatch):
    src = tmp_path / "small.onnx"
    onnx.save(_mlp(np.random.default_rng(4)), str(src))
    out = tmp_path / "small.analog.onnx"
    compile_model(src, out, device=noiseless, periphery="ideal")
    assert not _external_tensors(out)  # small: one self-contained file
    monkeypatch.setattr(compiler, "EXTERNAL_DATA_LIMIT_BYTES", 1000)  # as if the output would pass ~1.8 GB
    compile_model(src, out, device=noiseless, periphery="ideal", force=True)
    assert (tmp_path / "small.analog.onnx.data").is_file() and _external_tensors(out)
    onnx.checker.check_model(str(out), full_check=True)
    x = np.random.default_rng(5).standard_normal((3, SIZES[0])).astype(np.float32)
    np.testing.assert_allclose(_run(out, x), _run(src, x), rtol=1e-5, atol=1e-5)


def test_a_failed_compile_leaves_no_file_and_keeps_the_previous_output(tmp_path, source, noiseless, monkeypatch):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "m.onnx"
    compile_model(source, out, device=noiseless, periphery="ideal")
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}

    def broken(path):
        raise UnsupportedModelError(f"checker failed on {path}")

    monkeypatch.setattr(compiler, "verify_pipeline", broken)  # fails after both files were written
    with pytest.raises(UnsupportedModelError, match="checker failed"):
        compile_model(source, out, device=noiseless, periphery="ideal", seed=7, force=True)
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before  # no temp folder, data untouched


def test_output_data_file_may_not_be_the_sources(tmp_path):
    src = tmp_path / "m.onnx"
    onnx.save_model(
        _mlp(np.random.default_rng(6)),
        str(src),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="out.onnx.data",
        size_threshold=0,
    )
    with pytest.raises(OutputError, match="which the source model reads"):
        compile_model(src, tmp_path / "out.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "out.onnx.data"]


def test_atomic_output_moves_sidecars_and_drops_scratch(tmp_path):
    out = tmp_path / "a.onnx"
    with atomic_output(out) as tmp:
        tmp.write_bytes(b"model")
        (tmp.parent / "a.onnx.data").write_bytes(b"data")
        (tmp.parent / ".scratch").write_bytes(b"scratch")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx", "a.onnx.data"]
    with pytest.raises(RuntimeError), atomic_output(out) as tmp:
        tmp.write_bytes(b"new model")
        (tmp.parent / "a.onnx.data").write_bytes(b"new data")
        raise RuntimeError("interrupted")
    assert (out.read_bytes(), (tmp_path / "a.onnx.data").read_bytes()) == (b"model", b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx", "a.onnx.data"]


def test_calibration_runs_a_source_with_external_data(tmp_path, source):
    data = tmp_path / "calibration.npz"
    np.savez(data, x=np.random.default_rng(7).standard_normal((32, SIZES[0])).astype(np.float32))
    report = compile_model(source, tmp_path / "m.onnx", calibration=data)
    assert report.periphery["input_range"] == "static"
    assert not any("no calibration data" in note for note in report.notes)
