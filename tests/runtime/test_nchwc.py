"""NCHWc convolutions with fed weights: the probe against onnxruntime, the fallback, the session's geometry matrix."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from anacompile.runtime import nchwc
from anacompile.runtime.nchwc import ENV, NCHWC_DOMAIN, nchwc_conv, nchwc_enabled, nchwc_layers
from anacompile.runtime.session import AnalogSession
from tests.passes.test_conv import conv_model
from tests.runtime.test_native_conv import NOISE_OFF, _compile, _reference

# (C_in, C_out, group, window, spatial)
GEOMETRIES = {
    "blocked_in_out": (16, 32, 1, {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, (8, 8)),
    "nchw_input": (1, 16, 1, {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, (8, 8)),
    "padded_out": (16, 20, 1, {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, (7, 6)),
    "grouped": (32, 64, 2, {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, (6, 6)),
    "depthwise": (16, 16, 16, {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, (6, 6)),
    "same_upper_stride": (16, 32, 1, {"kernel_shape": [3, 2], "auto_pad": "SAME_UPPER", "strides": [2, 2]}, (7, 9)),
    "dilation_asymmetric": (3, 16, 1, {"kernel_shape": [3, 3], "pads": [0, 1, 2, 1], "dilations": [2, 2]}, (9, 9)),
}


def _session(nodes, inputs, inits=()):
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(NCHWC_DOMAIN, 1)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_probe_permutation_round_trip(name):
    """A random filter reordered with the probe's permutation and fed to an NCHWc Conv gives onnxruntime's own
    result for the constant filter."""
    c_in, c_out, group, window, spatial = GEOMETRIES[name]
    plan = nchwc_conv(c_in, c_out, group, window)
    assert plan is not None and plan.channels == c_out and plan.blocked_channels >= c_out
    rng = np.random.default_rng(1)
    w = rng.standard_normal((c_out, c_in // group, *window["kernel_shape"])).astype(np.float32)
    x = rng.standard_normal((3, c_in, *spatial)).astype(np.float32)
    xi = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    wi = helper.make_tensor_value_info("w", TensorProto.FLOAT, None)
    plain = helper.make_node("Conv", ["x", "w"], ["y"], group=group, **window)
    expected = _session([plain], [xi], [numpy_helper.from_array(w, "w")]).run(None, {"x": x})[0]
    nodes = []
    if plan.reorder_input:
        nodes.append(helper.make_node("ReorderInput", ["x"], ["xr"], domain=NCHWC_DOMAIN))
    nodes.append(
        helper.make_node(
            "Conv", ["xr" if plan.reorder_input else "x", "w"], ["yr"], domain=NCHWC_DOMAIN, **dict(plan.attributes)
        )
    )
    nodes.append(helper.make_node("ReorderOutput", ["yr"], ["y"], domain=NCHWC_DOMAIN, channels=c_out))
    got = _session(nodes, [xi, wi]).run(None, {"x": x, "w": plan.reorder(w)})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    assert plan.reorder(w).shape == plan.weight_shape
    padding = plan.perm == w.size
    assert padding.sum() == plan.perm.size - w.size  # every filter element once, the rest zeros
    assert name != "padded_out" or plan.blocked_channels > c_out


def test_probe_has_no_form_for_what_the_kernels_do_not_block():
    """1-D and 3-D convs, groups of a size the kernels do not block: None (the plain Conv body)."""
    assert nchwc_conv(16, 32, 1, {"kernel_shape": [3], "pads": [1, 1]}) is None
    assert nchwc_conv(16, 32, 1, {"kernel_shape": [3, 3, 3]}) is None
    assert nchwc_conv(32, 34, 2, {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}) is None
    assert nchwc_conv(16, 32, 3, {"kernel_shape": [3, 3]}) is None  # channels not divisible by group


def test_nchwc_only_on_the_cpu_provider_and_not_when_turned_off(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert nchwc_enabled(["CPUExecutionProvider"]) and nchwc_enabled(None)
    assert not nchwc_enabled(["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setenv(ENV, "0")
    assert not nchwc_enabled(["CPUExecutionProvider"])


def test_a_failing_probe_keeps_the_plain_conv(tmp_path, monkeypatch):
    """onnxruntime refusing the probe model is no error: the layer runs the plain Conv body."""

    def refuse(*args):
        raise RuntimeError("no NCHWc here")

    nchwc._probe.cache_clear()
    monkeypatch.setattr(nchwc, "_optimized_probe", refuse)
    out = _compile(tmp_path, conv_model("Conv", [2, 16, 6, 6], [16, 16, 3, 3], pads=[1, 1, 1, 1]), NOISE_OFF)
    sess = AnalogSession(out)
    assert sess.native_convs == ["conv"] and not uses_nchwc(sess)
    nchwc._probe.cache_clear()


def uses_nchwc(sess: AnalogSession) -> bool:
    """Whether the session's model runs NCHWc Convs."""
    return bool(sess.native_convs) and nchwc_layers(sess._session_proto) == sess.native_convs


# (x shape, w shape, attributes, tile_rows): the blocked periphery (whole blocks out), a reordered input,
# padded blocks, several row tiles as one grouped NCHWc Conv (16 channels each, the last one padded; 10
# channels each, padded with zero channels to a block), strides and SAME padding, pointwise convs (1x1 NCHWc;
# the patch path without it)
MATRIX = {
    "blocked": ([2, 4, 6, 6], [16, 4, 3, 3], {"pads": [1, 1, 1, 1]}, 512),
    "reordered_input": ([2, 16, 5, 5], [32, 16, 3, 3], {"pads": [1, 1, 1, 1]}, 512),
    "padded_blocks": ([2, 16, 5, 6], [20, 16, 3, 3], {"pads": [0, 1, 1, 0]}, 512),
    "tiles_grouped": ([2, 40, 5, 5], [16, 40, 3, 3], {"pads": [1, 1, 1, 1]}, 144),
    "tiles_padded_channels": ([2, 20, 5, 5], [16, 20, 3, 3], {"pads": [1, 1, 1, 1]}, 90),
    "same_upper": ([2, 3, 7, 6], [16, 3, 4, 3], {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, 512),
    "pointwise": ([2, 16, 5, 6], [32, 16, 1, 1], {}, 512),
    "pointwise_padded_blocks": ([2, 6, 4, 5], [4, 6, 1, 1], {}, 512),
}


@pytest.mark.parametrize("case", list(MATRIX))
@pytest.mark.parametrize("output_range", ["fixed", "calibrated"])
def test_nchwc_session_equals_numpy_reference_with_noise_off(tmp_path, monkeypatch, case, output_range):
    """ORT == numpy (patches + tile_forward) on the NCHWc path, and the plain Conv body with it turned off."""
    x_shape, w_shape, attrs, tile_rows = MATRIX[case]
    model = conv_model("Conv", x_shape, w_shape, **attrs)
    rng = np.random.default_rng(4)
    calib = [{"x": rng.uniform(0, 1, x_shape).astype(np.float32)} for _ in range(2)]
    out = _compile(tmp_path, model, [*NOISE_OFF, f"tile_rows={tile_rows}", f"output_range={output_range}"], calib)
    x = rng.uniform(0, 1.2, x_shape).astype(np.float32)
    for flag in ("1", "0"):
        monkeypatch.setenv(ENV, flag)
        sess = AnalogSession(out, t_inference=3600.0)
        pointwise_plain = case.startswith("pointwise") and flag == "0"  # the patch path (Transposes, MatMul)
        assert sess.native_convs == ([] if pointwise_plain else ["conv"])
        assert uses_nchwc(sess) == (flag == "1")
        y_ref, lsb = _reference(sess, model, x)
        diff = np.abs(sess.run({"x": x})[0] - y_ref)
        assert np.mean(diff > 1e-5 * (1 + np.abs(y_ref))) <= 0.005
        assert diff.max() <= lsb * 1.01
    assert (sess.layers[0].n_tiles > 1) == case.startswith("tiles")


def test_fed_filters_follow_the_chip_state(tmp_path):
    """The filters are derived from the chip state at every change of it: set_time, program, and
    set_layer_strategy (re-programmed, and back to the cached state) give what a fresh session gives."""
    model = conv_model("Conv", [2, 16, 5, 5], [16, 16, 3, 3], pads=[1, 1, 1, 1])
    out = _compile(tmp_path, model, NOISE_OFF)
    x = np.random.default_rng(6).uniform(0, 1, [2, 16, 5, 5]).astype(np.float32)
    sess = AnalogSession(out, chip_seed=1, t_inference=60.0)
    assert uses_nchwc(sess)

    def fresh(**kw):
        return AnalogSession(out, **{"chip_seed": 1, "t_inference": 60.0, **kw}).run({"x": x})[0]

    y = sess.run({"x": x})[0]
    sess.set_time(86400.0)
    np.testing.assert_array_equal(sess.run({"x": x})[0], fresh(t_inference=86400.0))
    sess.program(4)
    np.testing.assert_array_equal(sess.run({"x": x})[0], fresh(chip_seed=4, t_inference=86400.0))
    sess.program(1)
    sess.set_time(60.0)
    sess.set_layer_strategy("conv", "dual")
    np.testing.assert_array_equal(sess.run({"x": x})[0], fresh(strategy="dual"))
    sess.set_layer_strategy("conv", "single")  # back: the cached chip state
    np.testing.assert_array_equal(sess.run({"x": x})[0], y)
