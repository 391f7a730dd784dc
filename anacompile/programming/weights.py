"""Crossbar weight matrices of a model or array: orientation, loading, column normalisation, resampling.

Weights are read from ONNX (every constant initializer with >= 2 dims feeding the weight input of a MatMul,
Gemm or Conv node) or from a .npy array, and oriented as crossbar matrices (rows = inputs, columns = outputs).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from anacompile.errors import ConfigError, ModelLoadError
from anacompile.mapping.column_scaling import normalise_columns

__all__ = ["crossbar_matrices", "load_weight_matrices", "normalised_weights", "resample_weights"]


def crossbar_matrices(w: ArrayLike, op_type: str = "MatMul", trans_b: bool = False) -> list[NDArray[np.float64]]:
    """Orient a weight tensor as crossbar matrices of shape (inputs, outputs).

    Args:
        w: the weight initializer.
        op_type: ``MatMul`` (W is (..., K, N)), ``Gemm`` (B is (K, N), or (N, K) with ``trans_b``) or ``Conv``
            (W is (O, C/group, k...), flattened to (C/group * prod k, O)).
        trans_b: Gemm's ``transB`` attribute.

    Returns:
        One or more float64 matrices (a batched MatMul weight gives one per batch entry).

    Raises:
        ConfigError: fewer than 2 dimensions or an unknown op type.
    """
    a = np.asarray(w, dtype=np.float64)
    if a.ndim < 2:
        raise ConfigError(f"A crossbar weight needs >= 2 dimensions, got shape {a.shape}.")
    if op_type == "Gemm":
        return [a.T if trans_b else a]
    if op_type == "Conv":
        return [a.reshape(a.shape[0], -1).T]
    if op_type == "MatMul":
        return list(a.reshape((-1,) + a.shape[-2:]))
    raise ConfigError(f"Unknown op type {op_type!r} for a crossbar weight: MatMul, Gemm or Conv.")


def load_weight_matrices(path: str | os.PathLike[str]) -> list[NDArray[np.float64]]:
    """Read the crossbar weight matrices of an ONNX model, or one matrix from a .npy file.

    Args:
        path: ``.onnx`` (every constant initializer with >= 2 dims that is the weight input of a MatMul, Gemm
            or Conv node) or ``.npy`` (a 2-D array is one (inputs, outputs) matrix; more dims are MatMul
            batches).

    Returns:
        The matrices, each (inputs, outputs), float64.

    Raises:
        ModelLoadError: the file is missing or unreadable, or holds no such weight.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"Weights file {str(path)!r} does not exist.")
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ModelLoadError(f"Cannot read {str(path)!r} as a .npy array: {err}.") from err
        if arr.ndim < 2 or arr.size == 0 or not np.issubdtype(arr.dtype, np.number):
            raise ModelLoadError(f"{str(path)!r}: need a numeric array with >= 2 dims, got {arr.dtype} {arr.shape}.")
        return crossbar_matrices(arr, "MatMul")
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(os.fspath(path))
    except Exception as err:  # onnx raises DecodeError, OSError, ...; re-raised as ours
        raise ModelLoadError(f"Cannot read {str(path)!r} as an ONNX model: {err}.") from err
    inits = {t.name: t for t in model.graph.initializer}
    mats: list[NDArray[np.float64]] = []
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm", "Conv") or len(node.input) < 2:
            continue
        tensor = inits.get(node.input[1])
        if tensor is None or len(tensor.dims) < 2:
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        mats.extend(crossbar_matrices(numpy_helper.to_array(tensor), node.op_type, bool(attrs.get("transB", 0))))
    if not mats:
        raise ModelLoadError(
            f"{str(path)!r} has no constant MatMul/Gemm/Conv weight with >= 2 dimensions to map onto crossbars."
        )
    return mats


def normalised_weights(matrices: Sequence[ArrayLike]) -> list[NDArray[np.float64]]:
    """u = W / gamma per matrix, gamma = per-column max |W| (the compiler's column scaling)."""
    return [normalise_columns(m)[0] for m in matrices]


def resample_weights(
    u_values: ArrayLike,
    n_rows: int,
    n_cols: int,
    rng: np.random.Generator,
) -> NDArray[np.float64]:
    """A (n_rows, n_cols) matrix with the distribution of ``u_values``: sorted quantiles, shuffled.

    The quantile sample represents the weight density (the importance kappa_j of Mackin et al. 2022) with far
    fewer weights than the network, as aihwkit's ``wpo.py`` does (512 x 20, sorted, interpolated, shuffled).
    """
    u = np.sort(np.asarray(u_values, dtype=np.float64).ravel())
    if u.size == 0:
        raise ConfigError("resample_weights: no weights given.")
    n = n_rows * n_cols
    q = np.interp((np.arange(n) + 0.5) / n * (u.size - 1), np.arange(u.size), u)
    return rng.permutation(q).reshape(n_rows, n_cols)
