"""Built-in evaluation data sets, all shipped inside installed packages (no download).

``digits``: scikit-learn's 1797 8x8 handwritten digits (UCI), pixel values scaled to [0, 1]. The split is
fixed (stratified, 30 % test, ``random_state=0``) so that the ``models/`` training scripts and ``evaluate``
use exactly the same held-out test images.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
from dataclasses import dataclass
from importlib import resources

import numpy as np
from numpy.typing import NDArray

from anacompile.errors import DataError

__all__ = ["DIGITS_TEST_FRACTION", "DIGITS_SPLIT_SEED", "Split", "load_builtin", "load_digits_split"]

DIGITS_TEST_FRACTION = 0.3
DIGITS_SPLIT_SEED = 0


@dataclass(frozen=True)
class Split:
    """One data split: ``x`` float32 features (N, 64) in [0, 1] and ``y`` int64 labels (N,)."""

    x: NDArray[np.float32]
    y: NDArray[np.int64]


def load_digits_split() -> tuple[Split, Split]:
    """Return the fixed (train, test) split of scikit-learn's digits, features scaled to [0, 1].

    The images are read from the CSV file scikit-learn ships (without importing scikit-learn, which takes
    seconds); the split indices are those of ``train_test_split(test_size=0.3, random_state=0,
    stratify=y)``, stored in ``anacompile/data/digits_split.npz`` (a test checks they still agree).

    Returns:
        ``(train, test)``; ``x`` has shape (N, 64), float32; ``y`` has shape (N,), int64.
    """
    global _CACHE
    if _CACHE is None:
        table = np.loadtxt(gzip.open(_digits_csv()), delimiter=",")
        x = (table[:, :-1] / 16.0).astype(np.float32)
        y = table[:, -1].astype(np.int64)
        with resources.files("anacompile.data").joinpath("digits_split.npz").open("rb") as f:
            idx = np.load(f)
            train, test = idx["train"].astype(np.int64), idx["test"].astype(np.int64)
        _CACHE = (Split(x[train], y[train]), Split(x[test], y[test]))
    return _CACHE


_CACHE: tuple[Split, Split] | None = None


def _digits_csv() -> str:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise DataError(
            "The digits data set comes with scikit-learn, which is not installed: pip install scikit-learn."
        )
    path = os.path.join(os.path.dirname(spec.origin), "datasets", "data", "digits.csv.gz")
    if not os.path.isfile(path):
        raise DataError(f"scikit-learn's digits file is missing at {path}; reinstall scikit-learn.")
    return path


def load_builtin(name: str, part: str = "test") -> Split:
    """Return a built-in data set split by name (``digits``) and part (``train`` or ``test``)."""
    if name != "digits":
        raise DataError(f"Unknown built-in data set {name!r}. Built-in: digits; or pass a .npz file.")
    train, test = load_digits_split()
    if part == "train":
        return train
    if part == "test":
        return test
    raise DataError(f"Unknown split {part!r} of data set {name!r}: use 'train' or 'test'.")
