"""Small graph helpers shared by the passes: unique names and new initializers."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx_ir as ir

__all__ = ["free_layer_prefixes", "register_initializer", "unique_name"]


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


def free_layer_prefixes(graph: ir.Graph, layers: Iterable[str]) -> list[str]:
    """Rename the source's own values named ``<layer>.<anything>`` for an analog layer (a bias ``fc1.bias`` of
    a Gemm named ``fc1``), in the graph and every subgraph, to ``<layer>_<anything>`` (made unique): the
    compiler names a layer's tensors ``<layer>.<suffix>`` (the contract), and the two must not meet. Layer
    names hold no ``.`` (``unique_name(sanitize=True)``); the main graph's inputs and outputs keep their
    names (:class:`~anacompile.passes.mark_analog_ops.MarkAnalogOpsPass` gives no layer a name that one of
    them starts with). Returns the old names of the values renamed.
    """
    prefixes = set(layers)
    graphs = [graph] + [
        sub
        for node in ir.traversal.RecursiveGraphIterator(graph)
        for attr in node.attributes.values()
        if attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)
        for sub in (attr.value if attr.type == ir.AttributeType.GRAPHS else [attr.value])
    ]
    values: dict[int, ir.Value] = {}
    for g in graphs:
        inner = [] if g is graph else [*g.inputs, *g.outputs]
        for v in [*g.initializers.values(), *inner, *(out for node in g for out in node.outputs)]:
            values[id(v)] = v
    io = {id(v) for v in [*graph.inputs, *graph.outputs]}
    used = {v.name for v in values.values() if v.name} | {v.name for v in graph.inputs if v.name}
    renamed = []
    for v in values.values():
        if v.name and "." in v.name and v.name.split(".", 1)[0] in prefixes and id(v) not in io:
            renamed.append(v.name)
            v.name = unique_name(v.name.replace(".", "_", 1), used)  # onnx-ir re-keys a renamed initializer
    return renamed
