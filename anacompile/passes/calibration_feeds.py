"""Calibration data as a list of feed dicts, whatever form the user gives it in.

The compiler runs calibration data through the (still digital) model to set static DAC input ranges and
calibrated ADC output ranges. Users hold such data in several forms, all accepted:

* a dict of batched arrays named after the model inputs (an ``.npz`` or a built-in set, loaded by the
  compiler), cut into batches the model accepts: one sample per feed when its batch dimension is fixed to 1
  or when an array stacks whole inputs (one more axis than its input: a recurrent state (N, 2, 1, 128)
  or a scalar input such as a sample rate (N,), :func:`anacompile.feeds.feed_batches`);
* any iterable of feed dicts (``[{"image": x1}, {"image": x2}, ...]``), one run each, so models with a fixed
  batch of 1 or variable shapes (an OCR model's width) calibrate too;
* an object with ``get_next()`` returning a feed dict and then ``None``, as onnxruntime's
  ``CalibrationDataReader`` has (onnxruntime.quantization).

At most ``limit`` samples are used (the first ones), counted along each feed's batch axis.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from anacompile.errors import DataError

__all__ = ["BATCH", "calibration_batches"]

BATCH = 64
"""Samples per run when a dict of batched arrays is cut into batches (a batch axis that is not fixed)."""


def calibration_batches(
    data, input_specs: list[tuple[str, list[int | None], type]], limit: int, what: str = "calibration data"
) -> list[dict[str, np.ndarray]]:
    """The calibration runs: a list of feed dicts (model input name -> array), at most ``limit`` samples.

    Args:
        data: a dict of batched arrays, an iterable of feed dicts, or an object with ``get_next()``.
        input_specs: the model's inputs as (name, dims with None for symbolic ones, numpy dtype).
        limit: most samples used.
        what: how messages name the data.

    Raises:
        DataError: no feeds, a feed that is not a dict, or one that lacks a model input.
    """
    names = [name for name, _, _ in input_specs]
    if isinstance(data, Mapping):
        return _cut(dict(data), input_specs, limit, what)
    if hasattr(data, "get_next"):
        feeds_iter = iter(data.get_next, None)
    elif isinstance(data, Iterable) and not isinstance(data, (str, bytes)):
        feeds_iter = iter(data)
    else:
        raise DataError(
            f"{what}: expected a built-in set name, an .npz file, a dict of arrays, an iterable of feed "
            f"dicts or an object with get_next(); got {type(data).__name__}."
        )
    feeds, samples = [], 0
    for i, feed in enumerate(feeds_iter):
        if not isinstance(feed, Mapping):
            raise DataError(f"{what}: item {i} is a {type(feed).__name__}, not a dict of model inputs {names}.")
        missing = [n for n in names if n not in feed]
        if missing:
            raise DataError(f"{what}: item {i} lacks model input(s) {missing}; the model takes {names}.")
        arrays = {n: _typed(feed[n], dtype) for n, _, dtype in input_specs}
        feeds.append(arrays)
        samples += _samples(arrays)
        if samples >= limit:
            break
    if not feeds:
        raise DataError(f"{what}: no feeds (the iterable or get_next() gave nothing).")
    return feeds


def _typed(x, dtype) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x).astype(dtype, copy=False))


def _samples(arrays: dict[str, np.ndarray]) -> int:
    first = next(iter(arrays.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim else 1


def _cut(arrays: dict[str, np.ndarray], input_specs, limit: int, what: str) -> list[dict[str, np.ndarray]]:
    """Batched arrays -> feeds of at most :data:`BATCH` samples, or 1 where the model fixes the batch to 1."""
    names = [name for name, _, _ in input_specs]
    missing = [n for n in names if n not in arrays]
    if missing:
        raise DataError(f"{what}: no array for model input(s) {missing}; the model takes {names}.")
    from anacompile.feeds import feed_batches

    arrays = {n: _typed(arrays[n], dtype) for n, _, dtype in input_specs}
    # arrays stacking whole inputs (a state, a scalar: one more axis than the input) give one sample per run
    return feed_batches(arrays, input_specs, BATCH, limit) or [dict(arrays)]  # fewer samples than a fixed batch
