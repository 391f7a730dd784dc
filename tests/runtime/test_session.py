"""AnalogSession: programming, time, compensation, overrides and the layer state, against numpy references.

The per-MVM noise statistics are in test_session_noise.py; here the noise is switched off where a number is
compared, so the session's output is checked exactly against the numpy tile reference of the same arithmetic.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from anacompile.compiler import compile_model
from anacompile.crossbar.periphery import Compensation, DriftCompensation
from anacompile.crossbar.reference import tile_forward
from anacompile.errors import ConfigError
from anacompile.evaluate.datasets import load_digits_split
from anacompile.runtime.session import AnalogSession
from tests._support.devices import DRIFT_ONLY_DEVICE, NOISELESS_DEVICE

NO_MVM_NOISE = ["read_noise=0", "out_noise=0"]


@pytest.fixture(scope="module")
def noiseless(tmp_path_factory, mlp_fp):
    folder = tmp_path_factory.mktemp("session")
    device = folder / "d.yaml"
    device.write_text(NOISELESS_DEVICE)
    out = folder / "m.onnx"
    compile_model(mlp_fp, out, device=device, calibration="digits", periphery_overrides=NO_MVM_NOISE)
    return out


@pytest.fixture(scope="module")
def x():
    return load_digits_split()[1].x[:32]


def test_first_layer_equals_the_numpy_tile_reference(noiseless, x):
    proto = onnx.load(str(noiseless))
    hidden = next(n.output[0] for n in proto.graph.node if n.op_type == "AnalogMatMul")
    s = AnalogSession(noiseless, extra_outputs=[hidden])
    layer = s.layers[0]
    xs = s.layer_inputs({"input": x})[layer.name]
    w_codes, in_scale, scale = s.layer_state(layer)
    bias = next(onnx.numpy_helper.to_array(t) for t in proto.graph.initializer if t.name == f"{layer.name}.bias")
    ref = tile_forward(xs, w_codes, in_scale, scale, bias, s.periphery, None, layer.out_gain)
    got = s.run({"input": x}, [hidden])[0]
    lsb = s.periphery.adc_step * float(np.max(np.abs(scale)))  # MLAS and numpy may round one value apart
    assert np.mean(np.abs(got - ref) > 1e-5) < 0.005 and np.abs(got - ref).max() <= 1.01 * lsb
    # and the decoded plan is the source weight the compiler mapped
    src = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(_source())).graph.initializer}
    w_src = src["fc1.weight"].T  # Gemm(transB=1, alpha=1): W = weight^T
    np.testing.assert_allclose(s.ideal_weight(layer, 64), w_src, rtol=1e-5, atol=1e-6)


def _source():
    from tests.conftest import MODELS

    return MODELS / "digits_mlp_fp.onnx"


def test_a_chip_is_its_seed(compiled_mlp, x):
    a = AnalogSession(compiled_mlp, chip_seed=4)
    b = AnalogSession(compiled_mlp, chip_seed=None)
    b.program(4)
    b.set_time(0.0)
    w_a = [a.layer_state(layer)[0] for layer in a.layers]
    w_b = [b.layer_state(layer)[0] for layer in b.layers]
    for u, v in zip(w_a, w_b, strict=True):
        np.testing.assert_array_equal(u, v)
    c = AnalogSession(compiled_mlp, chip_seed=5)
    for u, v in zip(w_a, [c.layer_state(layer)[0] for layer in c.layers], strict=True):
        # another chip: other programming noise, of the size the device gives (not a tiny change)
        assert np.mean(np.abs(u - v)) > 0.01 * np.mean(np.abs(u))


def test_drift_over_time_and_its_global_compensation(tmp_path, mlp_fp, x):
    device = tmp_path / "drift.yaml"
    device.write_text(DRIFT_ONLY_DEVICE)
    out = tmp_path / "m.onnx"
    compile_model(mlp_fp, out, device=device, periphery="ideal", periphery_overrides=["drift_compensation=global"])
    raw = AnalogSession(out, compensation=Compensation.NONE)
    y0 = raw.run({"input": x})[0]
    layer = raw.layers[0]
    w0 = raw.layer_state(layer)[0] * raw.layer_state(layer)[2]
    t = 86400.0
    raw.set_time(t)
    wt = raw.layer_state(layer)[0] * raw.layer_state(layer)[2]
    # one exponent nu = 0.06 everywhere: every weight decays by ((t + t0) / t0)^-nu (Joshi et al. 2020)
    t0 = raw.device.drift.t0_s
    np.testing.assert_allclose(wt, w0 * ((t + t0) / t0) ** -0.06, rtol=1e-4, atol=1e-7)
    gdc = AnalogSession(out, compensation="global", t_inference=t)
    np.testing.assert_allclose(gdc.run({"input": x})[0], y0, rtol=1e-4, atol=1e-4)
    assert gdc.compensation is DriftCompensation.GLOBAL


def test_compensation_names_and_enums(compiled_mlp):
    assert AnalogSession(compiled_mlp, chip_seed=None, compensation="adabs").compensation is DriftCompensation.GLOBAL
    assert (
        AnalogSession(compiled_mlp, chip_seed=None, compensation=Compensation.COLUMN).compensation
        is DriftCompensation.COLUMN
    )
    with pytest.raises(ConfigError, match="none, global, column, adabs"):
        AnalogSession(compiled_mlp, chip_seed=None, compensation="colum")


def test_periphery_overrides_for_a_session(compiled_mlp):
    s = AnalogSession(compiled_mlp, chip_seed=None, periphery_overrides=["adc_bits=6", "out_noise=1e-2"])
    assert s.periphery.adc_bits == 6 and s.periphery.out_noise == 0.01
    with pytest.raises(ConfigError, match="tile_rows"):
        AnalogSession(compiled_mlp, chip_seed=None, periphery_overrides={"tile_rows": 64})
