"""FoldConstantWeightsPass: fold simple ops between a stored weight and the op that uses it into one constant.

Exporters often store a weight in another form than the op consumes: PyTorch's ``nn.Linear`` as W^T behind
a Transpose, tied embeddings as the embedding matrix behind a Transpose, half-precision weights behind a
Cast, quantised weights behind DequantizeLinear or the weight-only-quantisation pattern
``Mul(Cast(W_int8), scale)``. A crossbar stores numbers, not a program, so the chain is evaluated once at
compile time (numpy, exact ONNX semantics of each op) and the weight input is replaced by the folded
constant; :class:`~anacompile.passes.mark_analog_ops.MarkAnalogOpsPass` then sees a constant weight.

Rules:

* Only the weight inputs of weight-bearing ops (:data:`WEIGHT_INPUTS`) are folded, and only through the ops
  of :data:`FOLDABLE_OPS` whose inputs are all constants (initializers that are not graph inputs, or
  Constant nodes), to a floating-point result.
* The folded tensor is a new initializer in the dtype the chain produces (float32 for the usual chains); its
  ``meta`` records where it came from (:data:`SOURCE_KEY`), for the compile report.
* Chain nodes and initializers that nothing else uses are removed; a chain that other ops still read (a
  Transpose feeding both a MatMul and a Gather) is left in place for them.
* A weight that is already a constant is left alone, so a second run changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from anacompile.passes._layer import walk_graphs, walk_nodes
from anacompile.passes._names import register_initializer, unique_name

__all__ = [
    "FOLDABLE_OPS",
    "SOURCE_KEY",
    "WEIGHT_INPUTS",
    "FoldConstantWeightsPass",
    "WeightSource",
    "fold_value",
    "tensor_readers",
    "weight_source",
]

logger = logging.getLogger(__name__)

SOURCE_KEY = "anacompile.weight_source"
"""``Value.meta`` key of a folded weight: its :class:`WeightSource`."""


@dataclass(frozen=True)
class WeightSource:
    """Where a folded weight came from.

    Attributes:
        expression: the folded chain over the source model's tensor names, e.g. ``Transpose(embed.weight)``
            or ``Mul(Cast(w_q), w_scale)``.
        tensor: the largest stored tensor the chain reads (the one that other ops may share).
    """

    expression: str
    tensor: str


WEIGHT_INPUTS: dict[tuple[str, str], tuple[int, ...]] = {
    ("", "MatMul"): (1,),
    ("", "Gemm"): (1, 2),
    ("", "Conv"): (1, 2),
    ("", "ConvTranspose"): (1, 2),
    ("", "LSTM"): (1, 2, 3),
    ("", "GRU"): (1, 2, 3),
    ("", "RNN"): (1, 2, 3),
}
"""Inputs of weight-bearing ops, by (domain, op_type), that may be folded (weights and biases)."""

MAX_DEPTH = 32  # longest chain followed back from a weight input


def _attr(node: ir.Node, name: str, default):
    a = node.attributes.get(name)
    return default if a is None else a.value


def _axes(node: ir.Node, args: list[np.ndarray | None]) -> list[int] | None:
    """Squeeze/Unsqueeze axes: the second input (opset >= 13) or the ``axes`` attribute (older)."""
    if len(args) > 1 and args[1] is not None:
        return [int(a) for a in np.asarray(args[1]).reshape(-1)]
    axes = _attr(node, "axes", None)
    return None if axes is None else [int(a) for a in axes]


def _reshape(node: ir.Node, args: list[np.ndarray | None]) -> np.ndarray:
    x, shape = args[0], [int(d) for d in np.asarray(args[1]).reshape(-1)]
    if not _attr(node, "allowzero", 0):
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return x.reshape(shape)


def _flatten(node: ir.Node, args: list[np.ndarray | None]) -> np.ndarray:
    x = args[0]
    axis = int(_attr(node, "axis", 1))
    axis = axis + x.ndim if axis < 0 else axis
    return x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)


def _squeeze(node: ir.Node, args: list[np.ndarray | None]) -> np.ndarray:
    axes = _axes(node, args)
    return np.squeeze(args[0]) if axes is None else np.squeeze(args[0], axis=tuple(axes))


def _unsqueeze(node: ir.Node, args: list[np.ndarray | None]) -> np.ndarray:
    axes = _axes(node, args)
    if axes is None:
        raise ValueError("Unsqueeze without axes")
    return np.expand_dims(args[0], axis=tuple(axes))


def _cast(node: ir.Node, args: list[np.ndarray | None]) -> np.ndarray:
    return args[0].astype(ir.DataType(int(_attr(node, "to", 1))).numpy())


def _transpose(node: ir.Node, args: list[np.ndarray | None]) -> np.ndarray:
    perm = _attr(node, "perm", None)
    return np.transpose(args[0], None if perm is None else [int(p) for p in perm])


def _dequantize_linear(node: ir.Node, args: list[np.ndarray | None]) -> np.ndarray:
    """y = (x - zero_point) * scale, per tensor, per axis or per block (ONNX DequantizeLinear)."""
    x, scale = args[0], np.asarray(args[1])
    zero = args[2] if len(args) > 2 and args[2] is not None else None
    out_type = int(_attr(node, "output_dtype", 0))
    dtype = ir.DataType(out_type).numpy() if out_type else scale.dtype
    axis = int(_attr(node, "axis", 1))
    axis = axis + x.ndim if axis < 0 else axis
    block = int(_attr(node, "block_size", 0))

    def expand(p: np.ndarray) -> np.ndarray:
        p = np.asarray(p)
        if p.ndim == 0 or (p.size == 1 and p.ndim <= 1):
            return p.reshape(())
        if block > 0:  # blocked: one parameter per block_size elements along axis
            p = np.repeat(p, block, axis=axis)
            return np.take(p, np.arange(x.shape[axis]), axis=axis)
        shape = [1] * x.ndim
        shape[axis] = p.size
        return p.reshape(shape)

    xf = x.astype(np.float32)
    if zero is not None:
        xf = xf - expand(zero).astype(np.float32)
    return (xf * expand(scale).astype(np.float32)).astype(dtype)


def _slice(node: ir.Node, args: list[np.ndarray | None]) -> np.ndarray:
    """ONNX Slice: starts, ends, axes, steps as inputs (opset >= 10) or attributes (older); Python slicing
    clamps out-of-range bounds exactly as the ONNX spec does."""
    x = args[0]

    def ints(i: int, attr: str) -> list[int] | None:
        if len(args) > i and args[i] is not None:
            return [int(v) for v in np.asarray(args[i]).reshape(-1)]
        a = _attr(node, attr, None) if len(args) == 1 else None
        return None if a is None else [int(v) for v in a]

    starts, ends = ints(1, "starts"), ints(2, "ends")
    if starts is None or ends is None:
        raise ValueError("Slice without starts/ends")
    axes = ints(3, "axes") or list(range(len(starts)))
    steps = ints(4, "steps") or [1] * len(starts)
    index = [slice(None)] * x.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        if step == 0:
            raise ValueError("Slice step 0")
        index[axis + x.ndim if axis < 0 else axis] = slice(start, end, step)
    return x[tuple(index)]


FOLDABLE_OPS: dict[tuple[str, str], Callable[[ir.Node, list[np.ndarray | None]], np.ndarray]] = {
    ("", "Identity"): lambda node, args: args[0],
    ("", "Cast"): _cast,
    ("", "Transpose"): _transpose,
    ("", "Reshape"): _reshape,
    ("", "Flatten"): _flatten,
    ("", "Squeeze"): _squeeze,
    ("", "Unsqueeze"): _unsqueeze,
    ("", "DequantizeLinear"): _dequantize_linear,
    ("", "Mul"): lambda node, args: args[0] * args[1],
    ("", "Slice"): _slice,
    ("", "Concat"): lambda node, args: np.concatenate(args, axis=int(_attr(node, "axis", 0))),
}
"""Ops folded through, by (domain, op_type): each evaluates its constant inputs with numpy."""

_PARAMETER_INPUTS = {
    "Reshape": (1,),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "DequantizeLinear": (2,),
    "Slice": (1, 2, 3, 4),
}
"""Inputs that parametrise an op (shapes, axes, zero points): left out of the source expression."""


def _constant(value: ir.Value) -> ir.TensorProtocol | None:
    """The tensor of a value that cannot change at run time (an overridable initializer can)."""
    if value.is_graph_input():
        return None
    return ir.convenience.get_const_tensor(value)


def fold_value(value: ir.Value, depth: int = 0) -> tuple[np.ndarray, str, list[ir.Value]] | None:
    """Evaluate ``value`` if it is a constant behind :data:`FOLDABLE_OPS`.

    Returns:
        ``(array, expression, leaves)`` where ``expression`` spells the chain over the stored tensors'
        names (``Transpose(embed.weight)``) and ``leaves`` are the data tensors it reads, largest first;
        ``None`` if the value depends on anything computed at run time.
    """
    tensor = _constant(value)
    if tensor is not None:
        return tensor.numpy(), value.name or "?", [value]
    node = value.producer()
    if node is None or depth >= MAX_DEPTH:
        return None
    fn = FOLDABLE_OPS.get((node.domain, node.op_type))
    if fn is None or len(node.outputs) != 1:
        return None
    args: list[np.ndarray | None] = []
    shown: list[str] = []
    leaves: list[ir.Value] = []
    for i, inp in enumerate(node.inputs):
        if inp is None:
            args.append(None)
            continue
        folded = fold_value(inp, depth + 1)
        if folded is None:
            return None
        array, expr, inner = folded
        args.append(array)
        if i not in _PARAMETER_INPUTS.get(node.op_type, ()):
            shown.append(expr)
            leaves += inner
    try:
        out = np.asarray(fn(node, args))
    except (ValueError, TypeError, IndexError) as err:  # malformed attributes: leave the chain to the runtime
        logger.debug("not folding %s (%s): %s", node.name, node.op_type, err)
        return None
    leaves.sort(key=lambda v: -_size(v))
    return out, f"{node.op_type}({', '.join(shown)})", leaves


def _size(value: ir.Value) -> int:
    tensor = _constant(value)
    return 0 if tensor is None else int(tensor.size)


class FoldConstantWeightsPass(ir.passes.InPlacePass):
    """Replace every weight input computed from constants by simple ops with one folded constant.

    Weight-bearing ops in If branches and Loop/Scan bodies (any depth) are folded too, and a weight that is a
    ``Constant`` node's output (an exporter's inlined weight, e.g. in both branches of an ``If``) is lifted to
    an initializer of the same name: every folded or lifted weight is an initializer of the main graph, which
    the subgraph reads as an outer-scope value, so the later passes see all weights in one place.
    """

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        main = model.graph
        graphs = [g for g, _ in walk_graphs(main)]
        folded: dict[int, ir.Value] = {}  # id(chain output) -> folded initializer, shared by all its users
        names = set()
        for g in graphs:
            names |= {v.name for v in g.initializers.values()} | {v.name for v in g.inputs}
            names |= {out.name for node in g for out in node.outputs}
        chains: list[ir.Node] = []
        modified = False
        for graph in graphs:
            for node in list(graph):
                for index in WEIGHT_INPUTS.get((node.domain, node.op_type), ()):
                    value = node.inputs[index] if index < len(node.inputs) else None
                    if value is None or value.producer() is None:
                        continue
                    if _constant(value) is not None:
                        if value.producer().op_type == "Constant" and value.producer().domain == "":
                            _lift_constant(main, value)
                            modified = True
                        continue
                    new = folded.get(id(value))
                    if new is None:
                        result = fold_value(value)
                        if result is None or not np.issubdtype(result[0].dtype, np.floating):
                            continue
                        array, expr, leaves = result
                        new = register_initializer(main, unique_name(f"{value.name or 'weight'}.folded", names), array)
                        new.meta[SOURCE_KEY] = WeightSource(expression=expr, tensor=leaves[0].name or "")
                        folded[id(value)] = new
                        chains.append(value.producer())
                        logger.info("folded %s into constant %s", expr, new.name)
                    node.replace_input_with(index, new)
                    modified = True
        for producer in chains:
            _remove_unused(main, producer)
        return ir.passes.PassResult(model, modified=modified)


def _lift_constant(main: ir.Graph, value: ir.Value) -> None:
    """A ``Constant`` node's output read as a weight becomes a main-graph initializer of the same name."""
    node = value.producer()
    tensor = ir.convenience.get_const_tensor(value)
    lifted = register_initializer(main, value.name or "weight", tensor.numpy())
    ir.convenience.replace_all_uses_with(value, lifted, replace_graph_outputs=True)
    node.graph.remove(node, safe=True)


def _remove_unused(main: ir.Graph, node: ir.Node | None) -> None:
    """Remove ``node`` (of any graph) if nothing reads its outputs, then the same for its inputs' producers
    and the main graph's initializers."""
    if node is None or node.graph is None:
        return
    if any(out.uses() or out.is_graph_output() for out in node.outputs):
        return
    inputs = [v for v in node.inputs if v is not None]
    node.graph.remove(node, safe=True)
    for value in inputs:
        if value.uses():
            continue
        if value.is_initializer() and not value.is_graph_input() and not value.is_graph_output():
            if main.initializers.get(value.name) is value:
                del main.initializers[value.name]
        else:
            _remove_unused(main, value.producer())


def weight_source(value: ir.Value | None) -> WeightSource | None:
    """Where the weight ``value`` of an op comes from: a folded chain or a stored tensor; None otherwise."""
    if value is None:
        return None
    source = value.meta.get(SOURCE_KEY)
    if source is not None:
        return source
    if value.is_initializer() and not value.is_graph_input():
        return WeightSource(expression=value.name or "", tensor=value.name or "")
    return None


def tensor_readers(graph: ir.Graph) -> dict[str, list[ir.Node]]:
    """Stored tensor name -> the ops that read it, directly, through :data:`FOLDABLE_OPS` or folded.

    Ops of :data:`FOLDABLE_OPS` themselves are looked through, not listed: in ``Gather(E)`` and
    ``MatMul(x, Transpose(E))`` the readers of ``E`` are the Gather and the MatMul. A folded initializer
    counts as a read of the tensor it was folded from.
    """
    readers: dict[str, list[ir.Node]] = {}
    for node, _ in walk_nodes(graph):  # If/Loop/Scan bodies too
        if (node.domain, node.op_type) in FOLDABLE_OPS:
            continue
        for value in node.inputs:
            for name in _stored_sources(value, 0):
                users = readers.setdefault(name, [])
                if node not in users:
                    users.append(node)
    return readers


def _stored_sources(value: ir.Value | None, depth: int) -> set[str]:
    if value is None or depth >= MAX_DEPTH:
        return set()
    source = value.meta.get(SOURCE_KEY)
    if source is not None:
        return {source.tensor}
    if value.is_initializer() and not value.is_graph_input():
        return {value.name} if value.name else set()
    node = value.producer()
    if node is None or (node.domain, node.op_type) not in FOLDABLE_OPS:
        return set()
    skip = _PARAMETER_INPUTS.get(node.op_type, ())
    return set().union(*(_stored_sources(v, depth + 1) for i, v in enumerate(node.inputs) if i not in skip))
