"""Small graph helpers shared by the passes: unique names and new initializers."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

__all__ = ["register_initializer", "unique_name"]


def unique_name(name: str, used: set[str], sanitize: bool = False) -> str:
    """``name``, or ``name_2``, ``name_3``, ... the first not in ``used``; recorded in ``used``.

    With ``sanitize``, characters other than letters, digits, ``_`` and ``-`` become ``_`` first (layer
    names become initializer-name prefixes and file-friendly report keys).
    """
    if sanitize:
        name = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in name).strip("_") or "layer"
    candidate, i = name, 1
    while candidate in used:
        i += 1
        candidate = f"{name}_{i}"
    used.add(candidate)
    return candidate


def register_initializer(graph: ir.Graph, name: str, array: np.ndarray | ir.ExternalTensor) -> ir.Value:
    """Register ``array`` as initializer ``name``: no copy of a contiguous array (0-d arrays stay 0-d), and a
    memory-mapped tensor of the compiler's scratch file stays on disk."""
    if isinstance(array, ir.ExternalTensor):
        tensor, dtype = array, array.dtype
    else:
        array = np.asarray(array, order="C")  # not ascontiguousarray, which turns 0-d arrays into 1-d ones
        tensor, dtype = ir.tensor(array, name=name), ir.DataType.from_numpy(array.dtype)
    value = ir.Value(name=name, const_value=tensor)
    value.shape = ir.Shape(array.shape)
    value.type = ir.TensorType(dtype)
    graph.register_initializer(value)
    return value
