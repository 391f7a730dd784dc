"""Built-in metrics, users' metric callables and FILE.py:FUNCTION metrics in evaluate and mvm-error."""

from __future__ import annotations

import numpy as np
import pytest

from anacompile.errors import ConfigError, DataError
from anacompile.evaluate.metrics import DataMetric, load_metric_file, score
from anacompile.evaluate.monte_carlo import evaluate


def _fixed(outputs):
    """A model whose output for sample i (fed as its index) is outputs[i]."""
    return lambda feeds: [outputs[feeds["x"][:, 0].astype(int)]]


def test_builtin_metrics_against_reference_values():
    rng = np.random.default_rng(0)
    r = rng.standard_normal((50, 10)).astype(np.float32)
    feeds = {"x": np.repeat(np.arange(50, dtype=np.float32)[:, None], 3, axis=1)}
    y = r.copy()
    y[:10] = rng.standard_normal((10, 10))  # 10 rows changed: argmax agrees on ~those 40 + chance
    agree = float(np.mean(y.argmax(1) == r.argmax(1)))
    assert DataMetric("agreement", feeds, reference=r, batch_size=7)(_fixed(y)) == pytest.approx(agree)
    assert DataMetric("agreement", feeds, reference=r)(_fixed(r)) == 1.0
    cos = np.mean(np.sum(y * r, 1) / np.linalg.norm(y, axis=1) / np.linalg.norm(r, axis=1))
    assert DataMetric("cosine", feeds, reference=r, batch_size=9)(_fixed(y)) == pytest.approx(cos, rel=1e-6)
    # negative NMSE, higher is better: y = 1.05 r gives -0.05^2; 1.10 r is worse
    assert DataMetric("nmse", feeds, reference=r)(_fixed(1.05 * r)) == pytest.approx(-0.0025, rel=1e-5)
    assert DataMetric("nmse", feeds, reference=r)(_fixed(1.10 * r)) < DataMetric("nmse", feeds, reference=r)(
        _fixed(1.05 * r)
    )
    labels = r.argmax(1)
    assert DataMetric("accuracy", feeds, labels=labels)(_fixed(y)) == pytest.approx(agree)
    seq = rng.standard_normal((50, 4, 6))  # sequence logits: every position counts
    other = seq.copy()
    other[:, 0] = -other[:, 0]
    expect = np.mean(other.argmax(-1) == seq.argmax(-1))
    assert DataMetric("agreement", feeds, reference=seq)(_fixed(other)) == pytest.approx(expect)
    with pytest.raises(DataError, match="needs labels"):
        DataMetric("accuracy", feeds)(_fixed(y))


def test_label_free_baselines_and_a_user_callable_equal_to_accuracy(compiled_mlp):
    from anacompile.evaluate.datasets import load_digits_split

    for name, fp32 in (("agreement", 1.0), ("cosine", 1.0), ("nmse", 0.0)):
        r = evaluate(compiled_mlp, times="1d", chips=2, metric=name)
        assert r.metric == name
        assert r.baseline == pytest.approx(fp32, abs=1e-6)
        assert r.accuracy_mean[0] < fp32  # analog chips differ from FP32
    test = load_digits_split()[1]

    def my_accuracy(run):  # the user's own data loop: one sample at a time
        hits = [
            int(np.argmax(run({"input": x[None].astype(np.float32)})[0])) == y
            for x, y in zip(test.x, test.y, strict=True)
        ]
        return float(np.mean(hits))

    mine = evaluate(compiled_mlp, data=None, times="1s,1d", chips=2, metric=my_accuracy, seed=3)
    ref = evaluate(compiled_mlp, times="1s,1d", chips=2, seed=3)
    assert mine.metric == "my_accuracy"
    assert mine.baseline == pytest.approx(ref.baseline)
    # a batch of 1 sample reads other noise slices than the batched run: same statistics, not the same draws
    assert np.allclose(mine.accuracy, ref.accuracy, atol=0.03)
    with pytest.raises(ConfigError, match="worker processes"):
        evaluate(compiled_mlp, data=None, times="1s", chips=2, workers=2, metric=lambda run: 1.0)


def test_metric_file(tmp_path, compiled_mlp):
    f = tmp_path / "user_metric.py"
    f.write_text(
        "import numpy as np\n"
        "from anacompile.evaluate.datasets import load_digits_split\n"
        "TEST = load_digits_split()[1]\n"
        "def top1(run):\n"
        "    y = run({'input': TEST.x.astype(np.float32)})[0]\n"
        "    return float(np.mean(y.argmax(1) == TEST.y))\n"
        "def bad(run):\n"
        "    return 'good'\n"
        "def nan(run):\n"
        "    return float('nan')\n"
    )
    r = evaluate(compiled_mlp, data=None, times="1s", chips=2, metric=f"{f}:top1", seed=1)
    ref = evaluate(compiled_mlp, times="1s", chips=2, seed=1)
    assert r.accuracy == ref.accuracy  # the same feeds in one batch: the same numbers
    with pytest.raises(DataError, match="must return a float"):
        evaluate(compiled_mlp, data=None, times="1s", chips=1, metric=f"{f}:bad")
    with pytest.raises(DataError, match="finite"):
        score(load_metric_file(f"{f}:nan"), lambda feeds: [], "nan")
    with pytest.raises(ConfigError, match="has no function 'nope'"):
        load_metric_file(f"{f}:nope")
    with pytest.raises(ConfigError, match="does not exist"):
        load_metric_file(f"{tmp_path / 'missing.py'}:top1")
    with pytest.raises(ConfigError, match="not a Python file"):
        load_metric_file(f"{tmp_path / 'm.txt'}:top1")
    with pytest.raises(ConfigError, match="FILE.py:FUNCTION"):
        load_metric_file("accuracyy")
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('no data here')\n")
    with pytest.raises(ConfigError, match="RuntimeError: no data here"):
        load_metric_file(f"{broken}:f")


def test_cli_metric_and_mvm_error_metric(tmp_path, compiled_mlp):
    import json

    from anacompile.cli import main
    from anacompile.evaluate.mvm_error import mvm_error

    out = tmp_path / "r.json"
    assert (
        main(
            [
                "evaluate",
                str(compiled_mlp),
                "--metric",
                "agreement",
                "--times",
                "1s",
                "--chips",
                "2",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    doc = json.loads(out.read_text())
    assert doc["metric"] == "agreement" and doc["baseline"] == 1.0
    assert main(["evaluate", str(compiled_mlp), "--metric", f"{tmp_path}/none.py:f", "--chips", "1"]) == 1
    r = mvm_error(compiled_mlp, times="1s,1d", chips=2, metric="accuracy")
    assert r.metric == "accuracy" and len(r.metric_mean) == 2 and r.metric_baseline > 0.9
