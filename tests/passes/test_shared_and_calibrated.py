"""Shared weights share tiles; calibrated ADC output ranges; calibration data in every accepted form."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper
from onnx import numpy_helper as nh

from anacompile.compiler import compile_model
from anacompile.crossbar.periphery import PERIPHERY_PRESETS
from anacompile.crossbar.reference import analog_matmul_reference
from anacompile.errors import ConfigError
from anacompile.runtime.session import AnalogSession
from tests._support.devices import NOISELESS_DEVICE
from tests._support.graphs import layer_inputs, run_layer

RNG = np.random.default_rng(3)
W = RNG.standard_normal((16, 8)).astype(np.float32)


def _shared_model(path):
    g = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["a"], name="m1"),
            helper.make_node("Gemm", ["x2", "W", "b"], ["c"], name="m2"),
            helper.make_node("MatMul", ["x", "W"], ["d"], name="m3"),
        ],
        "g",
        [
            helper.make_tensor_value_info("x", T.FLOAT, ["N", 16]),
            helper.make_tensor_value_info("x2", T.FLOAT, ["N", 16]),
        ],
        [helper.make_tensor_value_info(n, T.FLOAT, ["N", 8]) for n in "acd"],
        [nh.from_array(W, "W"), nh.from_array(np.ones(8, np.float32), "b")],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_two_uses_of_one_weight_read_the_same_programmed_chip(tmp_path):
    """Programming noise and drift on, output and read noise off: equal inputs give equal outputs at any t."""
    src, out = tmp_path / "s.onnx", tmp_path / "s.analog.onnx"
    _shared_model(src)
    report = compile_model(src, out, periphery_overrides=["out_noise=0", "read_noise=0"])
    assert [(layer.name, layer.uses) for layer in report.layers] == [("m1", ["m1", "m2", "m3"])]
    assert report.totals["weights_mapped"] == W.size and report.totals["tiles"] == 1
    x = RNG.standard_normal((4, 16)).astype(np.float32)
    s = AnalogSession(out, chip_seed=1, t_inference=3600)
    a, c, d = s.run({"x": x, "x2": x})
    np.testing.assert_array_equal(a, d)
    np.testing.assert_allclose(c, a + 1.0, rtol=0, atol=1e-6)
    assert np.abs(a - x @ W).max() > 1e-3  # a programmed (noisy, drifted) chip, not the FP32 weight
    rep = compile_model(
        src, tmp_path / "r.onnx", shared_weights="replicate", periphery_overrides=["out_noise=0", "read_noise=0"]
    )
    assert len(rep.layers) == 3 and rep.totals["tiles"] == 3
    s2 = AnalogSession(tmp_path / "r.onnx", chip_seed=1, t_inference=3600)
    a2, _, d2 = s2.run({"x": x, "x2": x})
    assert np.abs(a2 - d2).max() > 1e-4  # replicas: independently programmed copies


@pytest.mark.parametrize("tiles", [(64, 32, 512), (100, 10, 32)])
@pytest.mark.parametrize("input_range", ["static", "absmax"])
def test_calibrated_output_gain_in_ort_equals_numpy(tiles, input_range):
    """The gain before the ADC (calibrated output range): ORT body == numpy reference with noise off."""
    k, n, rows = tiles
    p = PERIPHERY_PRESETS["calibrated"].replace(tile_rows=rows, input_range=input_range, read_noise=0.0, out_noise=0.0)
    inputs = layer_inputs(np.random.default_rng(k), 64, k, n, rows, p.tile_rows)
    n_tiles = inputs["W"].shape[0]
    gain = np.linspace(0.5, 3.0, n_tiles).astype(np.float32)
    inputs["out_gain"] = gain.reshape(n_tiles, 1, 1)
    y_ort = run_layer(p, inputs)
    y_ref = analog_matmul_reference(
        inputs["X"],
        inputs["W"],
        inputs["col_scale"],
        inputs["in_range"],
        inputs["alpha"],
        inputs["bias"],
        p,
        None,
        inputs["out_gain"],
    )
    y_fixed = analog_matmul_reference(
        inputs["X"],
        inputs["W"],
        inputs["col_scale"],
        inputs["in_range"],
        inputs["alpha"],
        inputs["bias"],
        p,
        None,
        None,
    )
    diff = np.abs(y_ort - y_ref)
    assert np.mean(diff > 1e-5 * (1 + np.abs(y_ref))) <= 0.005
    assert np.abs(y_ref - y_fixed).max() > 10 * diff.max()  # the gain matters: a gain-less body would fail


def test_calibration_forms_agree_and_calibrated_ranges_avoid_saturation(tmp_path):
    """An iterable of batch-1 feeds, a get_next() reader and a dict of batched arrays calibrate alike; a
    calibrated range maps the outputs' 99.999th percentile to the ADC bound, so nothing saturates."""
    w = np.abs(RNG.standard_normal((64, 16))).astype(np.float32)  # positive: 64 inputs sum beyond the bound 10
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="fc")],
        "g",
        [helper.make_tensor_value_info("x", T.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", T.FLOAT, [1, 16])],
        [nh.from_array(w, "W")],
    )
    src = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), src)
    device = tmp_path / "d.yaml"
    device.write_text(NOISELESS_DEVICE)
    xs = RNG.uniform(0, 1, (24, 1, 64)).astype(np.float32)

    class Reader:  # onnxruntime.quantization.CalibrationDataReader's protocol
        def __init__(self):
            self.it = iter([{"x": x} for x in xs])

        def get_next(self):
            return next(self.it, None)

    gains = []
    for i, data in enumerate([[{"x": x} for x in xs], Reader(), {"x": xs.reshape(24, 64)}]):
        out = tmp_path / f"o{i}.onnx"
        report = compile_model(
            src, out, device=device, calibration=data, periphery_overrides=["out_noise=0", "read_noise=0"]
        )
        assert any("output ranges calibrated" in note for note in report.notes)
        gains.append(
            onnx.numpy_helper.to_array(
                next(t for t in onnx.load(str(out)).graph.initializer if t.name == "fc.out_gain")
            )
        )
    np.testing.assert_array_equal(gains[0], gains[1])
    np.testing.assert_array_equal(gains[0], gains[2])
    assert float(gains[0].reshape(-1)[0]) < 1.0  # these outputs need a smaller gain than the fixed bound's
    s_cal = AnalogSession(tmp_path / "o0.onnx", chip_seed=0)
    fixed = compile_model(
        src,
        tmp_path / "f.onnx",
        device=device,
        calibration=[{"x": x} for x in xs],
        periphery="standard",
        periphery_overrides=["out_noise=0", "read_noise=0"],
    )
    assert any("output_range=fixed" in note for note in fixed.notes)
    s_fix = AnalogSession(tmp_path / "f.onnx", chip_seed=0)
    ref = np.concatenate([x @ w for x in xs])
    err_cal = np.abs(np.concatenate([s_cal.run({"x": x})[0] for x in xs]) - ref).max() / np.abs(ref).max()
    err_fix = np.abs(np.concatenate([s_fix.run({"x": x})[0] for x in xs]) - ref).max() / np.abs(ref).max()
    assert err_cal < 0.03 < err_fix  # the fixed bound clips; the calibrated range only quantises


def test_cli_shared_weights_option_and_macs_of_every_use(tmp_path):
    """``compile --shared-weights share|replicate``: one stored weight's row counts the MACs of all its uses;
    replicas are rows of their own; the choice is in the report; a wrong value is one line."""
    import json
    import subprocess
    import sys

    src = tmp_path / "s.onnx"
    _shared_model(src)

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "anacompile.cli", "compile", str(src), *args],
            capture_output=True,
            text=True,
            timeout=300,
        )

    reports = {}
    for mode in ("share", "replicate"):
        r = cli("-o", str(tmp_path / f"{mode}.onnx"), "--shared-weights", mode, "--json", "-")
        assert r.returncode == 0, r.stderr
        reports[mode] = json.loads(r.stdout)
    share, replicate = reports["share"], reports["replicate"]
    assert [(la["name"], la["uses"], la["macs"]) for la in share["layers"]] == [("m1", ["m1", "m2", "m3"], 3 * W.size)]
    assert [(la["name"], la["macs"]) for la in replicate["layers"]] == [(n, W.size) for n in ("m1", "m2", "m3")]
    assert share["totals"]["macs"] == replicate["totals"]["macs"] == 3 * W.size  # batch dim N counted as 1
    assert share["totals"]["tiles"] == 1 and replicate["totals"]["tiles"] == 3
    assert any("programmed once" in note for note in share["notes"])
    assert any("shared_weights=replicate" in note for note in replicate["notes"])
    with pytest.raises(ConfigError, match="shared_weights='copy': must be one of share, replicate"):
        compile_model(src, tmp_path / "bad.onnx", shared_weights="copy")  # the CLI prints this one line
    assert not (tmp_path / "bad.onnx").exists()
