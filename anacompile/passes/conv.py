"""Convolutions on crossbar tiles: ``Conv`` and ``ConvTranspose`` as patch extraction plus one analog layer.

A convolution is a matrix product over patches (im2col): every output position reads the
K = C_in/groups * prod(kernel) inputs of its receptive field, and y[pos, co] = sum_r patch[pos, r] W[r, co] + b[co].
So each output channel is a crossbar column and the kernel's inputs are the tile rows, ordered channel-major
(c, k_1, ..., k_r) so that the rows of one input channel are contiguous. ``ConvLayer.row_group`` tells
:class:`~anacompile.passes.partition_weights.PartitionWeightsPass` how many rows one channel has, so that a tile
boundary falls between channels wherever that costs no extra tile (Joshi et al. 2020: "conv kernels flattened
into crossbar columns"; reference/papers.md, (d)). Every tile has its own DAC and ADC and the tiles' partial
sums are added digitally by ``AnalogMatMul``'s ``tiled`` body; the bias is added digitally after the ADC.

The patches are extracted in the graph with standard ops, exactly: the source op itself (``Conv`` or
``ConvTranspose``), with the source's strides, pads, dilations, auto_pad, output_padding and output_shape,
``group = C_in`` and a fixed one-hot kernel E that copies every input element of the receptive field into its
own output channel::

    Conv:           P = Conv(X, E, group=C)             E[c*kk + p, 0, o(p)] = 1   (C*kk, 1, *kernel)
    ConvTranspose:  P = ConvTranspose(X, E, group=C)    E[c, p, o(p)] = 1          (C, kk, *kernel)
    Y = Transpose(AnalogMatMul(Transpose(P, channels last)), channels first)        (N, C_out, *S')

with kk = prod(kernel) and o(p) the p-th kernel offset in C order. Each element of P is one input element
times 1 plus exact zeros, so P is exact in float32, and onnxruntime resolves the padding rules of the patch op
exactly as for the source op, because it is the same op with the same attributes. For ``ConvTranspose``,
y[co, s*a - pad + d*o] += x[ci, a] W[ci, co, o] gives P[(ci, o), y] = x[ci, a] for the one a (if any) with
y = s*a - pad + d*o, and the matrix W_mat[(ci, o), co] = W[ci, co, o]: the transposed convolution on the
zero-inserted input, without materialising the zeros. A 1x1 convolution with unit strides and no padding
needs no patches at all (Transpose only).

Design choices:

* Groups > 1: :class:`SplitGroupedConvsPass` (run before ``MarkAnalogOpsPass``) splits a grouped conv into a
  ``Split`` over channels, one conv per group and a ``Concat``, so every group is its own analog layer on its
  own tiles. The alternative, one block-diagonal (G*K_g, G*N_g) matrix, has a fraction 1 - 1/G of zero
  weights, and in one MVM the other groups' inputs drive those zero-target (but programmed, noisy) devices.
* Depthwise convs (one input channel per group) stay digital: each output channel reads prod(kernel)
  inputs only, so per group the crossbar holds a (prod(kernel) x multiplier) matrix, e.g. 9 x 1 devices of
  a 512 x 512 tile (0.003 % used), or block-diagonally a matrix that is 1 - 1/C zeros; the MACs saved are
  C * prod(kernel) per position, a small share of a network's MACs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from anacompile.passes._layer import DIGITAL_KEY, LAYER_KEY, DigitalBias, LayerOp, LayerPlan, walk_nodes
from anacompile.passes._names import register_initializer
from anacompile.passes.lowering import EmitContext, Lowering, StaysDigital, attr_value, const_array

__all__ = ["CONV_OPS", "LOWERINGS", "ConvGeometry", "ConvLayer", "SplitGroupedConvsPass", "emit_conv", "plan_conv"]

CONV_OPS = ("Conv", "ConvTranspose")
_SAME = ("SAME_UPPER", "SAME_LOWER")


@dataclass(frozen=True)
class ConvGeometry:
    """The window of a (group = 1) ``Conv`` or ``ConvTranspose``: everything that decides its patches.

    Attributes:
        op_type: ``Conv`` or ``ConvTranspose``.
        channels: input channels C (of one group).
        kernel: kernel size per spatial axis.
        strides: stride per spatial axis.
        dilations: dilation per spatial axis.
        pads: begin pads then end pads (ONNX order); zeros where ``auto_pad`` decides.
        auto_pad: ``NOTSET``, ``SAME_UPPER``, ``SAME_LOWER`` or ``VALID``.
        output_padding: ``ConvTranspose`` only: extra elements at the end of each output axis.
        output_shape: ``ConvTranspose`` only: explicit output spatial shape, or None.
    """

    op_type: str
    channels: int
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[int, ...]
    auto_pad: str = "NOTSET"
    output_padding: tuple[int, ...] = ()
    output_shape: tuple[int, ...] | None = None

    @classmethod
    def from_node(cls, node: ir.Node, w: np.ndarray) -> ConvGeometry:
        """The geometry of a conv node with weight ``w`` ((C_out, C, *k) or, transposed, (C, C_out, *k))."""
        r = w.ndim - 2
        kernel = tuple(int(k) for k in attr_value(node, "kernel_shape", w.shape[2:]))
        channels = int(w.shape[1] if node.op_type == "Conv" else w.shape[0])
        output_shape = attr_value(node, "output_shape", None)
        return cls(
            op_type=node.op_type,
            channels=channels,
            kernel=kernel,
            strides=tuple(int(s) for s in attr_value(node, "strides", (1,) * r)),
            dilations=tuple(int(d) for d in attr_value(node, "dilations", (1,) * r)),
            pads=tuple(int(p) for p in attr_value(node, "pads", (0,) * (2 * r))),
            auto_pad=str(attr_value(node, "auto_pad", "NOTSET")),
            output_padding=tuple(int(p) for p in attr_value(node, "output_padding", (0,) * r)),
            output_shape=None if output_shape is None else tuple(int(s) for s in output_shape)[-r:],
        )

    @property
    def rank(self) -> int:
        """Number of spatial axes."""
        return len(self.kernel)

    @property
    def kernel_size(self) -> int:
        """prod(kernel): rows per input channel."""
        return int(np.prod(self.kernel))

    @property
    def k(self) -> int:
        """Rows of the layer's matrix, C * prod(kernel)."""
        return self.channels * self.kernel_size

    @property
    def is_pointwise(self) -> bool:
        """A 1x1 window with unit strides and no padding: the patches are the input itself."""
        ones = (1,) * self.rank
        return (
            self.kernel == ones
            and self.strides == ones
            and not any(self.pads)
            and not any(self.output_padding)
            and self.output_shape is None
        )

    def patch_attributes(self) -> dict[str, object]:
        """Attributes of the patch op: the source's window, ``group = C`` and the kernel shape."""
        attrs: dict[str, object] = {
            "kernel_shape": list(self.kernel),
            "strides": list(self.strides),
            "dilations": list(self.dilations),
            "group": self.channels,
        }
        if self.auto_pad != "NOTSET":
            attrs["auto_pad"] = self.auto_pad
        else:
            attrs["pads"] = list(self.pads)
        if self.op_type == "ConvTranspose":
            attrs["output_padding"] = list(self.output_padding)
            if self.output_shape is not None:
                attrs["output_shape"] = list(self.output_shape)
        return attrs

    def one_hot_kernel(self) -> np.ndarray:
        """Weight of the patch op: output channel c*kk + p copies channel c at kernel offset p (C order)."""
        c, kk = self.channels, self.kernel_size
        e = np.zeros((c, kk, kk), np.float32)
        e[:, np.arange(kk), np.arange(kk)] = 1.0
        if self.op_type == "Conv":
            return e.reshape(c * kk, 1, *self.kernel)
        return e.reshape(c, kk, *self.kernel)

    def patches(self, x: np.ndarray) -> np.ndarray:
        """numpy im2col: (N, C, *S) -> (N, *S', K), the rows the tiles see, channel-major (c, kernel offset).

        The same patches as the graph's patch op (used to calibrate static input ranges on the tile inputs).
        """
        x = np.asarray(x)
        if self.op_type == "Conv":
            cols = self._conv_columns(x)
        else:
            cols = self._transposed_columns(x)
        n, c, kk, *out = cols.shape
        return np.moveaxis(cols.reshape(n, c * kk, *out), 1, -1)

    def _conv_columns(self, x: np.ndarray) -> np.ndarray:
        size = x.shape[2:]
        begin, end = list(self.pads[: self.rank]), list(self.pads[self.rank :])
        if self.auto_pad == "VALID":
            begin, end = [0] * self.rank, [0] * self.rank
        elif self.auto_pad in _SAME:
            for i, (n, s, k, d) in enumerate(zip(size, self.strides, self.kernel, self.dilations, strict=True)):
                total = max(0, (-(-n // s) - 1) * s + (k - 1) * d + 1 - n)
                begin[i] = total // 2 if self.auto_pad == "SAME_UPPER" else total - total // 2
                end[i] = total - begin[i]
        xp = np.pad(x, [(0, 0), (0, 0), *zip(begin, end, strict=True)])
        out = [
            (n + b + e - (k - 1) * d - 1) // s + 1
            for n, b, e, k, d, s in zip(size, begin, end, self.kernel, self.dilations, self.strides, strict=True)
        ]
        cols = []
        for offset in np.ndindex(*self.kernel):
            window = tuple(
                slice(o * d, o * d + (m - 1) * s + 1, s)
                for o, d, m, s in zip(offset, self.dilations, out, self.strides, strict=True)
            )
            cols.append(xp[(slice(None), slice(None), *window)])
        return np.stack(cols, axis=2)

    def _transposed_columns(self, x: np.ndarray) -> np.ndarray:
        size = x.shape[2:]
        full = [
            (n - 1) * s + p + (k - 1) * d + 1
            for n, s, p, k, d in zip(size, self.strides, self.output_padding, self.kernel, self.dilations, strict=True)
        ]
        if self.output_shape is not None or self.auto_pad in _SAME:
            # onnxruntime, as the ONNX spec's formula: the odd pad goes to the end for SAME_UPPER, else the start
            out = (
                list(self.output_shape)
                if self.output_shape is not None
                else [n * s for n, s in zip(size, self.strides, strict=True)]
            )
            total = [f - o for f, o in zip(full, out, strict=True)]
            begin = [t // 2 if self.auto_pad == "SAME_UPPER" else t - t // 2 for t in total]
        elif self.auto_pad == "VALID":
            out, begin = full, [0] * self.rank
        else:
            begin = list(self.pads[: self.rank])
            out = [f - b - e for f, b, e in zip(full, begin, self.pads[self.rank :], strict=True)]
        begin = [max(0, b) for b in begin]
        span = [max(f, b + o) for f, b, o in zip(full, begin, out, strict=True)]
        buf = np.zeros((*x.shape[:2], self.kernel_size, *span), x.dtype)
        for p, offset in enumerate(np.ndindex(*self.kernel)):
            window = tuple(
                slice(o * d, o * d + (n - 1) * s + 1, s)
                for o, d, n, s in zip(offset, self.dilations, size, self.strides, strict=True)
            )
            buf[(slice(None), slice(None), p, *window)] = x
        crop = tuple(slice(b, b + o) for b, o in zip(begin, out, strict=True))
        return buf[(slice(None), slice(None), slice(None), *crop)]


@dataclass(frozen=True)
class ConvLayer(LayerOp):
    """The op data of a conv layer: its window; the tiles read its patches, one input channel per row group."""

    geometry: ConvGeometry

    @property
    def row_group(self) -> int:  # type: ignore[override]
        """Rows of one input channel: prod(kernel)."""
        return self.geometry.kernel_size

    def tile_input(self, x: np.ndarray) -> np.ndarray:
        """The patches (numpy im2col, exact) the tiles read for the conv's input ``x``."""
        return self.geometry.patches(x)


def plan_conv(node: ir.Node, name: str) -> LayerPlan:
    """Plan a ``Conv``/``ConvTranspose`` with a constant weight and group = 1 as one (K, C_out) analog layer.

    Raises:
        StaysDigital: the weight is not a constant, the conv is grouped or depthwise, or a type is not float.
    """
    w = const_array(node.inputs[1])
    if w is None:
        raise StaysDigital("weight W is not a constant initializer")
    if not np.issubdtype(w.dtype, np.floating):
        raise StaysDigital(f"weight dtype {w.dtype} is not floating point")
    if w.ndim < 3:
        raise StaysDigital(f"weight has rank {w.ndim}; a convolution's weight is (C_out, C_in/groups, *kernel)")
    x_type = node.inputs[0].dtype
    if x_type is not None and x_type != ir.DataType.FLOAT:
        raise StaysDigital(f"input dtype {x_type} is not float32")
    group = int(attr_value(node, "group", 1))
    if group > 1:
        if _is_depthwise(node, w, group):
            raise StaysDigital(_depthwise_reason(node, w, group))
        if len(node.inputs) > 2 and node.inputs[2] is not None and const_array(node.inputs[2]) is None:
            raise StaysDigital(
                f"group={group} with a bias computed at run time: only convs with a constant bias "
                "are split into one analog layer per group"
            )
        raise StaysDigital(
            f"group={group}: grouped convolutions are split into one conv per group by "
            "SplitGroupedConvsPass, which runs before MarkAnalogOpsPass in the compiler's pipeline"
        )
    geometry = ConvGeometry.from_node(node, w)
    w = w.astype(np.float64)
    if node.op_type == "Conv":
        matrix = w.reshape(w.shape[0], -1).T  # rows (c, kernel offset), columns co
    else:
        matrix = np.moveaxis(w, 1, -1).reshape(-1, w.shape[1])  # (C, C_out, *k) -> ((c, *k), C_out)
    bias = None
    digital_bias = None
    b_value = node.inputs[2] if len(node.inputs) > 2 else None
    if b_value is not None:
        b = const_array(b_value)
        if b is not None:
            bias = b.reshape(-1).astype(np.float64)
        else:
            digital_bias = DigitalBias(b_value)  # computed at run time: added digitally after the analog layer
    return LayerPlan(
        name=name,
        source_op=node.op_type,
        weight=np.ascontiguousarray(matrix),
        bias=bias,
        input=node.inputs[0],
        op=ConvLayer(geometry),
        digital_bias=digital_bias,
    )


def emit_conv(ctx: EmitContext) -> tuple[list[ir.Node], ir.Value]:
    """Patches (one-hot conv), channels last, ``AnalogMatMul``, channels first, digital bias if not constant."""
    assert isinstance(ctx.plan.op, ConvLayer), ctx.plan.name
    geometry = ctx.plan.op.geometry
    name, r = ctx.plan.name, geometry.rank
    nodes: list[ir.Node] = []
    patches = ctx.plan.input
    if not geometry.is_pointwise:
        kernel = ctx.initializer("patch_kernel", geometry.one_hot_kernel())
        patch = ir.node(
            geometry.op_type, [patches, kernel], attributes=geometry.patch_attributes(), name=f"{name}.patches"
        )
        patch.outputs[0].name = f"{name}.patches"
        nodes.append(patch)
        patches = patch.outputs[0]
    to_last = ir.node(
        "Transpose", [patches], attributes={"perm": [0, *range(2, r + 2), 1]}, name=f"{name}.channels_last"
    )
    to_last.outputs[0].name = f"{name}.tile_input"
    analog_nodes, y = ctx.analog(to_last.outputs[0])
    y.name = f"{name}.tile_output"
    to_first = ir.node(
        "Transpose", [y], attributes={"perm": [0, r + 1, *range(1, r + 1)]}, name=f"{name}.channels_first"
    )
    nodes += [to_last, *analog_nodes, to_first]
    out = to_first.outputs[0]
    digital_bias = ctx.plan.digital_bias
    if digital_bias is not None:  # a conv's bias B: scale 1
        shape = ctx.initializer("bias_shape", np.array([-1, *([1] * r)], np.int64))
        reshape = ir.node("Reshape", [digital_bias.value, shape], name=f"{name}.bias_shape")
        add = ir.node("Add", [out, reshape.outputs[0]], name=f"{name}.bias")
        out.name, reshape.outputs[0].name = f"{name}.no_bias", f"{name}.bias_column"
        nodes += [reshape, add]
        out = add.outputs[0]
    return nodes, out


class SplitGroupedConvsPass(ir.passes.InPlacePass):
    """Split every grouped Conv/ConvTranspose with a constant weight into one conv per group.

    ``Split`` (channels) -> G convs with group = 1 -> ``Concat`` (channels), so that each group becomes its own
    analog layer on its own tiles. Depthwise convs (one input channel per group) are left as they are: they
    stay digital (module docstring). A second run finds nothing left to split.
    """

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        main = model.graph
        modified = False
        for node, _ in list(walk_nodes(main)):  # If/Loop/Scan bodies too
            if node.domain != "" or node.op_type not in CONV_OPS or LAYER_KEY in node.meta or DIGITAL_KEY in node.meta:
                continue
            group = int(attr_value(node, "group", 1))
            w = const_array(node.inputs[1]) if len(node.inputs) > 1 else None
            if group == 1 or w is None or w.ndim < 3 or w.shape[0] % group or _is_depthwise(node, w, group):
                continue
            b_value = node.inputs[2] if len(node.inputs) > 2 else None
            b = const_array(b_value)
            if b_value is not None and b is None:
                continue  # bias computed at run time: stays one digital conv (the handler says why)
            self._split(node.graph, node, w, b, group, main)
            modified = True
        return ir.passes.PassResult(model, modified=modified)

    @staticmethod
    def _split(graph: ir.Graph, node: ir.Node, w: np.ndarray, b: np.ndarray | None, group: int, main: ir.Graph) -> None:
        """Split ``node`` of ``graph``; the per-group weights are initializers of the ``main`` graph."""
        base = _clean(node.name or node.op_type.lower())
        transposed = node.op_type == "ConvTranspose"
        c_in = w.shape[0] // group if transposed else w.shape[1]
        c_out = w.shape[1] if transposed else w.shape[0] // group
        sizes = _constant(main, f"{base}.group_split", np.full(group, c_in, np.int64))
        split = ir.node(
            "Split", [node.inputs[0], sizes], attributes={"axis": 1}, num_outputs=group, name=f"{base}.group_split"
        )
        attrs = {k: a for k, a in node.attributes.items() if k != "group"}  # copied per conv below
        convs = []
        for g in range(group):
            split.outputs[g].name = _fresh_value_name(graph, f"{base}.group{g}_input")
            w_g = w[g * c_in : (g + 1) * c_in] if transposed else w[g * c_out : (g + 1) * c_out]
            inputs = [split.outputs[g], _constant(main, f"{base}.group{g}.weight", np.ascontiguousarray(w_g))]
            if b is not None:
                inputs.append(_constant(main, f"{base}.group{g}.bias", b[g * c_out : (g + 1) * c_out].copy()))
            conv = ir.node(
                node.op_type,
                inputs,
                attributes={k: ir.Attr(k, a.type, a.value) for k, a in attrs.items()},
                name=f"{base}_g{g}",
            )
            conv.outputs[0].name = _fresh_value_name(graph, f"{base}.group{g}_output")
            convs.append(conv)
        concat = ir.node("Concat", [c.outputs[0] for c in convs], attributes={"axis": 1}, name=f"{base}.group_concat")
        old_inputs = [v for v in node.inputs if v is not None]
        ir.convenience.replace_nodes_and_values(
            graph, node, [node], [split, *convs, concat], [node.outputs[0]], [concat.outputs[0]]
        )
        for value in old_inputs:  # the grouped weight and bias now live in the per-group initializers
            if main.initializers.get(value.name) is value and not value.uses() and not value.is_graph_input():
                del main.initializers[value.name]


def _is_depthwise(node: ir.Node, w: np.ndarray, group: int) -> bool:
    c_in_per_group = w.shape[0] // group if node.op_type == "ConvTranspose" else w.shape[1]
    return group > 1 and c_in_per_group == 1


def _depthwise_reason(node: ir.Node, w: np.ndarray, group: int) -> str:
    kk = int(np.prod(w.shape[2:]))
    mult = w.shape[1] if node.op_type == "ConvTranspose" else w.shape[0] // group
    return (
        f"depthwise convolution (group={group}, one input channel per group): each output channel reads "
        f"only {kk} inputs, so a group is a {kk} x {mult} matrix (one tile per group, or a block-diagonal "
        f"{group * kk} x {group * mult} matrix with {1 - 1 / group:.1%} zero weights); kept digital"
    )


def _clean(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in name).strip("_.") or "conv"


def _fresh_value_name(graph: ir.Graph, name: str) -> str:
    taken = set(graph.initializers) | {v.name for n in graph for v in n.outputs} | {v.name for v in graph.inputs}
    candidate, i = name, 1
    while candidate in taken:
        i += 1
        candidate = f"{name}_{i}"
    return candidate


def _constant(graph: ir.Graph, name: str, array: np.ndarray) -> ir.Value:
    return register_initializer(graph, _fresh_value_name(graph, name), array)


LOWERINGS = tuple(Lowering(op, plan_conv, emit_conv) for op in CONV_OPS)
"""The lowerings of this module, listed in :data:`anacompile.passes.op_registry.LOWERINGS`."""
