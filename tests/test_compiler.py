"""compile_model end to end on the real digits MLPs: checker, stock onnxruntime, exactness with noise off."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from anacompile import ops
from anacompile.compiler import compile_model, default_output_path, read_report
from anacompile.errors import ModelLoadError, OutputError, UnsupportedModelError
from anacompile.evaluate.datasets import load_digits_split
from anacompile.runtime.session import AnalogSession
from tests._support.devices import NOISELESS_DEVICE


@pytest.fixture(scope="module")
def x_test():
    return load_digits_split()[1].x


def _plain(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def test_compiled_file_is_valid_onnx_with_report(compiled_mlp):
    proto = onnx.load(str(compiled_mlp))
    onnx.checker.check_model(proto, full_check=True)
    report = read_report(proto)
    assert [layer.weight_shape for layer in report.layers] == [[64, 128], [128, 10]]
    assert all(layer.analog for layer in report.layers)
    assert report.totals["weights_mapped"] == 64 * 128 + 128 * 10
    assert report.layers[0].utilisation == pytest.approx(64 * 128 / 512**2)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta[ops.META_REPORT])["device"]["name"] == "pcm"
    domains = {o.domain: o.version for o in proto.opset_import}
    assert domains[ops.DOMAIN] == ops.DOMAIN_VERSION


def test_stock_onnxruntime_runs_the_whole_chip(compiled_mlp, mlp_hwa, x_test):
    """No anacompile code on this path: a plain InferenceSession on the file, fed inputs and t_inference."""
    sess = ort.InferenceSession(str(compiled_mlp), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"]
    assert ops.T_INFERENCE in [i.name for i in sess.get_overridable_initializers()]
    y_fp = _plain(mlp_hwa, x_test)
    y0 = sess.run(None, {"input": x_test})[0]
    y1y = sess.run(None, {"input": x_test, ops.T_INFERENCE: np.array(365 * 86400, np.float32)})[0]
    labels = load_digits_split()[1].y
    acc = [np.mean(np.argmax(y, 1) == labels) for y in (y_fp, y0, y1y)]
    assert acc[1] > acc[0] - 0.03 and acc[2] > acc[0] - 0.05
    err0 = np.linalg.norm(y0 - y_fp) / np.linalg.norm(y_fp)
    assert 0.01 < err0 < 0.5  # the analog chip is not the FP model, but close to it


def test_noise_off_reproduces_source_model(tmp_path, mlp_fp, x_test):
    device = tmp_path / "noiseless.yaml"
    device.write_text(NOISELESS_DEVICE)
    out = tmp_path / "ideal.onnx"
    compile_model(mlp_fp, out, device=device, periphery="ideal")
    y_src = _plain(mlp_fp, x_test)
    np.testing.assert_allclose(_plain(out, x_test), y_src, rtol=1e-5, atol=1e-5)  # stock ORT, in-graph chip stage
    sess = AnalogSession(out, chip_seed=5)
    np.testing.assert_allclose(sess.run({"input": x_test})[0], y_src, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sess.run_digital({"input": x_test})[0], y_src, rtol=1e-5, atol=1e-5)


def test_multi_tile_layers_add_partial_sums(tmp_path, mlp_fp, x_test):
    device = tmp_path / "noiseless.yaml"
    device.write_text(NOISELESS_DEVICE)
    out = tmp_path / "tiles.onnx"
    report = compile_model(mlp_fp, out, device=device, periphery="ideal", periphery_overrides=["tile_rows=24"])
    assert [layer.tiles[0] for layer in report.layers] == [3, 6]
    np.testing.assert_allclose(_plain(out, x_test), _plain(mlp_fp, x_test), rtol=1e-5, atol=1e-5)


def test_default_output_is_beside_the_input(tmp_path, mlp_fp):
    src = tmp_path / "m.onnx"
    src.write_bytes(mlp_fp.read_bytes())
    report = compile_model(src)
    assert default_output_path(src) == tmp_path / "m.analog.onnx"
    assert report.output == str(tmp_path / "m.analog.onnx") and (tmp_path / "m.analog.onnx").is_file()
    assert "no calibration data" in report.notes[0]
    with pytest.raises(OutputError, match="exists"):
        compile_model(src)
    compile_model(src, force=True)


def test_bad_inputs_raise_clear_errors_and_write_nothing(tmp_path, mlp_fp):
    garbage = tmp_path / "g.onnx"
    garbage.write_text("not a model")
    with pytest.raises(ModelLoadError, match="not a readable ONNX model"):
        compile_model(garbage, tmp_path / "o.onnx")
    truncated = tmp_path / "t.onnx"
    truncated.write_bytes(mlp_fp.read_bytes()[:2000])
    with pytest.raises(ModelLoadError, match=str(truncated.name)):
        compile_model(truncated, tmp_path / "o.onnx")
    with pytest.raises(OutputError, match="is the input"):
        compile_model(mlp_fp, mlp_fp, force=True)
    assert not (tmp_path / "o.onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.onnx", "t.onnx"]


def test_model_without_analog_op_is_refused(tmp_path):
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    src = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(g), src)
    with pytest.raises(UnsupportedModelError, match="no analog-capable op"):
        compile_model(src)
    assert not (tmp_path / "relu.analog.onnx").exists()


def test_external_data_outside_the_model_folder_is_refused(tmp_path, mlp_fp):
    model = onnx.load(str(mlp_fp))
    sub = tmp_path / "m"
    sub.mkdir()
    onnx.save_model(
        model,
        str(sub / "ext.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="w.bin",
        size_threshold=0,
    )
    compile_model(sub / "ext.onnx", tmp_path / "ok.onnx")  # external data beside the model loads
    proto = onnx.load(str(sub / "ext.onnx"), load_external_data=False)
    for t in proto.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../../etc/passwd"
    onnx.save(proto, str(sub / "evil.onnx"))
    with pytest.raises(ModelLoadError, match="outside the model's folder"):
        compile_model(sub / "evil.onnx", tmp_path / "evil.analog.onnx")


def test_top_level_api_mirrors_the_cli():
    import anacompile

    for name in ("compile_model", "evaluate", "AnalogSession", "mvm_error", "optimize_strategy", "read_report"):
        assert callable(getattr(anacompile, name))
    assert anacompile.devices.get("pcm").g_max_us == 25.0
    with pytest.raises(AttributeError):
        anacompile.no_such_thing  # noqa: B018


def test_provided_input_ranges(tmp_path, mlp_hwa):
    ranges = tmp_path / "ranges.json"
    ranges.write_text(json.dumps({"fc1_Gemm": 1.0, "fc2_Gemm": [4.5]}))
    out = tmp_path / "r.onnx"
    report = compile_model(mlp_hwa, out, input_ranges=ranges)
    assert report.periphery["input_range"] == "static"
    stored = {
        t.name: onnx.numpy_helper.to_array(t).ravel().tolist()
        for t in onnx.load(str(out)).graph.initializer
        if t.name.endswith(".in_range")
    }
    assert stored == {"fc1_Gemm.in_range": [1.0], "fc2_Gemm.in_range": [4.5]}
    partial = compile_model(mlp_hwa, tmp_path / "p.onnx", input_ranges={"fc1_Gemm": 2.0}, calibration="digits")
    assert partial.totals["analog_layers"] == 2  # fc2 calibrated from data
    from anacompile.errors import ConfigError

    with pytest.raises(ConfigError, match="fc2_Gemm"):
        compile_model(mlp_hwa, tmp_path / "x.onnx", input_ranges={"fc1_Gemm": 2.0})
    with pytest.raises(ConfigError, match="unknown layer"):
        compile_model(mlp_hwa, tmp_path / "y.onnx", input_ranges={"nope": 2.0}, calibration="digits")
    with pytest.raises(ConfigError, match="positive"):
        compile_model(mlp_hwa, tmp_path / "z.onnx", input_ranges={"fc1_Gemm": -1, "fc2_Gemm": 1})
    assert not any((tmp_path / n).exists() for n in ("x.onnx", "y.onnx", "z.onnx"))
