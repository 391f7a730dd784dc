"""ONNX graph -> trainable PyTorch module: an interpreter that runs each node with torch functions.

:class:`OnnxModule` walks the ONNX graph in its (topological) node order and executes every node with the
torch implementation registered for its op type in :data:`OPS`. Every floating-point tensor of the graph with
more than one element -- initializers and the values of ``Constant`` nodes alike (files exported by some
tools keep their weights as ``Constant`` nodes) -- becomes an ``nn.Parameter``; scalars, integer tensors and
BatchNormalization running statistics are buffers. The module computes exactly what onnxruntime computes for
the covered ops (the tests compare both on every example model), so a gradient step changes the ONNX model's
weights and nothing else: :meth:`OnnxModule.export` writes the trained values back into a copy of the original
``ModelProto`` (same graph, inputs, outputs, names, opset).

Weight-bearing products (MatMul, Gemm, Conv, ConvTranspose, the gate products of LSTM/GRU/RNN) call
:meth:`OnnxModule.mvm` with an :class:`MVMSpec` that says how the weight's columns (crossbar columns: outputs)
lie, so a hardware-aware simulator (:mod:`anacompile.finetune.hwa`) can be plugged in without the ops knowing
about it.

Covered ops (default domain; opsets 7-23 where the op's signature changed, e.g. ``axes`` as attribute or
input): see :data:`OPS`. Control flow (If/Loop/Scan) and other domains are not covered: an
:class:`~anacompile.errors.UnsupportedModelError` names the first uncovered node.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn

from anacompile.errors import UnsupportedModelError

__all__ = ["OPS", "MVMSpec", "OnnxModule", "supported_ops"]

Tensor = torch.Tensor

_DTYPES = {
    onnx.TensorProto.FLOAT: torch.float32,
    onnx.TensorProto.DOUBLE: torch.float64,
    onnx.TensorProto.FLOAT16: torch.float16,
    onnx.TensorProto.BFLOAT16: torch.bfloat16,
    onnx.TensorProto.INT64: torch.int64,
    onnx.TensorProto.INT32: torch.int32,
    onnx.TensorProto.INT16: torch.int16,
    onnx.TensorProto.INT8: torch.int8,
    onnx.TensorProto.UINT8: torch.uint8,
    onnx.TensorProto.BOOL: torch.bool,
}


@dataclass(frozen=True)
class MVMSpec:
    """How one weight-bearing product lays out its weight, for the hardware-aware simulator.

    Attributes:
        key: the analog layer's key, ``"<node name>"`` or ``"<node name>/<part>"`` (recurrent W, R parts and
            directions).
        w_reduce: weight axes that run along a crossbar column (the inputs, rows); the remaining axes index the
            columns (outputs), so ``max|w|`` over ``w_reduce`` is the per-column scale.
        out_view: maps the per-column tensor (``w`` shape with 1 on ``w_reduce``) to a shape that broadcasts
            onto the product's output.
        groups: input channel groups with one input range each (grouped convolutions); 1 otherwise.
        channel_axis: axis of the input that holds the channels (grouped convolutions).
        weights: ONNX names of the stored tensors the weight is made of (clipped during training).
    """

    key: str
    w_reduce: tuple[int, ...]
    out_view: Callable[[Tensor], Tensor]
    groups: int = 1
    channel_axis: int = -1
    weights: tuple[str, ...] = ()


@dataclass
class _Node:
    index: int
    name: str
    op_type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)


def _attr_value(attr: onnx.AttributeProto) -> Any:
    if attr.type == onnx.AttributeProto.TENSOR:
        return numpy_helper.to_array(attr.t)
    if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
        return attr  # control flow: rejected when the op is looked up
    value = onnx.helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8") for v in value]
    return value


def _to_tensor(array: np.ndarray) -> Tensor:
    a = np.asarray(array)
    if a.dtype == np.uint16 or a.dtype.kind == "U" or a.dtype == object:
        raise UnsupportedModelError(f"tensor of dtype {a.dtype} is not supported by the fine-tuning lowering")
    return torch.from_numpy(np.array(a, copy=True, order="C"))


class OnnxModule(nn.Module):
    """A trainable torch module that computes an ONNX model's graph.

    Args:
        proto: the ONNX model (its default-domain opset is read from ``opset_import``).

    Raises:
        UnsupportedModelError: a node's op is not covered (the message names the node and op and lists the
            covered ops), or the graph uses control flow.
    """

    def __init__(self, proto: onnx.ModelProto) -> None:
        super().__init__()
        self.proto = proto
        graph = proto.graph
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 17)
        self.input_names = [vi.name for vi in graph.input if vi.name not in {i.name for i in graph.initializer}]
        self.output_names = [o.name for o in graph.output]
        self.params = nn.ParameterList()
        self._value_slot: dict[str, tuple[str, int]] = {}  # value name -> ("p"|"b", index)
        self._buffers_list: list[str] = []
        self.sources: dict[str, tuple[str, Any]] = {}  # value name -> ("initializer", name) | ("constant", index)
        bn_stats = {
            n.input[k] for n in graph.node if n.op_type == "BatchNormalization" for k in (3, 4) if len(n.input) > k
        }
        self.bn_stats = bn_stats
        for init in graph.initializer:
            self._add_tensor(init.name, numpy_helper.to_array(init), ("initializer", init.name))
        self.nodes: list[_Node] = []
        names: set[str] = set()
        for index, n in enumerate(graph.node):
            attrs = {a.name: _attr_value(a) for a in n.attribute}
            name = n.name if n.name and n.name not in names else f"{n.name or n.op_type}#{index}"
            names.add(name)
            node = _Node(index, name, n.op_type, list(n.input), list(n.output), attrs)
            if n.domain not in ("", "ai.onnx") or n.op_type not in OPS:
                raise UnsupportedModelError(
                    f"Node {node.name!r}: op {n.domain + '.' if n.domain else ''}{n.op_type} is not covered by "
                    f"the fine-tuning lowering (covered: {', '.join(supported_ops())}); please report it."
                )
            if any(isinstance(v, onnx.AttributeProto) for v in attrs.values()):
                raise UnsupportedModelError(
                    f"Node {node.name!r}: op {n.op_type} with a subgraph (control flow) is not covered by the "
                    "fine-tuning lowering."
                )
            if n.op_type == "Constant":
                value = _constant_value(attrs, node.name)
                self._add_tensor(n.output[0], value, ("constant", index))
                continue
            self.nodes.append(node)
        self.mvm_hook: Callable[[MVMSpec, Tensor, Tensor, Callable[[Tensor, Tensor], Tensor]], Tensor] | None = None
        self.batchnorm_train = False

    # ------------------------------------------------------------------------------------------ tensors

    def _add_tensor(self, name: str, value: np.ndarray, source: tuple[str, Any]) -> None:
        t = _to_tensor(value)
        self.sources[name] = source
        if t.is_floating_point() and t.numel() > 1 and name not in self.bn_stats:
            self.params.append(nn.Parameter(t))
            self._value_slot[name] = ("p", len(self.params) - 1)
        else:
            buf = f"b{len(self._buffers_list)}"
            self.register_buffer(buf, t)
            self._buffers_list.append(buf)
            self._value_slot[name] = ("b", len(self._buffers_list) - 1)

    def tensor(self, name: str) -> Tensor:
        """The current value of a stored tensor (initializer or Constant output) by its ONNX name."""
        kind, i = self._value_slot[name]
        return self.params[i] if kind == "p" else getattr(self, self._buffers_list[i])

    def is_stored(self, name: str) -> bool:
        """Whether ``name`` is an initializer or a Constant node's output."""
        return name in self._value_slot

    def named_onnx_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """(ONNX value name, parameter) of every trainable tensor."""
        return [(name, self.params[i]) for name, (kind, i) in self._value_slot.items() if kind == "p"]

    # -------------------------------------------------------------------------------------------- forward

    def mvm(self, spec: MVMSpec, x: Tensor, w: Tensor, fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
        """A weight-bearing product ``fn(x, w)``, through the hardware-aware simulator when one is plugged in."""
        if self.mvm_hook is None:
            return fn(x, w)
        return self.mvm_hook(spec, x, w, fn)

    def forward(self, *args: Tensor, fetch: Sequence[str] | None = None, **feeds: Tensor) -> list[Tensor]:
        """Run the graph on its inputs (positional in graph-input order, or by name).

        Returns:
            the values named in ``fetch`` (any value of the graph), by default the graph outputs.
        """
        env: dict[str, Tensor | None] = dict(zip(self.input_names, args, strict=False))
        env.update(feeds)
        env[""] = None
        for node in self.nodes:
            ins = [env[i] if i in env else self.tensor(i) for i in node.inputs]
            out = OPS[node.op_type](self, node, *ins)
            if not isinstance(out, (tuple, list)):
                out = (out,)
            for name, value in zip(node.outputs, out, strict=False):
                if name:
                    env[name] = value
        return [env[o] if o in env else self.tensor(o) for o in (self.output_names if fetch is None else fetch)]

    # --------------------------------------------------------------------------------------------- export

    def export(self) -> onnx.ModelProto:
        """A copy of the source model with every stored tensor replaced by its current value (same dtype)."""
        proto = copy.deepcopy(self.proto)
        inits = {init.name: init for init in proto.graph.initializer}
        for name, (kind, source) in self.sources.items():
            value = self.tensor(name).detach().cpu().numpy()
            if kind == "initializer":
                old = inits[source]
                if onnx.numpy_helper.to_array(old).dtype != value.dtype:
                    continue
                old.CopyFrom(numpy_helper.from_array(value, name=old.name))
            else:
                node = proto.graph.node[source]
                for attr in node.attribute:
                    if attr.name == "value":
                        attr.t.CopyFrom(numpy_helper.from_array(value, name=attr.t.name))
        return proto


def _constant_value(attrs: dict[str, Any], name: str) -> np.ndarray:
    if "value" in attrs:
        return np.asarray(attrs["value"])
    for key, dtype in (
        ("value_float", np.float32),
        ("value_floats", np.float32),
        ("value_int", np.int64),
        ("value_ints", np.int64),
    ):
        if key in attrs:
            return np.asarray(attrs[key], dtype=dtype)
    raise UnsupportedModelError(f"Constant node {name!r}: only tensor, float(s) and int(s) values are supported.")


# ------------------------------------------------------------------------------------------------- helpers


def _ints(t: Tensor | None) -> list[int] | None:
    return None if t is None else [int(v) for v in t.reshape(-1).tolist()]


def _axes(m: OnnxModule, node: _Node, axes_input: Tensor | None) -> list[int] | None:
    if "axes" in node.attrs:
        return list(node.attrs["axes"])
    return _ints(axes_input)


def _pads(pads: Sequence[int], nd: int) -> list[int]:
    """ONNX pads [b1..bn, e1..en] -> F.pad order (last dim first)."""
    out: list[int] = []
    for i in reversed(range(nd)):
        out += [pads[i], pads[i + nd]]
    return out


def _auto_pad(
    node: _Node, x: Tensor, kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int]
) -> list[int]:
    nd = len(kernel)
    mode = node.attrs.get("auto_pad", "NOTSET")
    if mode in ("NOTSET", "VALID"):
        return list(node.attrs.get("pads", [0] * (2 * nd))) if mode == "NOTSET" else [0] * (2 * nd)
    begin, end = [], []
    for i in range(nd):
        size = x.shape[2 + i]
        out = math.ceil(size / strides[i])
        total = max((out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size, 0)
        small = total // 2
        if mode == "SAME_UPPER":
            begin.append(small)
            end.append(total - small)
        else:
            begin.append(total - small)
            end.append(small)
    return begin + end


def _binary(fn: Callable[[Tensor, Tensor], Tensor]) -> Callable:
    return lambda m, node, a, b: fn(a, b)


def _unary(fn: Callable[[Tensor], Tensor]) -> Callable:
    return lambda m, node, x: fn(x)


def _div(m: OnnxModule, node: _Node, a: Tensor, b: Tensor) -> Tensor:
    if not a.is_floating_point() and not b.is_floating_point():
        return torch.div(a, b, rounding_mode="trunc")
    return a / b


def _pow(m: OnnxModule, node: _Node, a: Tensor, b: Tensor) -> Tensor:
    return torch.pow(a, b.to(a.dtype) if a.is_floating_point() else b)


def _cast(m: OnnxModule, node: _Node, x: Tensor) -> Tensor:
    return x.to(_DTYPES[node.attrs["to"]])


def _clip(m: OnnxModule, node: _Node, x: Tensor, lo: Tensor | None = None, hi: Tensor | None = None) -> Tensor:
    if "min" in node.attrs or "max" in node.attrs:
        lo_v, hi_v = node.attrs.get("min"), node.attrs.get("max")
        return torch.clamp(x, lo_v, hi_v)
    return torch.clamp(x, lo, hi)


def _leaky_relu(m, node, x):
    return F.leaky_relu(x, node.attrs.get("alpha", 0.01))


def _elu(m, node, x):
    return F.elu(x, node.attrs.get("alpha", 1.0))


def _selu(m, node, x):
    alpha = node.attrs.get("alpha", 1.67326319217681884765625)
    gamma = node.attrs.get("gamma", 1.05070102214813232421875)
    return gamma * torch.where(x > 0, x, alpha * (torch.exp(x) - 1))


def _hard_sigmoid(m, node, x):
    return torch.clamp(node.attrs.get("alpha", 0.2) * x + node.attrs.get("beta", 0.5), 0.0, 1.0)


def _hard_swish(m, node, x):
    return x * torch.clamp(x / 6.0 + 0.5, 0.0, 1.0)


def _gelu(m, node, x):
    return F.gelu(x, approximate="tanh" if node.attrs.get("approximate", "none") == "tanh" else "none")


def _prelu(m, node, x, slope):
    return torch.where(x >= 0, x, x * slope)


def _softmax_axis(m: OnnxModule, node: _Node, x: Tensor) -> tuple[int, bool]:
    default = -1 if m.opset >= 13 else 1
    return node.attrs.get("axis", default), m.opset < 13


def _softmax(m, node, x):
    axis, flat = _softmax_axis(m, node, x)
    if flat:  # opsets < 13: softmax over the flattened trailing dims from axis
        shape = x.shape
        return torch.softmax(x.reshape(*shape[: axis % x.dim()], -1), -1).reshape(shape)
    return torch.softmax(x, axis)


def _log_softmax(m, node, x):
    axis, flat = _softmax_axis(m, node, x)
    if flat:
        shape = x.shape
        return torch.log_softmax(x.reshape(*shape[: axis % x.dim()], -1), -1).reshape(shape)
    return torch.log_softmax(x, axis)


def _variadic(fn: Callable[[Tensor, Tensor], Tensor]) -> Callable:
    def run(m, node, *xs):
        out = xs[0]
        for x in xs[1:]:
            out = fn(out, x)
        return out

    return run


def _mean(m, node, *xs):
    return _variadic(torch.add)(m, node, *xs) / len(xs)


# ------------------------------------------------------------------------------------------ tensor shape ops


def _reshape(m, node, x, shape=None):
    target = _ints(shape) if shape is not None else list(node.attrs["shape"])
    if not node.attrs.get("allowzero", 0):
        target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
    return x.reshape(target)


def _transpose(m, node, x):
    perm = node.attrs.get("perm", list(reversed(range(x.dim()))))
    return x.permute(*perm)


def _flatten(m, node, x):
    axis = node.attrs.get("axis", 1) % max(x.dim(), 1) if x.dim() else 0
    lead = int(np.prod(x.shape[:axis])) if axis else 1
    return x.reshape(lead, -1)


def _squeeze(m, node, x, axes=None):
    ax = _axes(m, node, axes)
    if ax is None:
        return x.squeeze()
    for a in sorted((a % x.dim() for a in ax), reverse=True):
        x = x.squeeze(a)
    return x


def _unsqueeze(m, node, x, axes=None):
    ax = _axes(m, node, axes)
    rank = x.dim() + len(ax)
    for a in sorted(a % rank for a in ax):
        x = x.unsqueeze(a)
    return x


def _concat(m, node, *xs):
    xs = [x for x in xs if x is not None and not (x.dim() == 1 and x.numel() == 0 and len(xs) > 1)]
    dtype = xs[0].dtype
    return torch.cat([x.to(dtype) for x in xs], node.attrs["axis"])


def _shape(m, node, x):
    dims = list(x.shape)
    start, end = node.attrs.get("start", 0), node.attrs.get("end", None)
    return torch.tensor(dims[start:end], dtype=torch.int64)


def _size(m, node, x):
    return torch.tensor(x.numel(), dtype=torch.int64)


def _gather(m, node, x, idx):
    axis = node.attrs.get("axis", 0) % x.dim()
    idx = idx.long()
    idx = torch.where(idx < 0, idx + x.shape[axis], idx)
    out = torch.index_select(x, axis, idx.reshape(-1))
    return out.reshape(*x.shape[:axis], *idx.shape, *x.shape[axis + 1 :])


def _gather_elements(m, node, x, idx):
    axis = node.attrs.get("axis", 0) % x.dim()
    idx = idx.long()
    return torch.gather(x, axis, torch.where(idx < 0, idx + x.shape[axis], idx))


def _slice(m, node, x, starts=None, ends=None, axes=None, steps=None):
    if starts is None:  # opset < 10: attributes
        st, en = list(node.attrs["starts"]), list(node.attrs["ends"])
        ax = list(node.attrs.get("axes", range(len(st))))
        sp = [1] * len(st)
    else:
        st, en = _ints(starts), _ints(ends)
        ax = _ints(axes) if axes is not None else list(range(len(st)))
        sp = _ints(steps) if steps is not None else [1] * len(st)
    for s, e, a, k in zip(st, en, ax, sp, strict=True):
        a %= x.dim()
        n = x.shape[a]
        if k > 0:
            s = max(0, min(n, s + n if s < 0 else s))
            e = max(0, min(n, e + n if e < 0 else e))
            x = (
                x.narrow(a, s, max(e - s, 0))[(slice(None),) * a + (slice(None, None, k),)]
                if e > s
                else x.narrow(a, 0, 0)
            )
        else:
            s = max(-1, min(n - 1, s + n if s < 0 else s))
            e = max(-1, min(n - 1, e + n if e < 0 else e))
            idx = torch.arange(s, e, k, dtype=torch.long)
            x = torch.index_select(x, a, idx)
    return x


def _split(m, node, x, split=None):
    axis = node.attrs.get("axis", 0)
    sizes = _ints(split) if split is not None else node.attrs.get("split")
    if sizes is None:
        n = node.attrs.get("num_outputs", len(node.outputs))
        size = math.ceil(x.shape[axis] / n)
        sizes = [min(size, x.shape[axis] - i * size) for i in range(n)]
    return tuple(torch.split(x, list(sizes), axis))


def _expand(m, node, x, shape):
    target = _ints(shape)
    rank = max(len(target), x.dim())
    xs = [1] * (rank - x.dim()) + list(x.shape)
    ts = [1] * (rank - len(target)) + target
    return x.reshape(xs).expand([max(a, b) if b != 1 else a for a, b in zip(xs, ts, strict=True)])


def _tile(m, node, x, repeats):
    return x.repeat(_ints(repeats))


def _constant_of_shape(m, node, shape):
    value = node.attrs.get("value")
    v = torch.zeros(1, dtype=torch.float32) if value is None else _to_tensor(np.asarray(value))
    return torch.full(_ints(shape), v.reshape(-1)[0].item(), dtype=v.dtype)


def _range(m, node, start, limit, delta):
    return torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)


def _pad(m, node, x, pads=None, value=None, axes=None):
    p = _ints(pads) if pads is not None else list(node.attrs["pads"])
    mode = node.attrs.get("mode", "constant")
    nd = x.dim()
    if axes is not None:
        ax = [a % nd for a in _ints(axes)]
        full = [0] * (2 * nd)
        for i, a in enumerate(ax):
            full[a], full[a + nd] = p[i], p[i + len(ax)]
        p = full
    fill = float(value.item()) if value is not None and value.numel() else float(node.attrs.get("value", 0.0))
    torch_pads = _pads(p, nd)
    while len(torch_pads) > 2 and torch_pads[-1] == 0 and torch_pads[-2] == 0:
        torch_pads = torch_pads[:-2]
    if mode == "constant":
        return F.pad(x, torch_pads, value=fill)
    return F.pad(x, torch_pads, mode={"reflect": "reflect", "edge": "replicate", "wrap": "circular"}[mode])


def _where(m, node, c, a, b):
    return torch.where(c.bool(), a, b)


def _identity(m, node, x):
    return x


def _dropout(m, node, x, *rest):
    return (x, torch.ones_like(x, dtype=torch.bool)) if len(node.outputs) > 1 else x


def _reduce(fn: Callable[..., Tensor]) -> Callable:
    def run(m, node, x, axes=None):
        ax = _axes(m, node, axes)
        keep = bool(node.attrs.get("keepdims", 1))
        if not ax:
            if node.attrs.get("noop_with_empty_axes", 0) and ax is not None:
                return x
            ax = list(range(x.dim()))
        return fn(x, [a % x.dim() for a in ax], keep)

    return run


def _reduce_max(x, ax, keep):
    return torch.amax(x, dim=ax, keepdim=keep)


def _reduce_min(x, ax, keep):
    return torch.amin(x, dim=ax, keepdim=keep)


def _reduce_prod(x, ax, keep):
    for a in sorted(ax, reverse=True):
        x = torch.prod(x, dim=a, keepdim=keep)
    return x


def _argmax(m, node, x):
    axis, keep = node.attrs.get("axis", 0), bool(node.attrs.get("keepdims", 1))
    return torch.argmax(x, dim=axis, keepdim=keep)


def _argmin(m, node, x):
    axis, keep = node.attrs.get("axis", 0), bool(node.attrs.get("keepdims", 1))
    return torch.argmin(x, dim=axis, keepdim=keep)


# ----------------------------------------------------------------------------------------- weight-bearing ops


def _key(node: _Node, part: str = "") -> str:
    return node.name + part


def _matmul(m: OnnxModule, node: _Node, a: Tensor, b: Tensor) -> Tensor:
    if m.is_stored(node.inputs[1]) and b.dim() == 2:
        spec = MVMSpec(_key(node), (0,), lambda g: g.reshape(-1), weights=(node.inputs[1],))
        return m.mvm(spec, a, b, torch.matmul)
    return torch.matmul(a, b)


def _gemm(m: OnnxModule, node: _Node, a: Tensor, b: Tensor, c: Tensor | None = None) -> Tensor:
    if node.attrs.get("transA", 0):
        a = a.transpose(0, 1)
    trans_b = bool(node.attrs.get("transB", 0))
    alpha, beta = node.attrs.get("alpha", 1.0), node.attrs.get("beta", 1.0)

    def product(x: Tensor, w: Tensor) -> Tensor:
        return x @ (w.transpose(0, 1) if trans_b else w)

    if m.is_stored(node.inputs[1]) and not node.attrs.get("transA", 0):
        spec = MVMSpec(_key(node), (1,) if trans_b else (0,), lambda g: g.reshape(-1), weights=(node.inputs[1],))
        y = m.mvm(spec, a, b, product)
    else:
        y = product(a, b)
    if alpha != 1.0:
        y = alpha * y
    if c is not None:
        y = y + (beta * c if beta != 1.0 else c)
    return y


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _conv(m: OnnxModule, node: _Node, x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    nd = w.dim() - 2
    if nd not in _CONV:
        raise UnsupportedModelError(f"Node {node.name!r}: Conv with {nd} spatial dims is not covered.")
    kernel = list(node.attrs.get("kernel_shape", w.shape[2:]))
    strides = list(node.attrs.get("strides", [1] * nd))
    dil = list(node.attrs.get("dilations", [1] * nd))
    groups = int(node.attrs.get("group", 1))
    pads = _auto_pad(node, x, kernel, strides, dil)
    if any(pads):
        x = F.pad(x, _pads(pads, nd))

    def product(xx: Tensor, ww: Tensor) -> Tensor:
        return _CONV[nd](xx, ww, None, strides, 0, dil, groups)

    if m.is_stored(node.inputs[1]):
        shape = (1, -1) + (1,) * nd
        spec = MVMSpec(_key(node), tuple(range(1, nd + 2)), lambda g: g.reshape(shape), groups, 1, (node.inputs[1],))
        y = m.mvm(spec, x, w, product)
    else:
        y = product(x, w)
    if b is not None:
        y = y + b.reshape((1, -1) + (1,) * nd)
    return y


def _conv_transpose(m: OnnxModule, node: _Node, x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    nd = w.dim() - 2
    if nd not in _CONV_T:
        raise UnsupportedModelError(f"Node {node.name!r}: ConvTranspose with {nd} spatial dims is not covered.")
    strides = list(node.attrs.get("strides", [1] * nd))
    dil = list(node.attrs.get("dilations", [1] * nd))
    groups = int(node.attrs.get("group", 1))
    kernel = list(node.attrs.get("kernel_shape", w.shape[2:]))
    out_pad = list(node.attrs.get("output_padding", [0] * nd))
    if "output_shape" in node.attrs or node.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise UnsupportedModelError(
            f"Node {node.name!r}: ConvTranspose with output_shape/auto_pad SAME is not "
            "covered; export it with explicit pads."
        )
    pads = list(node.attrs.get("pads", [0] * (2 * nd)))
    sym = [min(pads[i], pads[i + nd]) for i in range(nd)]
    extra = [(pads[i] - sym[i], pads[i + nd] - sym[i]) for i in range(nd)]

    def product(xx: Tensor, ww: Tensor) -> Tensor:
        y = _CONV_T[nd](xx, ww, None, strides, sym, out_pad, groups, dil)
        if any(e for pair in extra for e in pair):
            for i, (lo, hi) in enumerate(extra):
                y = y.narrow(2 + i, lo, y.shape[2 + i] - lo - hi)
        return y

    del kernel
    if m.is_stored(node.inputs[1]):
        shape = (1, -1) + (1,) * nd
        if groups == 1:
            reduce = (0, *range(2, nd + 2))
            spec = MVMSpec(_key(node), reduce, lambda g: g.reshape(shape), 1, 1, (node.inputs[1],))
        else:  # columns of a grouped transpose do not map onto one weight axis: one scale for the tensor
            spec = MVMSpec(_key(node), tuple(range(nd + 2)), lambda g: g.reshape(1), groups, 1, (node.inputs[1],))
        y = m.mvm(spec, x, w, product)
    else:
        y = product(x, w)
    if b is not None:
        y = y + b.reshape((1, -1) + (1,) * nd)
    return y


def _batchnorm(m: OnnxModule, node: _Node, x, scale, bias, mean, var, *rest):
    eps = node.attrs.get("epsilon", 1e-5)
    momentum = node.attrs.get("momentum", 0.9)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    if m.batchnorm_train and m.training:
        dims = [0, *range(2, x.dim())]
        bm = x.mean(dim=dims)
        bv = x.var(dim=dims, unbiased=False)
        with torch.no_grad():
            n = x.numel() / x.shape[1]
            mean.mul_(momentum).add_((1 - momentum) * bm.detach())
            var.mul_(momentum).add_((1 - momentum) * bv.detach() * n / max(n - 1, 1))
        mu, sigma2 = bm, bv
    else:
        mu, sigma2 = mean, var
    y = (x - mu.reshape(shape)) / torch.sqrt(sigma2.reshape(shape) + eps) * scale.reshape(shape) + bias.reshape(shape)
    return (y, mean, var) if len(node.outputs) > 1 else y


def _layernorm(m, node, x, scale, bias=None):
    axis = node.attrs.get("axis", -1) % x.dim()
    eps = node.attrs.get("epsilon", 1e-5)
    dims = list(range(axis, x.dim()))
    mu = x.mean(dim=dims, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=dims, keepdim=True)
    y = (x - mu) / torch.sqrt(var + eps) * scale
    return y + bias if bias is not None else y


def _instancenorm(m, node, x, scale, bias):
    eps = node.attrs.get("epsilon", 1e-5)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    dims = list(range(2, x.dim()))
    mu = x.mean(dim=dims, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=dims, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * scale.reshape(shape) + bias.reshape(shape)


def _pool_args(node: _Node, x: Tensor):
    kernel = list(node.attrs["kernel_shape"])
    nd = len(kernel)
    strides = list(node.attrs.get("strides", [1] * nd))
    dil = list(node.attrs.get("dilations", [1] * nd))
    pads = _auto_pad(node, x, kernel, strides, dil)
    return kernel, strides, dil, pads, nd


def _maxpool(m, node, x):
    kernel, strides, dil, pads, nd = _pool_args(node, x)
    ceil = bool(node.attrs.get("ceil_mode", 0))
    if any(pads):
        x = F.pad(x, _pads(pads, nd), value=-math.inf)
    fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[nd]
    if len(node.outputs) > 1 and node.outputs[1]:
        raise UnsupportedModelError(f"Node {node.name!r}: MaxPool with an Indices output is not covered.")
    return fn(x, kernel, strides, 0, dil, ceil_mode=ceil)


def _avgpool(m, node, x):
    kernel, strides, dil, pads, nd = _pool_args(node, x)
    ceil = bool(node.attrs.get("ceil_mode", 0))
    include = bool(node.attrs.get("count_include_pad", 0))
    fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[nd]
    if any(pads):
        sym = all(pads[i] == pads[i + nd] for i in range(nd))
        if sym and all(pads[i] <= kernel[i] // 2 for i in range(nd)):
            return fn(x, kernel, strides, pads[:nd], ceil_mode=ceil, count_include_pad=include)
        padded = F.pad(x, _pads(pads, nd))
        if include:
            return fn(padded, kernel, strides, 0, ceil_mode=ceil)
        ones = F.pad(torch.ones_like(x), _pads(pads, nd))
        return fn(padded, kernel, strides, 0, ceil_mode=ceil) / fn(ones, kernel, strides, 0, ceil_mode=ceil)
    return fn(x, kernel, strides, 0, ceil_mode=ceil)


def _global_avgpool(m, node, x):
    return x.mean(dim=list(range(2, x.dim())), keepdim=True)


def _global_maxpool(m, node, x):
    return torch.amax(x, dim=list(range(2, x.dim())), keepdim=True)


def _einsum(m, node, *xs):
    return torch.einsum(node.attrs["equation"], *xs)


# ------------------------------------------------------------------------------------------------ recurrent

_ACT = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
}


def _activation(name: str, alpha: float | None, beta: float | None) -> Callable[[Tensor], Tensor]:
    key = name.lower()
    if key in _ACT:
        return _ACT[key]
    if key == "hardsigmoid":
        a, b = 0.2 if alpha is None else alpha, 0.5 if beta is None else beta
        return lambda x: torch.clamp(a * x + b, 0.0, 1.0)
    if key == "leakyrelu":
        return lambda x: F.leaky_relu(x, 0.01 if alpha is None else alpha)
    if key == "softsign":
        return lambda x: x / (1 + x.abs())
    if key == "softplus":
        return F.softplus
    if key == "affine":
        a, b = 1.0 if alpha is None else alpha, 0.0 if beta is None else beta
        return lambda x: a * x + b
    raise UnsupportedModelError(f"recurrent activation {name!r} is not covered by the fine-tuning lowering")


def _rnn_common(m: OnnxModule, node: _Node, gates: int, defaults: list[str], x, w, r, b, seq_lens, h0):
    steps = x.shape[1 if node.attrs.get("layout", 0) else 0]
    if seq_lens is not None and seq_lens.numel() and not bool(torch.all(seq_lens == steps)):
        raise UnsupportedModelError(
            f"Node {node.name!r}: {node.op_type} with varying sequence_lens is not covered by the fine-tuning lowering."
        )
    hidden = int(node.attrs.get("hidden_size", r.shape[-1]))
    direction = node.attrs.get("direction", "forward")
    n_dir = 2 if direction == "bidirectional" else 1
    names = node.attrs.get("activations", defaults * n_dir)
    alphas = list(node.attrs.get("activation_alpha", []))
    betas = list(node.attrs.get("activation_beta", []))
    acts = [
        _activation(nm, alphas[i] if i < len(alphas) else None, betas[i] if i < len(betas) else None)
        for i, nm in enumerate(names)
    ]
    layout = int(node.attrs.get("layout", 0))
    if layout:
        x = x.transpose(0, 1)
        h0 = None if h0 is None else h0.transpose(0, 1)
    if b is None:
        b = torch.zeros(n_dir, 2 * gates * hidden, dtype=x.dtype)
    if h0 is None:
        h0 = torch.zeros(n_dir, x.shape[1], hidden, dtype=x.dtype)
    dirs = ["forward", "reverse"] if n_dir == 2 else [direction]
    return hidden, dirs, acts, layout, x, b, h0


def _stacked_product(m: OnnxModule, node: _Node, key: str, x: Tensor, h: Tensor, w: Tensor, r: Tensor) -> Tensor:
    """[x, h] (B, I + H) times [W, R]^T (G, I + H)^T: one analog layer per direction, as the compiler maps it."""
    spec = MVMSpec(_key(node, key), (1,), lambda g: g.reshape(-1), weights=(node.inputs[1], node.inputs[2]))
    return m.mvm(
        spec, torch.cat([x, h], dim=-1), torch.cat([w, r], dim=1), lambda xx, ww: torch.matmul(xx, ww.transpose(0, 1))
    )


def _finish(node: _Node, ys: list[Tensor], hs: list[Tensor], cs: list[Tensor] | None, layout: int):
    y = torch.stack(ys, dim=1)  # (T, D, B, H)
    y_h = torch.stack(hs, dim=0)
    outs = [y, y_h]
    if cs is not None:
        outs.append(torch.stack(cs, dim=0))
    if layout:
        outs[0] = y.permute(2, 0, 1, 3)
        outs[1:] = [o.transpose(0, 1) for o in outs[1:]]
    return tuple(outs)


def _suffix(dirs: list[str], direction: str) -> str:
    return ("_fwd" if direction == "forward" else "_bwd") if len(dirs) == 2 else ""


def _steps(x: Tensor, direction: str) -> range:
    return range(x.shape[0]) if direction == "forward" else range(x.shape[0] - 1, -1, -1)


def _lstm(m: OnnxModule, node: _Node, x, w, r, b=None, seq_lens=None, h0=None, c0=None, p=None):
    hidden, dirs, acts, layout, x, b, h0 = _rnn_common(
        m, node, 4, ["Sigmoid", "Tanh", "Tanh"], x, w, r, b, seq_lens, h0
    )
    if layout and c0 is not None:
        c0 = c0.transpose(0, 1)
    if c0 is None:
        c0 = torch.zeros_like(h0)
    clip = node.attrs.get("clip")
    input_forget = bool(node.attrs.get("input_forget", 0))
    ys, hs, cs = [], [], []
    for d, direction in enumerate(dirs):
        f_act, g_act, h_act = acts[3 * d : 3 * d + 3]
        bias = b[d, : 4 * hidden] + b[d, 4 * hidden :]
        h, c = h0[d], c0[d]
        out: list[Tensor] = [x[0]] * x.shape[0]
        pi, po, pf = (None, None, None) if p is None else (p[d, :hidden], p[d, hidden : 2 * hidden], p[d, 2 * hidden :])
        for t in _steps(x, direction):
            g = _stacked_product(m, node, _suffix(dirs, direction), x[t], h, w[d], r[d]) + bias
            if clip is not None:
                g = torch.clamp(g, -clip, clip)
            gi, go, gf, gc = g.split(hidden, dim=-1)
            if pi is not None:
                gi, gf = gi + pi * c, gf + pf * c
            i_t = f_act(gi)
            f_t = 1 - i_t if input_forget else f_act(gf)
            c = f_t * c + i_t * g_act(gc)
            if po is not None:
                go = go + po * c
            h = f_act(go) * h_act(c)
            out[t] = h
        ys.append(torch.stack(out, 0))
        hs.append(h)
        cs.append(c)
    return _finish(node, ys, hs, cs, layout)[: max(len(node.outputs), 1)]


def _gru(m: OnnxModule, node: _Node, x, w, r, b=None, seq_lens=None, h0=None):
    hidden, dirs, acts, layout, x, b, h0 = _rnn_common(m, node, 3, ["Sigmoid", "Tanh"], x, w, r, b, seq_lens, h0)
    lbr = bool(node.attrs.get("linear_before_reset", 0))
    clip = node.attrs.get("clip")
    hh = hidden
    ys, hs = [], []
    for d, direction in enumerate(dirs):
        f_act, g_act = acts[2 * d : 2 * d + 2]
        sfx = _suffix(dirs, direction)
        wb, rb = b[d, : 3 * hh], b[d, 3 * hh :]
        wd, rd = w[d], r[d]
        h = h0[d]
        out: list[Tensor] = [x[0]] * x.shape[0]
        if lbr:  # one layer: columns [z r | W_h x | R_h h] (the compiler's block layout)
            zeros_x = torch.zeros(hh, wd.shape[1], dtype=wd.dtype)
            zeros_h = torch.zeros(hh, hh, dtype=rd.dtype)
        for t in _steps(x, direction):
            if lbr:
                top = torch.cat([wd[: 2 * hh], wd[2 * hh :], zeros_x], dim=0)
                bottom = torch.cat([rd[: 2 * hh], zeros_h, rd[2 * hh :]], dim=0)
                y = _stacked_product(m, node, sfx, x[t], h, top, bottom)
                zr = y[..., : 2 * hh] + wb[: 2 * hh] + rb[: 2 * hh]
                xh, rh = y[..., 2 * hh : 3 * hh] + wb[2 * hh :], y[..., 3 * hh :] + rb[2 * hh :]
            else:
                zr = _stacked_product(m, node, sfx + "_zr", x[t], h, wd[: 2 * hh], rd[: 2 * hh])
                zr = zr + wb[: 2 * hh] + rb[: 2 * hh]
            if clip is not None:
                zr = torch.clamp(zr, -clip, clip)
            gz, gr = zr.split(hh, dim=-1)
            z, rr = f_act(gz), f_act(gr)
            if lbr:
                gh = xh + rr * rh
            else:
                gh = _stacked_product(m, node, sfx + "_h", x[t], rr * h, wd[2 * hh :], rd[2 * hh :])
                gh = gh + wb[2 * hh :] + rb[2 * hh :]
            if clip is not None:
                gh = torch.clamp(gh, -clip, clip)
            h = (1 - z) * g_act(gh) + z * h
            out[t] = h
        ys.append(torch.stack(out, 0))
        hs.append(h)
    return _finish(node, ys, hs, None, layout)[: max(len(node.outputs), 1)]


def _rnn(m: OnnxModule, node: _Node, x, w, r, b=None, seq_lens=None, h0=None):
    hidden, dirs, acts, layout, x, b, h0 = _rnn_common(m, node, 1, ["Tanh"], x, w, r, b, seq_lens, h0)
    clip = node.attrs.get("clip")
    ys, hs = [], []
    for d, direction in enumerate(dirs):
        act = acts[d]
        bias = b[d, :hidden] + b[d, hidden:]
        h = h0[d]
        out: list[Tensor] = [x[0]] * x.shape[0]
        for t in _steps(x, direction):
            g = _stacked_product(m, node, _suffix(dirs, direction), x[t], h, w[d], r[d]) + bias
            if clip is not None:
                g = torch.clamp(g, -clip, clip)
            h = act(g)
            out[t] = h
        ys.append(torch.stack(out, 0))
        hs.append(h)
    return _finish(node, ys, hs, None, layout)[: max(len(node.outputs), 1)]


OPS: dict[str, Callable[..., Any]] = {
    # elementwise arithmetic and logic
    "Add": _binary(torch.add),
    "Sub": _binary(torch.sub),
    "Mul": _binary(torch.mul),
    "Div": _div,
    "Pow": _pow,
    "Mod": lambda m, node, a, b: torch.fmod(a, b) if node.attrs.get("fmod", 0) else torch.remainder(a, b),
    "Neg": _unary(torch.neg),
    "Abs": _unary(torch.abs),
    "Sqrt": _unary(torch.sqrt),
    "Exp": _unary(torch.exp),
    "Log": _unary(torch.log),
    "Reciprocal": _unary(torch.reciprocal),
    "Floor": _unary(torch.floor),
    "Ceil": _unary(torch.ceil),
    "Round": _unary(torch.round),
    "Sign": _unary(torch.sign),
    "Sin": _unary(torch.sin),
    "Cos": _unary(torch.cos),
    "Erf": _unary(torch.erf),
    "Equal": _binary(torch.eq),
    "Less": _binary(torch.lt),
    "Greater": _binary(torch.gt),
    "LessOrEqual": _binary(torch.le),
    "GreaterOrEqual": _binary(torch.ge),
    "Not": _unary(torch.logical_not),
    "And": _binary(torch.logical_and),
    "Or": _binary(torch.logical_or),
    "Xor": _binary(torch.logical_xor),
    "Where": _where,
    "Cast": _cast,
    "Max": _variadic(torch.maximum),
    "Min": _variadic(torch.minimum),
    "Sum": _variadic(torch.add),
    "Mean": _mean,
    "IsNaN": _unary(torch.isnan),
    # activations
    "Relu": _unary(torch.relu),
    "Sigmoid": _unary(torch.sigmoid),
    "Tanh": _unary(torch.tanh),
    "LeakyRelu": _leaky_relu,
    "Elu": _elu,
    "Selu": _selu,
    "HardSigmoid": _hard_sigmoid,
    "HardSwish": _hard_swish,
    "Gelu": _gelu,
    "Softplus": _unary(F.softplus),
    "Softsign": _unary(lambda x: x / (1 + x.abs())),
    "PRelu": _prelu,
    "Clip": _clip,
    "Softmax": _softmax,
    "LogSoftmax": _log_softmax,
    "Mish": _unary(lambda x: x * torch.tanh(F.softplus(x))),
    # shapes and indexing
    "Reshape": _reshape,
    "Transpose": _transpose,
    "Flatten": _flatten,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Concat": _concat,
    "Shape": _shape,
    "Size": _size,
    "Gather": _gather,
    "GatherElements": _gather_elements,
    "Slice": _slice,
    "Split": _split,
    "Expand": _expand,
    "Tile": _tile,
    "ConstantOfShape": _constant_of_shape,
    "Range": _range,
    "Pad": _pad,
    "Identity": _identity,
    "Dropout": _dropout,
    "Constant": _identity,
    # reductions
    "ReduceMean": _reduce(lambda x, ax, k: x.mean(dim=ax, keepdim=k)),
    "ReduceSum": _reduce(lambda x, ax, k: x.sum(dim=ax, keepdim=k)),
    "ReduceMax": _reduce(_reduce_max),
    "ReduceMin": _reduce(_reduce_min),
    "ReduceProd": _reduce(_reduce_prod),
    "ReduceL2": _reduce(lambda x, ax, k: torch.sqrt((x * x).sum(dim=ax, keepdim=k))),
    "ReduceL1": _reduce(lambda x, ax, k: x.abs().sum(dim=ax, keepdim=k)),
    "ReduceSumSquare": _reduce(lambda x, ax, k: (x * x).sum(dim=ax, keepdim=k)),
    "ReduceLogSumExp": _reduce(lambda x, ax, k: torch.logsumexp(x, dim=ax, keepdim=k)),
    "ArgMax": _argmax,
    "ArgMin": _argmin,
    # layers
    "MatMul": _matmul,
    "Gemm": _gemm,
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "BatchNormalization": _batchnorm,
    "LayerNormalization": _layernorm,
    "InstanceNormalization": _instancenorm,
    "MaxPool": _maxpool,
    "AveragePool": _avgpool,
    "GlobalAveragePool": _global_avgpool,
    "GlobalMaxPool": _global_maxpool,
    "Einsum": _einsum,
    "LSTM": _lstm,
    "GRU": _gru,
    "RNN": _rnn,
}
"""Torch implementation of every covered ONNX op, by op type (default domain)."""


def supported_ops() -> list[str]:
    """The covered op types, sorted."""
    return sorted(OPS)
