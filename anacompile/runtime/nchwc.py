"""Convolutions without patches at fixed-weight speed: onnxruntime's blocked (NCHWc) Conv with fed weights.

onnxruntime's CPU provider runs a ``Conv`` whose weight is a graph input through im2col and SGEMM per image,
but a ``Conv`` with a constant weight through its NCHWc transformer: the ``com.microsoft.nchwc`` ops, with
activations in a channel-blocked layout (blocks of 8 or 16 channels, AVX2 / AVX-512) and the filter
reordered to match. About 2x faster here (one thread, 540 images, 16 -> 32 channels, 3x3 on 8x8: 6.8 ms with
the fed weight, 3.2 ms with the same weight fed pre-reordered to an NCHWc Conv, 3.0 ms constant;
bench/README.md, issue 14). The NCHWc kernels accept any weight tensor, so the session can run its chip's
per-(chip, t) weights through them if it reorders them itself.

The reorder and the node sequence are onnxruntime's own, learned once per conv geometry (:func:`nchwc_conv`):
a probe model with one ``Conv`` whose constant weight holds 1..n is optimized by onnxruntime and written out
(``optimized_model_filepath``); the reordered initializer minus 1 is the index permutation of the filter (its
zeros are padding), and the optimized graph says whether the input goes through ``ReorderInput`` (a conv of
few input channels reads plain NCHW), the NCHWc ``Conv``'s attributes and the padded output channels. What the
probe does not turn into exactly ``[ReorderInput] -> nchwc.Conv -> ReorderOutput`` (1-D and 3-D convs, group
sizes the kernels do not block, a CPU without the kernels, any error) gives ``None``: the layer keeps the
plain ``Conv`` body (:func:`anacompile.crossbar.functions.build_analog_conv_function`).

:func:`build_nchwc_conv_function` is that body with the tile MVMs as NCHWc Convs of the fed weights,
reordered in the graph by one ``Gather`` each (weight-sized; microseconds). Constants of the periphery are
folded into the weights and the Conv biases where exact in exact arithmetic: ``ir_a_scale`` into |W| of the
IR-drop Conv, the read noise's ``noise_k1`` g^2 into |W| of the q^2 Conv and ``noise_k2`` into its bias. When
the blocked output has no padded channels the elementwise periphery (IR drop, read noise, ADC) runs in the
blocked layout (elementwise ops do not care about the order of elements, and the fed standard normals are
assigned to outputs in another order, which does not change their law), and the output is reordered once,
before the per-channel scales. Otherwise each Conv's output is reordered to NCHW at once.

Only for the CPU provider; ``ANACOMPILE_NCHWC=0`` in the environment turns it off (the plain Conv body).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from anacompile import contract
from anacompile.crossbar.functions import FunctionBody, analog_matmul_function, conv_overload, sum_conv_tiles
from anacompile.crossbar.periphery import InputRange, OutputRange, Periphery
from anacompile.crossbar.reference import tile_constants

__all__ = [
    "ENV",
    "NCHWC_DOMAIN",
    "NchwcConv",
    "NchwcLayer",
    "nchwc_conv",
    "nchwc_enabled",
    "nchwc_layers",
]

logger = logging.getLogger(__name__)
NCHWC_DOMAIN = "com.microsoft.nchwc"
ENV = "ANACOMPILE_NCHWC"
"""Environment variable: ``0`` (or ``off``, ``false``, ``no``) runs every conv through the plain Conv body."""
CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class NchwcConv:
    """How onnxruntime runs one conv geometry as an NCHWc Conv (learned by :func:`nchwc_conv`)."""

    reorder_input: bool
    """The input goes through ``ReorderInput`` (else the NCHWc Conv reads the NCHW input as it is)."""
    attributes: tuple[tuple[str, object], ...]
    """The NCHWc Conv's attributes, as onnxruntime writes them."""
    channels: int
    """Output channels of the conv (what ``ReorderOutput`` keeps)."""
    blocked_channels: int
    """Output channels of the blocked layout (padded to whole blocks)."""
    perm: np.ndarray
    """int64, shaped like the reordered filter: the flat index into the OIHW filter of every element, or
    the filter's size for a padding zero."""
    in_channels: int = 0
    """Input channels of the conv."""

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """Shape of the reordered filter."""
        return tuple(self.perm.shape)

    def reorder(self, w: np.ndarray) -> np.ndarray:
        """The OIHW filter ``w`` in onnxruntime's NCHWc filter layout (numpy, as the graph's Gather does)."""
        flat = np.concatenate([np.asarray(w, np.float32).ravel(), np.zeros(1, np.float32)])
        return flat[self.perm]


def nchwc_layers(m: onnx.ModelProto) -> list[str]:
    """The layers whose AnalogMatMul body in the session model ``m`` runs NCHWc Convs."""

    def nchwc(nodes) -> bool:
        for node in nodes:
            if node.domain == NCHWC_DOMAIN:
                return True
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH and nchwc(a.g.node):
                    return True
        return False

    prefix = conv_overload("")
    return [f.overload[len(prefix) :] for f in m.functions if f.overload.startswith(prefix) and nchwc(f.node)]


def nchwc_enabled(providers: list[str] | None) -> bool:
    """Whether sessions on ``providers`` run convolutions as NCHWc Convs: the CPU provider first, and not
    turned off by ``ANACOMPILE_NCHWC=0``."""
    if os.environ.get(ENV, "1").strip().lower() in ("0", "off", "false", "no"):
        return False
    return not providers or providers[0] == CPU


def nchwc_conv(in_channels: int, out_channels: int, group: int, window: dict) -> NchwcConv | None:
    """onnxruntime's NCHWc form of a Conv (C_in, C_out, group, window), or None where it has none.

    ``window`` holds the conv's kernel_shape, strides, dilations and pads or auto_pad (other keys are
    ignored). Learned once per geometry and process from onnxruntime itself (module docstring).
    """
    keys = ("kernel_shape", "strides", "dilations", "pads", "auto_pad")
    items = []
    for key in keys:
        if key in window:
            value = window[key]
            value = value.decode() if isinstance(value, bytes) else value
            items.append((key, tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else value))
    if "kernel_shape" not in window or len(window["kernel_shape"]) != 2:
        return None  # the NCHWc kernels are 2-D only
    return _probe(int(in_channels), int(out_channels), int(group), tuple(items))


@functools.lru_cache(maxsize=256)
def _probe(in_channels: int, out_channels: int, group: int, items: tuple) -> NchwcConv | None:
    window = {k: list(v) if isinstance(v, tuple) else v for k, v in items}
    kernel = [int(k) for k in window["kernel_shape"]]
    if in_channels % group or out_channels % group:
        return None
    shape = (out_channels, in_channels // group, *kernel)
    size = int(math.prod(shape))
    try:
        optimized = _optimized_probe(in_channels, shape, group, window)
    except Exception as err:  # noqa: BLE001 - onnxruntime's own error types: no NCHWc form, keep the plain Conv
        logger.debug("NCHWc probe of %s (group %d, %s) failed: %s", shape, group, window, err)
        return None
    nodes = list(optimized.graph.node)
    if nodes and nodes[0].op_type == "ReorderInput" and nodes[0].domain == NCHWC_DOMAIN:
        reorder_input, nodes = True, nodes[1:]
        if any(a.name == "channels_last" and a.i for a in optimized.graph.node[0].attribute):
            return None
    else:
        reorder_input = False
    if len(nodes) != 2 or any(n.domain != NCHWC_DOMAIN for n in nodes):
        return None
    conv, out = nodes
    if conv.op_type != "Conv" or out.op_type != "ReorderOutput" or len(conv.input) != 2:
        return None
    out_attrs = {a.name: helper.get_attribute_value(a) for a in out.attribute}
    if out_attrs.get("channels") != out_channels or out_attrs.get("channels_last", 0):
        return None
    inits = {t.name: numpy_helper.to_array(t) for t in optimized.graph.initializer}
    if conv.input[1] not in inits:
        return None
    reordered = inits[conv.input[1]]
    index = np.rint(reordered).astype(np.int64) - 1
    real = index[index >= 0]
    if real.size != size or not np.array_equal(np.sort(real), np.arange(size)) or (index < -1).any():
        return None  # not a permutation with zero padding
    perm = np.where(index < 0, size, index)
    attrs = []
    for a in conv.attribute:
        value = helper.get_attribute_value(a)
        attrs.append((a.name, value.decode() if isinstance(value, bytes) else value))
    return NchwcConv(reorder_input, tuple(attrs), out_channels, int(reordered.shape[0]), perm, in_channels)


def _optimized_probe(in_channels: int, shape: tuple[int, ...], group: int, window: dict) -> onnx.ModelProto:
    import onnxruntime as ort

    r = len(shape) - 2
    w = (np.arange(math.prod(shape), dtype=np.float32) + 1).reshape(shape)
    attrs = {k: v for k, v in window.items()}
    node = helper.make_node("Conv", ["x", "w"], ["y"], group=group, **attrs)
    dims: list[str | int] = ["N", in_channels, *(f"S{i}" for i in range(r))]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    graph = helper.make_graph(
        [node],
        "nchwc_probe",
        [x],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.log_severity_level = 4
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    with tempfile.TemporaryDirectory(prefix="anacompile-nchwc-") as folder:
        so.optimized_model_filepath = os.path.join(folder, "probe.onnx")
        ort.InferenceSession(model.SerializeToString(), so, providers=[CPU])
        return onnx.load(so.optimized_model_filepath)


FED = ("w", "w_ir", "w_a", "w_var", "scale")
"""The fed inputs of an NCHWc body after X, in_scale and the noise, as the session names them
(``L.`` + :data:`anacompile.contract.NCHWC_PREFIX` + the key): the reordered filters of q W g, q W_ir,
|q| |W| ir_a_scale and q^2 |W| k1 g^2, and the output scales (for the depthwise tail, reordered)."""
NCHWC_INPUTS = ("X", "in_scale", "noise_bank", *FED, "bias")


@dataclass
class NchwcLayer:
    """One convolution layer's NCHWc body (:meth:`function`) and the fed tensors it reads (:meth:`feeds`).

    The filters are derived from the chip's effective weights and output scales once per (chip, t), in numpy
    (:meth:`feeds`, float32, the same arithmetic as the plain Conv body's weight ops), so a run does no
    weight-sized work. ``weights`` is the layer whose chip state (``L.w_eff``, ``L.scale``) it reads.
    """

    name: str
    weights: str
    periphery: Periphery
    window: dict
    channels: int
    n_out: int
    n_tiles: int
    tile_rows: int
    plan: NchwcConv
    ir_row_weight: np.ndarray
    out_gain: np.ndarray | None

    @property
    def kernel(self) -> list[int]:
        return [int(k) for k in self.window["kernel_shape"]]

    @property
    def cpt(self) -> int:
        """Input channels per tile."""
        kk = int(math.prod(self.kernel))
        return self.tile_rows // kk if self.n_tiles > 1 else self.channels

    @property
    def cpt_padded(self) -> int:
        """Input channels per tile of the NCHWc Conv: ``cpt``, or more (zero channels) where onnxruntime blocks
        only whole blocks of channels per group."""
        return self.plan.in_channels // self.n_tiles if self.n_tiles > 1 else self.cpt

    @property
    def outs(self) -> int:
        """Output channels of the grouped conv (N per tile)."""
        return self.n_tiles * self.n_out

    @property
    def blocked(self) -> bool:
        """No padded channels: the periphery runs in the blocked layout."""
        return self.plan.blocked_channels == self.outs

    @functools.cached_property
    def tail(self) -> NchwcConv | None:
        """The depthwise 1x1 NCHWc Conv of the per-channel scales and bias (one tile, blocked), or None."""
        if not self.blocked or self.n_tiles > 1:
            return None
        tail = nchwc_conv(self.outs, self.outs, self.outs, {"kernel_shape": [1] * len(self.kernel)})
        if tail is None or not tail.reorder_input or tail.blocked_channels != self.outs:
            return None
        return tail

    @property
    def used(self) -> tuple[str, ...]:
        """The keys of :data:`FED` this periphery reads."""
        p = self.periphery
        keys = ["w"]
        if p.ir_drop > 0:
            keys += ["w_ir", "w_a"]
        if p.has_mvm_noise and p.read_noise > 0:
            keys.append("w_var")
        return (*keys, "scale")

    def input_name(self, key: str) -> str:
        return contract.layer_tensor(self.name, f"{contract.NCHWC_PREFIX}{key}")

    def feeds(self, w_eff: np.ndarray, scale: np.ndarray) -> dict[str, np.ndarray]:
        """The fed tensors of the body for the chip state (``L.w_eff`` in ADC codes per DAC code, ``L.scale``)."""
        p, c = self.periphery, tile_constants(self.periphery)
        f32 = np.float32
        n_tiles, n_out, cpt, kernel = self.n_tiles, self.n_out, self.cpt, self.kernel
        w = np.asarray(w_eff, f32)
        if n_tiles > 1:  # (n_tiles, tile_rows, N) -> (n_tiles * N, cpt, *kernel)
            wk = w.reshape(n_tiles, cpt, -1, n_out).transpose(0, 3, 1, 2).reshape(self.outs, cpt, *kernel)
        else:  # (K, N) -> (N, C, *kernel)
            wk = w.T.reshape(n_out, self.channels, *kernel)
        gain = None
        if p.output_range is OutputRange.CALIBRATED and self.out_gain is not None:
            per_tile = np.broadcast_to(np.asarray(self.out_gain, f32).reshape(n_tiles, 1), (n_tiles, n_out))
            gain = per_tile.reshape(self.outs, 1, 1, 1)
        w_g = wk if gain is None else wk * gain
        extra = self.cpt_padded - cpt

        def reorder(f: np.ndarray) -> np.ndarray:  # zero filters for a tile's padding channels, then reordered
            return self.plan.reorder(np.pad(f, [(0, 0), (0, extra)] + [(0, 0)] * len(kernel)) if extra else f)

        out = {"w": reorder(w_g)}
        abs_w = np.abs(wk)
        if p.ir_drop > 0:  # 0.05 g_IR in W_ir, negated (added as the Conv's Sum); ir_a_scale in |W|
            factor = self.ir_row_weight.astype(f32).reshape(1, cpt, *kernel) * (f32(c.ir_drop) * f32(0.05))
            out["w_ir"] = reorder(w_g * -factor)
            out["w_a"] = reorder(abs_w * f32(c.ir_a_scale))
        if "w_var" in self.used:  # k1 g^2 in the weights
            k1 = f32(c.noise_k1)
            out["w_var"] = reorder(abs_w * (k1 if gain is None else k1 * (gain * gain)))
        s = np.asarray(scale, f32)
        if self.tail is not None:
            out["scale"] = self.tail.reorder(s.reshape(-1))
        elif n_tiles > 1:
            out["scale"] = s.reshape(n_tiles, n_out, 1)
        else:
            out["scale"] = s.reshape([1, n_out] + [1] * len(kernel))
        return {self.input_name(k): np.ascontiguousarray(v, f32) for k, v in out.items()}

    def function(self, opset: int) -> onnx.FunctionProto:
        """``AnalogMatMul`` (overload ``conv.<layer>``) of the layer: its tile MVMs as NCHWc Convs.

        Inputs :data:`NCHWC_INPUTS`: X, in_scale, the fed noise, the fed filters and scales of :meth:`feeds`
        (a key this periphery does not read is an empty input), the bias. The arithmetic is
        :func:`anacompile.crossbar.functions.build_analog_conv_function`'s (and so
        :func:`anacompile.crossbar.reference.tile_forward`'s on the patches): DAC once on X, the MVMs q W g,
        q W_ir, |q| |W| and q^2 |W| as Convs of the codes, IR drop, read noise and ADC on their outputs,
        per-tile scales, the tiles' sum and the bias; one pass (static input ranges or no DAC). Folded where
        exact in exact arithmetic (module docstring): the IR-drop and noise terms are the Conv's Sum input,
        the ADC bound its Clip activation (an integral bound: Clip and Round commute), the constants
        ``ir_a_scale``, ``noise_k1`` g^2 ride in the filters and ``noise_k2`` is a bias, so outputs may
        differ from the reference by float32 rounding (an ADC step where a value sits on a rounding boundary).
        """
        return _body(self, opset)


def _body(layer: NchwcLayer, opset: int) -> onnx.FunctionProto:
    p, plan = layer.periphery, layer.plan
    if p.bm_passes > 1 or (p.dac_bits is not None and p.input_range is not InputRange.STATIC):
        raise ValueError("a convolution without patches needs static input ranges (or no DAC), one pass")
    b = FunctionBody()
    i64 = TensorProto.INT64
    kernel, n_tiles, n_out, cpt, outs = layer.kernel, layer.n_tiles, layer.n_out, layer.cpt, layer.outs
    r, tiled, blocked, channels = len(kernel), n_tiles > 1, layer.blocked, layer.channels
    filters = {key: key for key in FED}
    k2 = None
    if "w_var" in layer.used:  # sqrt(k1 g^2 q^2 |W| + k2): k2 is the q^2 Conv's bias
        k2 = b.op("Reshape", b.attr_const("noise_k2"), b.const([1], i64))
        k2 = b.op("Expand", k2, b.const([plan.blocked_channels], i64))
    levels = b.attr_const("dac_levels") if p.dac_bits is not None else None
    bound = b.attr_const("code_bound") if p.adc_bound is not None else None
    in_scale = "in_scale"
    cpt_padded = layer.cpt_padded
    if tiled and p.dac_bits is not None:  # one DAC scale per tile: per group of cpt (padded) channels
        per_tile = b.op("Reshape", "in_scale", b.const([n_tiles, 1], i64))
        per_channel = b.op("Expand", per_tile, b.const([n_tiles, cpt_padded], i64))
        in_scale = b.op("Reshape", per_channel, b.const([1, n_tiles * cpt_padded] + [1] * r, i64))
    bias = b.op("Reshape", "bias", b.const([1, n_out] + [1] * r, i64))
    attrs: dict[str, Any] = dict(plan.attributes)
    code_bound = tile_constants(p).code_bound if bound is not None else 0.0
    fused = blocked and _integral(code_bound)

    def conv(left: str, name: str, conv_bias: str = "", total: str | None = None, **extra) -> str:
        inputs = [left, filters[name], conv_bias] + ([total] if total is not None else [])
        while inputs[-1] == "":
            inputs.pop()
        y = b.op("Conv", *inputs, domain=NCHWC_DOMAIN, **attrs, **extra)
        if not blocked:
            y = b.op("ReorderOutput", y, domain=NCHWC_DOMAIN, channels=outs, channels_last=0)
        return y

    x = "X"
    if tiled and n_tiles * cpt > channels:  # zero channels up to whole tiles (their weight rows are zero)
        pads = [0] * (2 * (r + 2))
        pads[r + 2 + 1] = n_tiles * cpt - channels
        x = b.op("Pad", x, b.const(pads, i64))
    if cpt_padded > cpt:  # zero channels after each tile's: (N, n_tiles, cpt, S) -> (N, n_tiles, cpt', S)
        spatial = b.op("Slice", b.op("Shape", x), b.const([2], i64), b.const([2**62], i64))
        x = b.op("Reshape", x, b.const([0, n_tiles, cpt, -1], i64))
        x = b.op("Pad", x, b.const([0, 0, 0, 0, 0, 0, cpt_padded - cpt, 0], i64))
        x = b.op("Reshape", x, b.op("Concat", b.const([0, n_tiles * cpt_padded], i64), spatial, axis=0))
    q = x
    if levels is not None:
        q = b.op("Round", b.op("Clip", b.op("Mul", x, in_scale), b.op("Neg", levels), levels))
    if plan.reorder_input:
        q = b.op("ReorderInput", q, domain=NCHWC_DOMAIN, channels_last=0)
    # the terms added to q W g: -g_IR c(a) z_ir (W_ir negated), c(a) = 0.05 a ((a - 2)^2 + 6); the noise
    extra = None
    if p.ir_drop > 0:
        z_ir = conv(q, "w_ir")
        a = conv(b.op("Abs", q), "w_a")
        d = b.op("Sub", a, b.const(2.0))
        extra = b.op("Mul", b.op("Mul", a, b.op("Add", b.op("Mul", d, d), b.const(6.0))), z_ir)
    noise = None
    if p.has_mvm_noise:
        if k2 is not None:
            var = conv(b.op("Mul", q, q), "w_var", k2)
            noise = b.op("Mul", b.op("Sqrt", var), b.op("Reshape", "noise_bank", b.op("Shape", var)))
        elif extra is not None:
            noise = b.op("Reshape", "noise_bank", b.op("Shape", extra))  # fed pre-scaled by noise_std
        elif not tiled:  # (N, *S', N_out) -> the conv output's shape (N, N_out, *S')
            shape = b.op("Shape", "noise_bank")
            shape = b.op(
                "Concat",
                b.op("Slice", shape, b.const([0], i64), b.const([1], i64)),
                b.const([outs], i64),
                b.op("Slice", shape, b.const([1], i64), b.const([-1], i64)),
                axis=0,
            )
            noise = b.op("Reshape", "noise_bank", shape)
        if noise is not None:
            extra = noise if extra is None else b.op("Add", extra, noise)
    if fused and not (p.has_mvm_noise and noise is None):
        # the extra terms as the Conv's Sum input, the ADC bound as its Clip activation (then Round)
        clip = {}
        if bound is not None:
            cb = float(np.float32(code_bound))
            clip = {"activation": "Clip", "activation_params": [-cb, cb]}
        z = conv(q, "w", "", extra, **clip)
        if p.adc_bits is not None:
            z = b.op("Round", z)
    else:
        z = conv(q, "w")
        if extra is not None:
            z = b.op("Add", z, extra)
        elif p.has_mvm_noise:  # tiled, fed noise only: its shape is the output's
            z = b.op("Add", z, b.op("Reshape", "noise_bank", b.op("Shape", z)))
        if p.adc_bits is not None:
            z = b.op("Round", z)
        if bound is not None:
            z = b.op("Clip", z, b.op("Neg", bound), bound)
    if layer.tail is not None:  # the per-channel scale and bias: one depthwise 1x1 Conv of the blocked output
        tail_bias = b.op("Reshape", "bias", b.const([-1], i64))
        tail_attrs: dict[str, Any] = dict(layer.tail.attributes)
        z = b.op("Conv", z, "scale", tail_bias, domain=NCHWC_DOMAIN, **tail_attrs)
        b.op("ReorderOutput", z, domain=NCHWC_DOMAIN, channels=outs, channels_last=0)
    else:
        if blocked:
            z = b.op("ReorderOutput", z, domain=NCHWC_DOMAIN, channels=outs, channels_last=0)
        if tiled:  # (N, n_tiles * N_out, *S') -> scales per tile, the tiles' sum by a MatMul, the bias
            zs = b.op("Mul", b.op("Reshape", z, b.const([0, n_tiles, n_out, -1], i64)), "scale")
            y = sum_conv_tiles(b, zs, z, n_tiles, n_out)
        else:
            y = b.op("Mul", z, "scale")
        b.op("Add", y, bias)
    b.nodes[-1].output[0] = "Y"
    return analog_matmul_function(
        b,
        conv_overload(layer.name),
        f"Analog tiles of convolution {layer.name} as NCHWc Convs of fed filters (anacompile session).",
        opset,
        inputs=NCHWC_INPUTS,
        domains=((NCHWC_DOMAIN, 1),),
    )


def _integral(value: float) -> bool:
    """Whether ``value`` (as float32) is a whole number: then Round(Clip(z)) = Clip(Round(z)) at that bound."""
    v = float(np.float32(value))
    return v == round(v)
