"""Relative MVM error of the standard model on the digits MLP (Rasch et al. 2023: ~15 % on real layers)."""

from __future__ import annotations

import numpy as np

from anacompile.evaluate.mvm_error import mvm_error

IDEAL = {"read_noise": 0, "out_noise": 0, "ir_drop": 0, "dac_bits": None, "adc_bits": None, "adc_bound": None}


def test_standard_model_error_is_realistic_and_grows_with_time(compiled_mlp):
    r = mvm_error(compiled_mlp, times="1s,1d,1y", chips=3, compensation="none")
    err = np.asarray(r.error_mean)
    assert r.layers and r.shapes[0] == [64, 128]
    assert 0.05 < err[0, 0] < 0.30  # the hidden layer at 1 s
    assert np.all(err[:, 0] > 0.01) and np.all(err[:, 0] < 0.30)
    assert np.all(np.diff(err, axis=1) > 0)  # drift without compensation: error grows with t
    gdc = np.asarray(mvm_error(compiled_mlp, times="1y", chips=3, compensation="global").error_mean)
    assert np.all(gdc[:, 0] < err[:, 2] / 2)  # global compensation removes most of the drift error


def test_periphery_alone_and_weights_alone(tmp_path, mlp_hwa):
    from anacompile.compiler import compile_model
    from tests._support.devices import NOISELESS_DEVICE

    device = tmp_path / "d.yaml"
    device.write_text(NOISELESS_DEVICE)
    out = tmp_path / "m.onnx"
    compile_model(mlp_hwa, out, device=device, calibration="digits")
    ideal = np.asarray(mvm_error(out, times="0s", chips=1, periphery_overrides=IDEAL).error_mean)
    assert np.all(ideal < 1e-5)  # no device noise, no periphery: exact
    periphery = np.asarray(mvm_error(out, times="0s", chips=2).error_mean)
    assert np.all(periphery > 1e-3) and np.all(periphery < 0.1)  # 8-bit converters + noise only
