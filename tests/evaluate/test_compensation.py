"""Compensation modes, AdaBS, sweeps, strategy comparison and parallel workers."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from anacompile.compiler import compile_model
from anacompile.evaluate.datasets import load_digits_split
from anacompile.evaluate.monte_carlo import evaluate
from anacompile.runtime.session import AnalogSession
from tests._support.devices import DRIFT_ONLY_DEVICE


def test_global_compensation_restores_t0_outputs_exactly_with_equal_drift(tmp_path, mlp_fp):
    device = tmp_path / "drift.yaml"
    device.write_text(DRIFT_ONLY_DEVICE)
    out = tmp_path / "m.onnx"
    compile_model(mlp_fp, out, device=device, periphery="ideal", periphery_overrides=["drift_compensation=global"])
    x = {"input": load_digits_split()[1].x}
    proto = onnx.load(str(out))
    hidden = next(n.output[0] for n in proto.graph.node if n.op_type == "AnalogMatMul")  # first layer, bias added
    gdc = AnalogSession(out, compensation="global")
    raw = AnalogSession(out, compensation="none", extra_outputs=[hidden])
    y0 = gdc.run(x)[0]
    h0 = raw.run(x, [hidden])[0]
    t0 = raw.device.drift.t0_s
    decay = {t: ((t + t0) / t0) ** -0.06 for t in (3600.0, 365 * 86400.0)}  # Joshi et al. 2020, one nu
    h = {}
    for t in decay:
        gdc.set_time(t)
        raw.set_time(t)
        np.testing.assert_allclose(gdc.run(x)[0], y0, rtol=1e-5, atol=1e-5)
        h[t] = raw.run(x, [hidden])[0]
    # uncompensated, the first layer's x W decays by the drift factor d(t): h(t) = b + d(t) (h0 - b), so
    # h(1y) - h0 = (d(1y) - 1) / (d(1h) - 1) (h(1h) - h0), with no need of the bias b
    t1, t2 = decay
    ratio = (decay[t2] - 1) / (decay[t1] - 1)
    np.testing.assert_allclose(h[t2] - h0, ratio * (h[t1] - h0), rtol=1e-3, atol=1e-4 * np.abs(h0).max())
    assert np.abs(h[t2] - h0).max() > 0.05 * np.abs(h0).max()  # d(1 y) = 0.42: far above the tolerance


@pytest.fixture(scope="module")
def compiled_cnn(tmp_path_factory):
    out = tmp_path_factory.mktemp("cnn") / "cnn.onnx"
    compile_model("models/digits_cnn_fp.onnx", out, calibration="digits")
    return out


def test_adabs_recalibrates_batchnorm_statistics(compiled_cnn):
    s = AnalogSession(compiled_cnn, compensation="none")
    assert len(s.batchnorms) == 2
    train = load_digits_split()[0].x[:256].reshape(-1, 1, 8, 8)
    s.set_time(86400.0)
    assert s.recalibrate_batchnorm({"input": train}) == 2
    # the recalibrated statistics are those of the BN inputs on this chip at t, each BN seeing the ones
    # before it recalibrated: run again (no per-MVM noise, so the run repeats exactly), they are measured again
    quiet = AnalogSession(compiled_cnn, compensation="none", periphery_overrides=["read_noise=0", "out_noise=0"])
    quiet.set_time(86400.0)
    assert quiet.recalibrate_batchnorm({"input": train}) == 2
    for bn in quiet.batchnorms:
        x = quiet.run({"input": train}, [bn.input])[0]
        np.testing.assert_allclose(quiet._bn_state[bn.mean], x.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(quiet._bn_state[bn.var], x.var(axis=(0, 2, 3)), rtol=1e-4, atol=1e-6)
        # the drifted chip's statistics are not the trained ones (else AdaBS would have nothing to do)
        assert np.abs(quiet._bn_state[bn.mean] - bn.default_mean).max() > 100 * 1e-5 * np.abs(bn.default_mean).max()
    for bn in s.batchnorms:
        assert s._bn_state[bn.mean].shape == bn.default_mean.shape
    s.reset_batchnorm()
    assert not s._bn_state
    r = evaluate(compiled_cnn, times="1d", chips=2, compensation="adabs")
    assert r.compensation == "adabs" and not r.notes and r.accuracy_mean[0] > 0.9


def test_adabs_without_batchnorm_says_so(compiled_mlp):
    r = evaluate(compiled_mlp, times="1s", chips=1, compensation="adabs")
    assert "no BatchNormalization" in r.notes[0]


def test_adc_bits_sweep_rises_and_saturates(compiled_mlp):
    acc = [
        evaluate(compiled_mlp, times="1s", chips=3, periphery_overrides={"adc_bits": b}).accuracy_mean[0]
        for b in (3, 5, 8, 10)
    ]
    assert acc[0] < acc[1] - 0.02  # 3 bits loses a lot
    assert acc[1] <= acc[2] + 0.01
    assert abs(acc[3] - acc[2]) < 0.01  # saturated


def test_strategies_compare_on_one_model(compiled_mlp):
    single = evaluate(compiled_mlp, times="1d", chips=3)
    dual = evaluate(compiled_mlp, times="1d", chips=3, strategy="dual")
    assert dual.strategy == "dual" and single.baseline == dual.baseline
    # the same weights, programmed on two pairs: the remapped plans decode to the compiled ones
    one, two = AnalogSession(compiled_mlp, chip_seed=None), AnalogSession(compiled_mlp, chip_seed=None, strategy="dual")
    for a, b in zip(one.layers, two.layers, strict=True):
        assert len(a.mapping.significance) == 1 and len(b.mapping.significance) == 2
        k = a.g_target.shape[-2]
        np.testing.assert_allclose(two.ideal_weight(b, k), one.ideal_weight(a, k), rtol=1e-4, atol=1e-6)


def test_workers_give_identical_results(compiled_mlp, tmp_path):
    one = evaluate(compiled_mlp, times="1s,1y", chips=4, workers=1)
    two = evaluate(compiled_mlp, times="1s,1y", chips=4, workers=2, csv_path=tmp_path / "rows.csv")
    assert one.accuracy == two.accuracy
    rows = (tmp_path / "rows.csv").read_text().strip().splitlines()
    assert rows[0] == "chip,time_s,compensation,accuracy,run" and len(rows) == 1 + 4 * 2
