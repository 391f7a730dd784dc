"""Evaluation and calibration data: built-in sets or an .npz with arrays named after the model inputs."""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import onnx

from anacompile.contract import chip_state_inputs
from anacompile.datasets import load_builtin
from anacompile.errors import DataError

__all__ = ["LABELS_KEY", "feed_batches", "is_whole_inputs", "load_feeds", "load_npz", "model_input_specs"]

LABELS_KEY = "labels"

_NP_TYPES = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.DOUBLE: np.float64,
}


def _np_type(elem_type: int) -> type:
    """The numpy type of an ONNX element type (bool conditions, int8 ids, ...); float32 when unknown."""
    if elem_type in _NP_TYPES:
        return _NP_TYPES[elem_type]
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).type
    except (KeyError, ValueError, TypeError):
        return np.float32


def model_input_specs(proto: onnx.ModelProto) -> list[tuple[str, list[int | None], type]]:
    """(name, dims with None for dynamic, numpy dtype) of every real input (not an overridable initializer,
    nor the chip state a ``chip_state: none`` file is fed by the session). A negative dim (some exporters,
    e.g. Paddle's, write -1 for a dynamic one) is dynamic too."""
    inits = {i.name for i in proto.graph.initializer} | chip_state_inputs(proto)
    specs = []
    for vi in proto.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None for d in tt.shape.dim]
        specs.append((vi.name, dims, _np_type(tt.elem_type)))
    return specs


def load_feeds(
    data: str | os.PathLike[str], proto: onnx.ModelProto, part: str = "test", limit: int | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Return ``(feeds, labels)`` for a model from a built-in set name or an .npz file.

    Built-in sets give flat features that are reshaped to the model's single input shape (batch first),
    e.g. digits' 64 pixels to (N, 64), (N, 1, 8, 8) or (N, 8, 8).
    """
    specs = model_input_specs(proto)
    if str(data).endswith(".npz"):
        path = Path(data)
        if not path.is_file():
            raise DataError(f"Data file {path} does not exist.")
        arrays = load_npz(path)
        feeds = {}
        for name, dims, dtype in specs:
            if name not in arrays:
                raise DataError(
                    f"Data file {path} has no array {name!r} for model input {name!r} (arrays: {sorted(arrays)})."
                )
            feeds[name] = _fit(arrays[name], name, dims, dtype, f"Data file {path}: ")
        labels = arrays.get(LABELS_KEY)
        _check_rows(feeds, labels, path)
    else:
        split = load_builtin(str(data), part)
        if len(specs) != 1:
            raise DataError(
                f"Built-in data set {data!r} feeds one input, the model has {len(specs)} "
                f"({[s[0] for s in specs]}); pass an .npz with one array per input."
            )
        name, dims, dtype = specs[0]
        feeds = {name: _fit(split.x, name, dims, dtype)}
        labels = split.y
    if limit is not None:
        feeds = {k: v[:limit] for k, v in feeds.items()}
        labels = None if labels is None else labels[:limit]
    return feeds, labels


def load_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read an .npz of plain numeric arrays, refusing (before any allocation) headers that declare more data
    than the file holds or than fits in memory, object arrays and malformed archives."""
    path = Path(path)
    budget = _memory_budget()
    total = 0
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.filename.endswith(".npy"):
                    raise DataError(
                        f"Data file {path}: member {info.filename!r} is not a .npy array; an .npz holds "
                        "arrays only (numpy.savez)."
                    )
                with z.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                    elif version == (2, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                    else:
                        raise DataError(
                            f"Data file {path}: array {info.filename!r} has .npy format {version}; "
                            "save it with numpy.savez."
                        )
                    header = f.tell()
                if dtype.hasobject or dtype.kind not in "biuf":
                    raise DataError(
                        f"Data file {path}: array {info.filename[:-4]!r} has dtype {dtype}; only numeric "
                        "arrays (bool, int, float) are accepted."
                    )
                declared = math.prod(shape) * dtype.itemsize
                if declared != info.file_size - header:
                    raise DataError(
                        f"Data file {path}: array {info.filename[:-4]!r} declares shape {list(shape)} "
                        f"({declared:,} bytes) but holds {info.file_size - header:,} bytes; the file is "
                        "corrupt: save it again."
                    )
                total += declared
                if total > budget:
                    raise DataError(
                        f"Data file {path} declares {total:,} bytes of arrays, more than the "
                        f"{budget:,} bytes of memory available; use a smaller data set."
                    )
        return dict(np.load(path, allow_pickle=False))
    except DataError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, NotImplementedError) as err:
        raise DataError(
            f"Data file {path} is not a readable .npz ({type(err).__name__}: {err}); save it with numpy.savez."
        ) from err


def _memory_budget() -> int:
    """Half the physical memory (bytes): the most an .npz may declare."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")) // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def _check_rows(feeds: dict[str, np.ndarray], labels: np.ndarray | None, path: Path) -> None:
    """Every input has the same number (>= 1) of finite rows; labels are finite numbers, one per row."""
    rows = {name: int(x.shape[0]) for name, x in feeds.items()}
    if len(set(rows.values())) > 1:
        raise DataError(f"Data file {path}: the inputs have different numbers of samples ({rows}).")
    n = next(iter(rows.values()), None)
    for name, x in feeds.items():
        if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
            raise DataError(f"Data file {path}: array {name!r} holds NaN or infinite values; clean the data.")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim != 1:
            raise DataError(
                f"Data file {path}: 'labels' has shape {list(labels.shape)}; it must be 1-D, one class "
                "index per sample."
            )
        if n is not None and labels.shape[0] != n:
            raise DataError(f"Data file {path}: {labels.shape[0]} labels for {n} samples; give one label per sample.")
        if np.issubdtype(labels.dtype, np.floating) and not np.isfinite(labels).all():
            raise DataError(f"Data file {path}: 'labels' holds NaN or infinite values; labels are class indices.")


def _fit(x: np.ndarray, name: str, dims: list[int | None], dtype: type, where: str = "") -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 0 or x.shape[0] == 0:
        what = "no sample axis" if x.ndim == 0 else "zero samples"
        raise DataError(
            f"{where}model input {name!r}: the data has {what} (shape {list(x.shape)}); give at least one sample."
        )
    if x.dtype.kind not in "biuf":
        raise DataError(f"{where}model input {name!r}: the data has dtype {x.dtype}; give numbers.")
    static = dims[1:]
    if not dims or (is_whole_inputs(x, dims) and not _fits_batched(x, dims)):
        return np.ascontiguousarray(x.astype(dtype, copy=False))  # one whole input per sample
    if all(d is not None for d in static) and static:
        size = int(np.prod(static))
        if x[0].size != size:
            raise DataError(
                f"{where}model input {name!r} expects samples of shape {static} ({size} values), the "
                f"data has {list(x.shape[1:])} ({x[0].size} values)."
            )
        x = x.reshape((x.shape[0], *static))
    return np.ascontiguousarray(x.astype(dtype, copy=False))


def _fits_batched(x: np.ndarray, dims: list[int | None]) -> bool:
    static = dims[1:]
    if static and all(d is not None for d in static):
        return x[0].size == int(np.prod(static))
    return x.ndim == len(dims)


def is_whole_inputs(x: np.ndarray, dims: list[int | None]) -> bool:
    """Whether ``x`` stacks whole inputs of shape ``dims`` along a leading sample axis (one more axis than the
    input, every known dim equal): a recurrent state (2, 1, 128), a scalar such as a sample rate."""
    x = np.asarray(x)
    return x.ndim == len(dims) + 1 and all(d is None or d == s for d, s in zip(dims, x.shape[1:], strict=True))


def feed_batches(
    feeds: dict[str, np.ndarray],
    specs: list[tuple[str, list[int | None], type]],
    batch: int,
    limit: int | None = None,
) -> list[dict[str, np.ndarray]]:
    """Per-sample arrays (sample axis first) cut into the feeds of successive runs.

    An array that stacks whole inputs (:func:`is_whole_inputs`: one more axis than its model input, e.g. an
    LSTM state or a scalar) gives sample i's input itself, ``a[i]``; then every run takes one sample. Else
    arrays are batched along axis 0: ``batch`` samples per run, or exactly the model's batch where an input
    fixes it (a batch of 1: one sample per run). At most ``limit`` samples.
    """
    dims = {name: d for name, d, _ in specs}
    whole = {k: k in dims and len(dims[k]) + 1 == np.asarray(a).ndim for k, a in feeds.items()}
    n = min((int(np.asarray(a).shape[0]) for a in feeds.values() if np.asarray(a).ndim), default=1)
    if limit is not None:
        n = min(n, int(limit))
    fixed = [d[0] for k, d in dims.items() if k in feeds and not whole[k] and d and d[0] is not None and d[0] > 0]
    step = 1 if any(whole.values()) else (int(fixed[0]) if fixed else max(1, int(batch)))
    exact = bool(fixed) or any(whole.values())
    starts = range(0, n - step + 1 if exact else n, step)
    return [{k: (a[i, ...] if whole[k] else a[i : i + step]) for k, a in feeds.items()} for i in starts]
