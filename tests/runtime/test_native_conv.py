"""Convolutions without the patch matrix in the session: ORT == numpy reference, where they apply, noise law."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from anacompile import contract
from anacompile.compiler import compile_model
from anacompile.crossbar.reference import tile_forward
from anacompile.passes.conv import ConvGeometry
from anacompile.runtime.nchwc import ENV, nchwc_enabled, nchwc_layers
from anacompile.runtime.session import AnalogSession
from tests.passes.test_conv import CASES, conv_model

NOISE_OFF = ["read_noise=0", "out_noise=0"]


def _compile(tmp_path, model: onnx.ModelProto, overrides: list[str], calibration=None):
    """Compile with static input ranges (calibrated on uniform [0, 1) inputs unless ``calibration`` is given)."""
    src, out = tmp_path / "conv.onnx", tmp_path / "conv.analog.onnx"
    onnx.save(model, src)
    if calibration is None:
        dims = [d.dim_value or 2 for d in model.graph.input[0].type.tensor_type.shape.dim]
        calibration = [{"x": np.random.default_rng(0).uniform(0, 1, dims).astype(np.float32)}]
    compile_model(src, out, periphery_overrides=overrides, calibration=calibration, force=True)
    return out


def _reference(sess: AnalogSession, model: onnx.ModelProto, x: np.ndarray) -> tuple[np.ndarray, float]:
    """The numpy reference of the compiled conv layer on the chip's state: patches -> tile_forward -> Relu,
    and one ADC step in output units per tile (the most a different summation order can move an output)."""
    (layer,) = sess.layers
    node = next(n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose"))
    w = onnx.numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == node.input[1]))
    geometry = ConvGeometry.from_node(ir.serde.deserialize_node(node), w)
    w_codes, in_scale, scale = sess.layer_state(layer)
    bias = onnx.numpy_helper.to_array(
        next(t for t in onnx.load(sess.path).graph.initializer if t.name == f"{layer.name}.{contract.BIAS}")
    )
    y = tile_forward(geometry.patches(x), w_codes, in_scale, scale, bias, sess.periphery, None, layer.out_gain)
    return np.maximum(np.moveaxis(y, -1, 1), 0), float(np.max(scale)) * layer.n_tiles


# (case, tile_rows): one tile, and several tiles holding whole channels (the last one padded)
EXACT = [
    ("conv2d", 512),
    ("stride", 512),
    ("dilation", 512),
    ("asymmetric_pads", 512),
    ("same_upper", 512),
    ("valid", 512),
    ("conv1d_stride_dilation", 512),
    ("conv3d", 512),
    ("conv2d", 9),
    ("stride", 18),
]


@pytest.mark.parametrize(("case", "tile_rows"), EXACT)
@pytest.mark.parametrize("output_range", ["fixed", "calibrated"])
@pytest.mark.parametrize("nchwc", ["1", "0"], ids=["nchwc", "plain_conv"])
def test_native_conv_equals_numpy_reference_with_noise_off(tmp_path, monkeypatch, case, tile_rows, output_range, nchwc):
    """DAC once on the input, tile MVMs and IR drop as Convs, ADC, scales: ORT == numpy (patches), code for code;
    with onnxruntime's NCHWc Convs where it has them for the geometry (runtime/nchwc.py) and with them off."""
    monkeypatch.setenv(ENV, nchwc)
    op, x_shape, w_shape, attrs = CASES[case]
    model = conv_model(op, x_shape, w_shape, **attrs)
    rng = np.random.default_rng(3)
    calib = [{"x": rng.uniform(0, 1, x_shape).astype(np.float32)} for _ in range(2)]
    overrides = [*NOISE_OFF, f"tile_rows={tile_rows}", f"output_range={output_range}"]
    sess = AnalogSession(_compile(tmp_path, model, overrides, calib), t_inference=3600.0)
    assert sess.native_convs == ["conv"]
    x = rng.uniform(0, 1.2, x_shape).astype(np.float32)  # some inputs beyond the calibrated range: DAC clips
    y_ref, lsb = _reference(sess, model, x)
    y = sess.run({"x": x})[0]
    # Same float32 ops; Conv and numpy sum a dot product in other orders, which can move a value sitting
    # exactly on an ADC rounding boundary by one step: allowed for < 0.5 % of the outputs.
    diff = np.abs(y - y_ref)
    assert np.mean(diff > 1e-5 * (1 + np.abs(y_ref))) <= 0.005
    assert diff.max() <= lsb * 1.01
    assert sess.layers[0].n_tiles == (1 if tile_rows == 512 else -(-int(np.prod(w_shape[1:])) // tile_rows))


def test_native_conv_only_where_the_dac_commutes_with_patches(tmp_path):
    """Static ranges: native; abs-max, bound management, a tile splitting a channel, ConvTranspose or an asked-for
    patch tensor: the patch path (the same results as before)."""
    model = conv_model("Conv", [2, 3, 6, 6], [4, 3, 3, 3], pads=[1, 1, 1, 1])
    out = _compile(tmp_path, model, [])
    assert AnalogSession(out).native_convs == ["conv"]
    assert AnalogSession(out, periphery_overrides=["input_range=absmax"]).native_convs == []
    assert AnalogSession(out, periphery_overrides=["bound_management=iterative"]).native_convs == []
    assert AnalogSession(out, extra_outputs=["conv.tile_input"]).native_convs == []
    assert AnalogSession(out, switchable=True).native_convs == []
    split = _compile(tmp_path, conv_model("Conv", [2, 11, 5, 5], [4, 11, 3, 3]), ["tile_rows=50"])
    assert AnalogSession(split).layers[0].spec.rows % 9  # 99 rows on 2 tiles of 50: a channel on both
    assert AnalogSession(split).native_convs == []
    transposed = _compile(tmp_path, conv_model("ConvTranspose", [2, 3, 4, 4], [3, 2, 3, 3], strides=[2, 2]), [])
    assert AnalogSession(transposed).native_convs == []


def _noise_samples(sess: AnalogSession, x: np.ndarray, runs: int) -> np.ndarray:
    return np.stack([sess.run({"x": x})[0] for _ in range(runs)])


# (x shape, w shape, tile_rows, runs as NCHWc Convs): 2 tiles of 2 channels and 6 outputs (plain Conv body),
# one tile of 16 outputs (NCHWc, the periphery in the blocked layout), 2 tiles of 16 channels (grouped NCHWc)
NOISE_GEOMETRIES = {
    "plain_conv": ([2, 4, 6, 6], [6, 4, 3, 3], 18, False),
    "nchwc_blocked": ([2, 4, 6, 6], [16, 4, 3, 3], 512, True),
    "nchwc_tiles": ([2, 32, 4, 4], [16, 32, 3, 3], 144, True),
}


@pytest.mark.parametrize("geometry", list(NOISE_GEOMETRIES))
@pytest.mark.parametrize("overrides", [["read_noise=0", "ir_drop=0"], []], ids=["output_noise", "standard"])
def test_native_conv_noise_law_equals_the_patch_path(tmp_path, overrides, geometry):
    """Per output, mean and variance over runs agree with the patch path's (same chip, same t) within 5
    standard errors; the variance of a twin with 5 % more noise does not."""
    x_shape, w_shape, tile_rows, blocked = NOISE_GEOMETRIES[geometry]
    model = conv_model("Conv", x_shape, w_shape, pads=[1, 1, 1, 1], bias=False)
    out = _compile(tmp_path, model, [f"tile_rows={tile_rows}", "dac_bits=10", *overrides])
    x = np.random.default_rng(5).uniform(0, 1, x_shape).astype(np.float32)
    native = AnalogSession(out, chip_seed=2, t_inference=60.0)
    patch = AnalogSession(out, chip_seed=2, t_inference=60.0, extra_outputs=["conv.tile_input"])
    assert native.native_convs == ["conv"] and patch.native_convs == []
    assert (nchwc_layers(native._session_proto) == ["conv"]) == (blocked and nchwc_enabled(None))
    runs = 300
    a, b = _noise_samples(native, x, runs), _noise_samples(patch, x, runs)
    keep = (a.std(0) > 0) & (b.std(0) > 0)  # outputs the Relu does not hold at 0
    assert keep.mean() > 0.3
    a, b = a[:, keep], b[:, keep]
    se_mean = np.sqrt((a.var(0, ddof=1) + b.var(0, ddof=1)) / runs)
    z = (a.mean(0) - b.mean(0)) / se_mean
    assert abs(z.mean()) < 5 / np.sqrt(z.size)  # no bias

    def pooled_variance(s: np.ndarray) -> tuple[float, float]:
        v = s.var(0, ddof=1)
        return float(v.mean()), float(np.sqrt(np.sum(2 * v**2 / (runs - 1))) / v.size)

    (va, sa), (vb, sb) = pooled_variance(a), pooled_variance(b)
    tol = 5 * np.hypot(sa, sb)
    assert abs(va - vb) < tol
    twin, _ = pooled_variance(a.mean(0) + 1.05 * (a - a.mean(0)))  # 5 % more noise
    assert abs(twin - vb) > tol
