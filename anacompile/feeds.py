"""Evaluation and calibration data: built-in sets or an .npz with arrays named after the model inputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx

from anacompile.datasets import load_builtin
from anacompile.errors import DataError

__all__ = ["LABELS_KEY", "load_feeds", "model_input_specs"]

LABELS_KEY = "labels"

_NP_TYPES = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.INT64: np.int64,
             onnx.TensorProto.INT32: np.int32, onnx.TensorProto.DOUBLE: np.float64}


def model_input_specs(proto: onnx.ModelProto) -> list[tuple[str, list[int | None], type]]:
    """(name, dims with None for dynamic, numpy dtype) of every real input (not an overridable initializer)."""
    inits = {i.name for i in proto.graph.initializer}
    specs = []
    for vi in proto.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        specs.append((vi.name, dims, _NP_TYPES.get(tt.elem_type, np.float32)))
    return specs


def load_feeds(data: str | os.PathLike[str], proto: onnx.ModelProto, part: str = "test",
               limit: int | None = None) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Return ``(feeds, labels)`` for a model from a built-in set name or an .npz file.

    Built-in sets give flat features that are reshaped to the model's single input shape (batch first),
    e.g. digits' 64 pixels to (N, 64), (N, 1, 8, 8) or (N, 8, 8).
    """
    specs = model_input_specs(proto)
    if str(data).endswith(".npz"):
        path = Path(data)
        if not path.is_file():
            raise DataError(f"Data file {path} does not exist.")
        try:
            arrays = dict(np.load(path, allow_pickle=False))
        except (OSError, ValueError) as err:
            raise DataError(f"Data file {path} is not a readable .npz: {err}") from err
        feeds = {}
        for name, dims, dtype in specs:
            if name not in arrays:
                raise DataError(f"Data file {path} has no array {name!r} for model input {name!r} "
                                f"(arrays: {sorted(arrays)}).")
            feeds[name] = _fit(arrays[name], name, dims, dtype)
        labels = arrays.get(LABELS_KEY)
    else:
        split = load_builtin(str(data), part)
        if len(specs) != 1:
            raise DataError(f"Built-in data set {data!r} feeds one input, the model has {len(specs)} "
                            f"({[s[0] for s in specs]}); pass an .npz with one array per input.")
        name, dims, dtype = specs[0]
        feeds = {name: _fit(split.x, name, dims, dtype)}
        labels = split.y
    if limit is not None:
        feeds = {k: v[:limit] for k, v in feeds.items()}
        labels = None if labels is None else labels[:limit]
    return feeds, labels


def _fit(x: np.ndarray, name: str, dims: list[int | None], dtype: type) -> np.ndarray:
    x = np.asarray(x)
    static = dims[1:]
    if all(d is not None for d in static) and static:
        size = int(np.prod(static))
        if x[0].size != size:
            raise DataError(f"Model input {name!r} expects samples of shape {static} ({size} values), the data has "
                            f"{list(x.shape[1:])} ({x[0].size} values).")
        x = x.reshape((x.shape[0], *static))
    return np.ascontiguousarray(x.astype(dtype, copy=False))
