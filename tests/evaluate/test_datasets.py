"""The shipped digits split is scikit-learn's stratified split, and loads without scikit-learn's import."""

import numpy as np

from anacompile.evaluate.datasets import DIGITS_SPLIT_SEED, DIGITS_TEST_FRACTION, load_digits_split


def test_split_equals_sklearn_train_test_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(
        (d.data / 16.0).astype(np.float32),
        d.target,
        stratify=d.target,
        test_size=DIGITS_TEST_FRACTION,
        random_state=DIGITS_SPLIT_SEED,
    )
    train, test = load_digits_split()
    np.testing.assert_array_equal(train.x, x_tr)
    np.testing.assert_array_equal(test.x, x_te)
    np.testing.assert_array_equal(train.y, y_tr)
    np.testing.assert_array_equal(test.y, y_te)
    assert train.x.dtype == np.float32 and test.y.dtype == np.int64
    assert test.x.shape == (540, 64) and 0.0 <= test.x.min() and test.x.max() <= 1.0
