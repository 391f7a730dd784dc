"""Accuracy over time on the real digits MLPs, reproducibility, and the data and time parsers."""

from __future__ import annotations

import numpy as np
import pytest

from anacompile.errors import ConfigError, DataError
from anacompile.evaluate.monte_carlo import evaluate
from anacompile.evaluate.times import format_time, parse_times
from tests._support import stats as st

TIMES = "1s,1h,1d,1y"


def test_noise_trained_mlp_is_near_baseline_at_1s(compiled_mlp):
    r = evaluate(compiled_mlp, times="1s", chips=8)
    assert r.baseline > 0.95
    assert r.accuracy_mean[0] >= r.baseline - 0.02


def test_accuracy_falls_without_compensation_and_holds_better_with_gdc(tmp_path, mlp_fp):
    from anacompile.compiler import compile_model

    out = tmp_path / "fp.onnx"
    compile_model(mlp_fp, out, calibration="digits")
    none = evaluate(out, times=TIMES, chips=10, compensation="none")
    gdc = evaluate(out, times=TIMES, chips=10, compensation="global")
    assert none.accuracy_mean[-1] < none.accuracy_mean[0]
    assert gdc.accuracy_mean[-1] > none.accuracy_mean[-1]


def test_same_seed_gives_identical_results(compiled_mlp):
    a = evaluate(compiled_mlp, times=TIMES, chips=3, seed=7).to_dict()
    b = evaluate(compiled_mlp, times=TIMES, chips=3, seed=7).to_dict()
    c = evaluate(compiled_mlp, times=TIMES, chips=3, seed=8).to_dict()
    a.pop("model"), b.pop("model"), c.pop("model")
    assert a == b
    assert a["accuracy"] != c["accuracy"]
    # another seed: other chips of the same distribution, so the means agree within their standard error
    acc_a, acc_c = np.array(a["accuracy"]), np.array(c["accuracy"])
    diff = acc_a.mean(axis=0) - acc_c.mean(axis=0)
    se = np.sqrt((acc_a.var(axis=0, ddof=1) + acc_c.var(axis=0, ddof=1)) / acc_a.shape[0])
    for d, s in zip(diff, se, strict=True):
        st.assert_matches(
            st.Estimate(float(d), max(float(s), 1e-3), "seed 7 - seed 8 mean accuracy"), 0.0, detect=None
        )  # 3 chips: no power for 5 %; the check is that seeds are one distribution


def test_chips_differ_and_spread_is_reported(compiled_mlp):
    r = evaluate(compiled_mlp, times="1d", chips=6)
    acc = np.array(r.accuracy)[:, 0]
    assert len(set(acc.tolist())) > 1
    assert r.accuracy_std[0] == pytest.approx(acc.std())


def test_npz_data(tmp_path, compiled_mlp):
    from anacompile.evaluate.datasets import load_digits_split

    test = load_digits_split()[1]
    np.savez(tmp_path / "d.npz", input=test.x[:100], labels=test.y[:100])
    r = evaluate(compiled_mlp, data=tmp_path / "d.npz", times="1s", chips=2)
    assert r.accuracy_mean[0] > 0.9
    np.savez(tmp_path / "bad.npz", wrong=test.x[:10], labels=test.y[:10])
    with pytest.raises(DataError, match="no array 'input'"):
        evaluate(compiled_mlp, data=tmp_path / "bad.npz", times="1s", chips=1)
    np.savez(tmp_path / "shape.npz", input=test.x[:10, :32], labels=test.y[:10])
    with pytest.raises(DataError, match="expects samples of shape"):
        evaluate(compiled_mlp, data=tmp_path / "shape.npz", times="1s", chips=1)


def test_time_parsing():
    assert parse_times("1s,1h,1d,1y") == [1.0, 3600.0, 86400.0, 365 * 86400.0]
    assert parse_times("0, 10min ,2.5d") == [0.0, 600.0, 2.5 * 86400]
    assert [format_time(t) for t in (1.0, 3600.0, 86400.0, 365 * 86400.0, 0.5)] == ["1s", "1h", "1d", "1y", "0.5s"]
    for bad in ("1 parsec", "-1s", "h", ""):
        with pytest.raises(ConfigError):
            parse_times(bad)
