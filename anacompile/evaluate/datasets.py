"""Built-in evaluation data sets, all shipped inside installed packages (no download).

``digits``: scikit-learn's 1797 8x8 handwritten digits (UCI), pixel values scaled to [0, 1]. The split is
fixed (stratified, 30 % test, ``random_state=0``) so that the ``models/`` training scripts and ``evaluate``
use exactly the same held-out test images.
"""

from __future__ import annotations

from dataclasses import dataclass

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

    Returns:
        ``(train, test)``; ``x`` has shape (N, 64), float32; ``y`` has shape (N,), int64.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED, stratify=y
    )
    return Split(x_tr, y_tr), Split(x_te, y_te)


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
