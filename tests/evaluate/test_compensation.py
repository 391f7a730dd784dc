"""Compensation modes, AdaBS, sweeps, strategy comparison and parallel workers."""

from __future__ import annotations

import numpy as np
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
    gdc = AnalogSession(out, compensation="global")
    raw = AnalogSession(out, compensation="none")
    y0 = gdc.run(x)[0]
    for t in (3600.0, 365 * 86400.0):
        gdc.set_time(t)
        raw.set_time(t)
        np.testing.assert_allclose(gdc.run(x)[0], y0, rtol=1e-5, atol=1e-5)
        assert not np.allclose(raw.run(x)[0], y0, rtol=1e-2)


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
    for bn in s.batchnorms:
        mean = s._bn_state[bn.mean]
        assert mean.shape == bn.default_mean.shape and not np.allclose(mean, bn.default_mean)
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
    assert dual.accuracy != single.accuracy


def test_workers_give_identical_results(compiled_mlp, tmp_path):
    one = evaluate(compiled_mlp, times="1s,1y", chips=4, workers=1)
    two = evaluate(compiled_mlp, times="1s,1y", chips=4, workers=2, csv_path=tmp_path / "rows.csv")
    assert one.accuracy == two.accuracy
    rows = (tmp_path / "rows.csv").read_text().strip().splitlines()
    assert rows[0] == "chip,time_s,compensation,accuracy,run" and len(rows) == 1 + 4 * 2
