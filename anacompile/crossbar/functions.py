"""ONNX function bodies (model-local FunctionProtos) of the analog ops, built from standard ops only.

A compiled model carries these functions, so it passes ``onnx.checker.check_model(full_check=True)``, opens
in Netron and runs in a stock onnxruntime with no plugin. The bodies are specialised per model by the
structural switches of its :class:`~anacompile.crossbar.periphery.Periphery` (a noise source that is off
is left out, never scaled to zero); the numbers (steps, bounds, sigmas, device constants) are attributes
of the calling node, referenced from the body.

``AnalogMatMul`` is the arithmetic of :func:`anacompile.crossbar.reference.analog_matmul_reference`, op
for op. Per-MVM Gaussian noise comes from RandomNormalLike in the file (self-contained, any batch), or, in
the analog session, from a slice of a bank of standard normals drawn from the chip's seed at an offset the
session draws per run: RandomNormalLike costs ~11 ns per element in onnxruntime, a slice ~0.3 ns
(docs/architecture.md).

``AnalogChipWeights`` is the per-(chip, t) stage: drift and 1/f read noise of the device model
(:mod:`anacompile.devices.pcm`, or a table device's curves, :mod:`anacompile.devices.table`), pair
differences with significance factors, and drift compensation. The
analog session computes the same with numpy once per (chip, t) and feeds it instead
(:mod:`anacompile.runtime.session`); in the file it makes the model self-contained for deployment.
"""

from __future__ import annotations

import functools
import math
from enum import Enum

import onnx
from onnx import AttributeProto, TensorProto, helper

from anacompile import contract
from anacompile.contract import CHIP_ATTRIBUTES, CHIP_INPUTS, MATMUL_ATTRIBUTES, MATMUL_INPUTS, TILED
from anacompile.crossbar.compensation import compensation_nodes
from anacompile.crossbar.periphery import DriftCompensation, InputRange, OutputRange, Periphery
from anacompile.crossbar.reference import ABSMAX_EPS, tile_constants
from anacompile.devices.table import Curve, TableDevice

__all__ = [
    "MATMUL_INPUTS",
    "TILED",
    "overload_name",
    "NoiseSource",
    "CHIP_INPUTS",
    "analog_matmul_attributes",
    "build_analog_matmul_function",
    "build_chip_weights_function",
    "chip_weights_attributes",
]


class _Body:
    """Accumulates the nodes of a function body with unique value names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self._n = 0
        self._attr_done: set[str] = set()

    def op(self, op_type: str, *inputs: str, n_out: int = 1, **attrs) -> str:
        outs = [f"_{op_type.lower()}{self._n}_{i}" for i in range(n_out)]
        self._n += 1
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, **attrs))
        return outs[0]

    def const(self, value, dtype: int = TensorProto.FLOAT) -> str:
        """A constant tensor of shape () (scalar) or (n,) for a list."""
        if isinstance(value, (list, tuple)):
            t = helper.make_tensor(f"c{self._n}", dtype, [len(value)], list(value))
        else:
            t = helper.make_tensor(f"c{self._n}", dtype, [], [value])
        return self.op("Constant", value=t)

    def attr_const(self, attr_name: str, kind: str = "float") -> str:
        """A Constant whose value is the calling node's attribute ``attr_name``."""
        out = f"_attr_{attr_name}"
        if out in self._attr_done:
            return out
        self._attr_done.add(out)
        node = helper.make_node("Constant", [], [out])
        a = AttributeProto()
        if kind == "float":
            a.name, a.type = "value_float", AttributeProto.FLOAT
        else:
            a.name, a.type = "value_floats", AttributeProto.FLOATS
        a.ref_attr_name = attr_name
        node.attribute.append(a)
        self.nodes.append(node)
        return out

    def reduce(self, op_type: str, x: str, axes: list[int], keepdims: int, opset: int) -> str:
        if op_type == "ReduceSum" or opset >= 18:
            return self.op(op_type, x, self.const(axes, TensorProto.INT64), keepdims=keepdims)
        return self.op(op_type, x, axes=axes, keepdims=keepdims)


FunctionBody = _Body
"""The body builder, for the session's own bodies built elsewhere (runtime/nchwc.py)."""


def analog_matmul_attributes(periphery: Periphery, seed: int) -> dict[str, float]:
    """Attribute values of an ``AnalogMatMul`` node: the constants its body references."""
    return {"seed": float(seed), **tile_constants(periphery).as_attributes()}


class NoiseSource(str, Enum):
    """Where ``AnalogMatMul`` takes its per-MVM standard normals from."""

    RANDOM = "random"
    """RandomNormalLike in the graph: self-contained, any batch size (the compiled file)."""
    BANK = "bank"
    """A slice ``noise_bank[noise_start:noise_end]`` fed by the caller (the analog session: ~5x cheaper)."""
    FED = "fed"
    """The noise itself, shaped like the MVM output, fed by the caller in input ``noise_bank`` (the analog
    session's top-level layers: no slicing in the graph); pre-scaled by ``noise_std`` when the read noise
    is off, standard normal otherwise. With bound management it carries one slab per pass."""


def overload_name(tiled: bool, noise: NoiseSource = NoiseSource.RANDOM) -> str:
    """Function overload of an AnalogMatMul body: "" / "tiled", with "_fed" for fed noise."""
    base = TILED if tiled else ""
    if noise is NoiseSource.FED:
        return f"{base}_fed" if base else "fed"
    return base


def build_analog_matmul_function(
    periphery: Periphery, opset: int, noise: NoiseSource = NoiseSource.RANDOM, tiled: bool = False, pairs: bool = False
) -> onnx.FunctionProto:
    """``AnalogMatMul(X, W, in_scale, scale, bias, ir_row_weight, noise_bank, noise_start, noise_end) -> Y``.

    W is the tile's effective normalised weights pre-scaled to ADC codes per DAC code (``code_gain`` d/D,
    see :func:`~anacompile.crossbar.reference.tile_constants`), as the chip stage outputs them.

    A layer on one tile (the plain body): X (..., K); W (K, N); in_scale (1, 1) = 1/(alpha_in d) (static
    input ranges; unused for abs-max); scale (1, N) = gamma D alpha_in alpha_GDC; bias (N,); ir_row_weight
    (K, 1); noise_bank (M,), noise_start/noise_end (1,) int64 (``bank`` source only); Y (..., N).

    A layer on n_tiles > 1 row tiles (overload ``tiled``): W (n_tiles, tile_rows, N), in_scale
    (n_tiles, 1, 1), scale (n_tiles, 1, N), ir_row_weight (tile_rows, 1); X is zero-padded to whole tiles,
    each tile has its own DAC and ADC, and the partial sums are added digitally.

    ``pairs`` (tiled only; the plain body broadcasts as it is): a leading axis of P (chip, t) pairs, as
    :mod:`anacompile.runtime.chip_batch` runs them: X (P, vectors, K), W (P, n_tiles, tile_rows, N), scale
    (P, n_tiles, 1, N), Y (P, vectors, N); each pair's arithmetic is the one-pair body's.

    The arithmetic is :func:`anacompile.crossbar.reference.analog_matmul_reference`, op for op.
    """
    p = periphery
    b = _Body()
    i64 = TensorProto.INT64
    if tiled:
        shape_w = b.op("Shape", "W")
        o = 1 if pairs else 0  # W's axes after the pair axis
        n_pairs = b.op("Slice", shape_w, b.const([0], i64), b.const([1], i64)) if pairs else None
        nb = b.op("Slice", shape_w, b.const([o], i64), b.const([o + 1], i64))
        tr = b.op("Slice", shape_w, b.const([o + 1], i64), b.const([o + 2], i64))
        n_out = b.op("Slice", shape_w, b.const([o + 2], i64), b.const([o + 3], i64))
        shape_x = b.op("Shape", "X")
        lead = b.op("Slice", shape_x, b.const([0], i64), b.const([-1], i64))
        k = b.op("Slice", shape_x, b.const([-1], i64), b.const([2**62], i64))
        x2 = b.op("Reshape", "X", b.op("Concat", b.const([-1], i64), k, axis=0))
        pad = b.op("Sub", b.op("Mul", nb, tr), k)
        xp = b.op("Pad", x2, b.op("Concat", b.const([0, 0, 0], i64), pad, axis=0))
        if n_pairs is not None:  # (P * vectors, K) -> (P, n_tiles, vectors, tile_rows)
            xb = b.op("Reshape", xp, b.op("Concat", n_pairs, b.const([-1], i64), nb, tr, axis=0))
            xt = b.op("Transpose", xb, perm=[0, 2, 1, 3])
        else:
            xb = b.op("Reshape", xp, b.op("Concat", b.const([-1], i64), nb, tr, axis=0))
            xt = b.op("Transpose", xb, perm=[1, 0, 2])
    else:
        xt = "X"
    a_in = None
    if p.dac_bits is None:
        xs = None
    else:
        if p.input_range is InputRange.STATIC:
            xs = b.op("Mul", xt, "in_scale")
        else:
            amax = b.reduce("ReduceMax", b.op("Abs", xt), [-1], 1, opset)
            a_in = b.op("Max", amax, b.const(ABSMAX_EPS))
            if p.bm_passes > 1:  # the peak exactly at L: its halved code is an exact tie (reference: tile_forward)
                xs = b.op("Mul", b.op("Div", xt, a_in), b.op("Reciprocal", b.attr_const("dac_step")))
            else:
                xs = b.op("Mul", xt, b.op("Reciprocal", b.op("Mul", a_in, b.attr_const("dac_step"))))
    gain = "out_gain" if p.output_range is OutputRange.CALIBRATED else None
    passes = p.bm_passes
    xi_all = "noise_bank" if noise is NoiseSource.FED and passes > 1 else None
    if p.has_mvm_noise and noise is NoiseSource.BANK and passes > 1:
        shape_all = b.op(
            "Concat",
            b.const([passes], i64),
            b.op("Slice", b.op("Shape", xt), b.const([0], i64), b.const([-1], i64)),
            b.op("Slice", b.op("Shape", "W"), b.const([-1], i64), b.const([2**62], i64)),
            axis=0,
        )
        xi_all = b.op("Reshape", b.op("Slice", "noise_bank", "noise_start", "noise_end"), shape_all)

    def pass_noise(k: int, z_k: str) -> str:
        if noise is NoiseSource.RANDOM:
            return normal_like(b, z_k, opset, [z_k])
        if xi_all is not None:
            return b.op("Gather", xi_all, b.const(k, i64), axis=0)
        if noise is NoiseSource.FED:
            return "noise_bank"
        return b.op("Reshape", b.op("Slice", "noise_bank", "noise_start", "noise_end"), b.op("Shape", z_k))

    z = periphery_passes(
        b,
        p,
        opset,
        xs if xs is not None else xt,
        lambda left, weight: b.op("MatMul", left, weight),
        derived_weights(b, p, "W", "ir_row_weight", gain),
        gain,
        pass_noise,
        prescaled=noise is NoiseSource.FED,
        axis=-1,
        gain_in_weights=True,
    )
    if a_in is not None:
        z = b.op("Mul", z, a_in)  # abs-max: one input range per vector
    if tiled:
        # sum of the tiles' partial sums: ones(1, n_tiles) @ (z * scale); ReduceSum over a leading axis is slow
        zs_shape = [nb, b.const([-1], i64)] if n_pairs is None else [n_pairs, nb, b.const([-1], i64)]
        zs = b.op("Reshape", b.op("Mul", z, "scale"), b.op("Concat", *zs_shape, axis=0))
        ones = b.op(
            "ConstantOfShape",
            b.op("Concat", b.const([1], i64), nb, axis=0),
            value=helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0]),
        )
        b.op("Add", b.op("Reshape", b.op("MatMul", ones, zs), b.op("Concat", lead, n_out, axis=0)), "bias")
    else:
        b.op("Add", b.op("Mul", z, "scale"), "bias")
    b.nodes[-1].output[0] = "Y"
    return analog_matmul_function(
        b,
        overload_name(tiled, noise),
        "Analog crossbar MVM with DAC, tiles, noise, IR drop, ADC, digital scales (anacompile).",
        opset,
    )


def analog_matmul_function(
    b: _Body,
    overload: str,
    doc: str,
    opset: int,
    inputs: tuple[str, ...] = MATMUL_INPUTS,
    domains: tuple[tuple[str, int], ...] = (),
) -> onnx.FunctionProto:
    """The ``AnalogMatMul`` FunctionProto of body ``b`` (its last node writes ``Y``): overload ``overload``,
    formal ``inputs`` (the contract's, or a session body's), the standard opset ``opset`` and any other
    operator ``domains`` the body uses (name, version)."""
    fn = helper.make_function(
        contract.DOMAIN,
        contract.ANALOG_MATMUL,
        list(inputs),
        list(contract.MATMUL_OUTPUTS),
        b.nodes,
        [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in domains],
        attributes=list(MATMUL_ATTRIBUTES),
        doc_string=doc,
    )
    fn.overload = overload
    return fn


def build_analog_conv_function(
    periphery: Periphery,
    opset: int,
    layer: str,
    window: dict,
    channels: int,
    n_out: int,
    n_tiles: int,
    tile_rows: int,
) -> onnx.FunctionProto:
    """``AnalogMatMul`` of one convolution layer without patches: the tile MVMs as native ``Conv`` ops.

    Same inputs as the fed bodies (:func:`build_analog_matmul_function`), but X is the convolution's input
    (N, C, *S) instead of its patches (..., K), and Y is (N, N_out, *S'). With static input ranges (or no
    DAC) the DAC commutes with patch extraction: a patch holds input elements and padding zeros, and the DAC
    maps 0 to the code 0, so the codes of the patches are the patches of the codes. The input is quantised
    once, and every MVM of the tile arithmetic (q W, q W_ir, |q| |W|, q^2 |W|) is a Conv of the codes with
    the matrix rows as its kernel: rows are channel-major (c, kernel offset), so W (K, N) is the kernel
    (N, C, *kernel) transposed; q W and q W_ir are one Conv with both kernels. Several row tiles, each
    holding whole channels (``tile_rows`` a multiple of prod(kernel)), are one grouped Conv (group = n_tiles)
    over the zero-padded channels, each group with its own DAC scale; the periphery then runs on
    (N, n_tiles, N_out, positions) and the partial sums are added by a MatMul. The fed noise holds one
    standard normal per output of every tile MVM, as on the patch path; they are assigned to the outputs in
    another order, which does not change their law.

    ``window`` is the source conv's kernel_shape, strides, dilations and pads or auto_pad.
    """
    p = periphery
    if p.bm_passes > 1 or (p.dac_bits is not None and p.input_range is not InputRange.STATIC):
        raise ValueError("a convolution without patches needs static input ranges (or no DAC), one pass")
    b = _Body()
    i64 = TensorProto.INT64
    kernel = [int(k) for k in window["kernel_shape"]]
    r, kk = len(kernel), int(math.prod(window["kernel_shape"]))
    tiled = n_tiles > 1
    cpt = tile_rows // kk if tiled else channels  # input channels per tile
    attrs = {k: v for k, v in window.items() if k != "group"}
    x = "X"
    if tiled and n_tiles * cpt > channels:  # zero channels up to whole tiles (their weight rows are zero)
        pads = [0] * (2 * (r + 2))
        pads[r + 2 + 1] = n_tiles * cpt - channels
        x = b.op("Pad", x, b.const(pads, i64))
    if p.dac_bits is None:
        xs = x
    elif tiled:  # one DAC scale per tile: per group of cpt channels
        per_tile = b.op("Reshape", "in_scale", b.const([n_tiles, 1], i64))
        per_channel = b.op("Expand", per_tile, b.const([n_tiles, cpt], i64))
        xs = b.op("Mul", x, b.op("Reshape", per_channel, b.const([1, n_tiles * cpt] + [1] * r, i64)))
    else:
        xs = b.op("Mul", x, "in_scale")
    if tiled:  # (n_tiles, tile_rows, N) -> (n_tiles * N, cpt, *kernel)
        wk = b.op("Reshape", "W", b.const([n_tiles, cpt, kk, n_out], i64))
        wk = b.op("Reshape", b.op("Transpose", wk, perm=[0, 3, 1, 2]), b.const([n_tiles * n_out, cpt, *kernel], i64))
    else:  # (K, N) -> (N, C, *kernel)
        wk = b.op("Reshape", b.op("Transpose", "W", perm=[1, 0]), b.const([n_out, channels, *kernel], i64))
    irw = b.op("Reshape", "ir_row_weight", b.const([1, cpt, *kernel], i64)) if p.ir_drop > 0 else "ir_row_weight"
    flat = b.const([0, n_tiles, n_out, -1], i64)
    convs: list[str] = []

    def conv(left: str, weight: str) -> str:
        convs.append(b.op("Conv", left, weight, group=n_tiles, **attrs))
        return convs[-1]

    def mvm(left: str, weight: str) -> str:
        out = conv(left, weight)
        return b.op("Reshape", out, flat) if tiled else out  # tiled: (N, n_tiles, N_out, positions)

    def mvm_pair(q: str, w: str, w_ir: str) -> tuple[str, str]:
        both = conv(q, b.op("Concat", w, w_ir, axis=0))
        z = b.op("Split", both, b.const([n_out, n_out], i64), axis=1, n_out=2)
        return z, b.nodes[-1].output[1]

    gain = None
    if p.output_range is OutputRange.CALIBRATED:
        gain = b.op("Reshape", "out_gain", b.const([n_tiles, 1, 1], i64)) if tiled else "out_gain"
    z = periphery_passes(
        b,
        p,
        opset,
        xs,
        mvm,
        derived_weights(b, p, wk, irw),
        gain,
        lambda k, z_k: b.op("Reshape", "noise_bank", b.op("Shape", z_k)),
        prescaled=True,
        axis=2 if tiled else 1,
        mvm_pair=None if tiled else mvm_pair,
    )
    if tiled:
        zs = b.op("Mul", z, b.op("Reshape", "scale", b.const([n_tiles, n_out, 1], i64)))
        y = sum_conv_tiles(b, zs, convs[0], n_tiles, n_out)
    else:
        y = b.op("Mul", z, b.op("Reshape", "scale", b.const([1, n_out] + [1] * r, i64)))
    b.op("Add", y, b.op("Reshape", "bias", b.const([1, n_out] + [1] * r, i64)))
    b.nodes[-1].output[0] = "Y"
    return analog_matmul_function(
        b, conv_overload(layer), f"Analog tiles of convolution {layer} as native Conv ops (anacompile session).", opset
    )


def sum_conv_tiles(b: _Body, zs: str, conv_out: str, n_tiles: int, n_out: int) -> str:
    """The digital sum of a tiled convolution's partial sums: ``zs`` (N, n_tiles, N_out, positions), each
    tile's codes already times its scale, summed by a MatMul with a row of ones (ReduceSum over a leading axis
    is slow) and shaped like the conv output ``conv_out`` (N, n_tiles * N_out, *S') with N_out channels."""
    i64 = TensorProto.INT64
    row = b.op("Reshape", b.const([1.0] * n_tiles), b.const([1, n_tiles], i64))
    summed = b.op("MatMul", row, b.op("Reshape", zs, b.const([0, n_tiles, -1], i64)))
    conv_shape = b.op("Shape", conv_out)
    out_shape = b.op(
        "Concat",
        b.op("Slice", conv_shape, b.const([0], i64), b.const([1], i64)),
        b.const([n_out], i64),
        b.op("Slice", conv_shape, b.const([2], i64), b.const([2**62], i64)),
        axis=0,
    )
    return b.op("Reshape", summed, out_shape)


def conv_overload(layer: str) -> str:
    """Overload of the AnalogMatMul body of convolution ``layer`` without patches (the analog session's)."""
    return f"{CONV}.{layer}"


CONV = "conv"


def derived_weights(
    b: _Body, p: Periphery, w: str, ir_row_weight: str, gain: str | None = None
) -> tuple[str, str | None, str | None]:
    """(W g, |W|, W g ir_row_weight 0.05 g_IR) of the tile MVMs (None where that effect is off).

    The output gain g (calibrated output ranges; None for 1) and the IR drop's constant factors are folded
    into the weights, once per run on weight-sized tensors instead of on every output: (q W) g = q (W g), and
    g_IR c(a) q W_ir = a ((a - 2)^2 + 6) q (0.05 g_IR W_ir) (:func:`periphery_passes`). |W| stays unscaled:
    the IR drop's a and the read noise see the device currents.
    """
    w_g = w if gain is None else b.op("Mul", w, gain)
    abs_w = b.op("Abs", w) if (p.read_noise > 0 or p.ir_drop > 0) else None
    w_ir = None
    if p.ir_drop > 0:
        factor = b.op("Mul", ir_row_weight, b.op("Mul", b.attr_const("ir_drop"), b.const(0.05)))
        w_ir = b.op("Mul", w_g, factor)
    return w_g, abs_w, w_ir


def periphery_passes(
    b: _Body,
    p: Periphery,
    opset: int,
    xs: str,
    mvm,
    weights: tuple[str, str | None, str | None],
    gain: str | None,
    pass_noise,
    prescaled: bool,
    axis: int,
    mvm_pair=None,
    gain_in_weights: bool = False,
) -> str:
    """DAC codes -> MVM with IR drop, gain, noise -> ADC, for every bound-management pass; returns the codes.

    ``xs`` is the input already scaled to DAC code units (or the raw input with the DAC off); ``mvm(left,
    weight)`` is the tile MVM (a MatMul, or a Conv for a convolution without patches) of a left operand
    shaped like ``xs`` with one of ``weights`` = (W, |W|, W * ir_row_weight); ``pass_noise(k, z_k)`` gives
    pass k's standard normals shaped like ``z_k`` (pre-scaled by ``noise_std`` when ``prescaled`` and the
    read noise is off); ``axis`` is the axis of an output vector's N values (for bound management);
    ``gain_in_weights``: W and W_ir carry the output gain already (:func:`derived_weights`);
    ``mvm_pair(q, W, W_ir)``, if given, computes (q W, q W_ir) in one op. The arithmetic is
    :func:`anacompile.crossbar.reference.tile_forward`'s, op for op.
    """
    w, abs_w, w_ir = weights
    k1 = None
    if p.read_noise > 0 and p.has_mvm_noise:  # read noise scales with the gain: k1 g^2
        k1 = (
            b.attr_const("noise_k1") if gain is None else b.op("Mul", b.attr_const("noise_k1"), b.op("Mul", gain, gain))
        )
    passes = p.bm_passes
    z = None
    # iterative bound management: pass k halves the input k times; from the last pass back to the first a
    # vector keeps the first pass in which none of its outputs saturates (reference: tile_forward)
    for k in reversed(range(passes)):
        if p.dac_bits is None:
            q = xs
        else:
            xk = xs if k == 0 else b.op("Mul", xs, b.const(0.5**k))
            levels = b.attr_const("dac_levels")
            q = b.op("Round", b.op("Clip", xk, b.op("Neg", levels), levels))
        if p.ir_drop > 0 and mvm_pair is not None:
            z_k, z_ir = mvm_pair(q, w, w_ir)
        else:
            z_k = mvm(q, w)
            z_ir = mvm(q, w_ir) if p.ir_drop > 0 else None
        if p.ir_drop > 0:  # g_IR c(a) z_ir, c(a) = a (0.05 a^2 - 0.2 a + 0.5) = 0.05 a ((a - 2)^2 + 6)
            a = b.op("Mul", mvm(b.op("Abs", q), abs_w), b.attr_const("ir_a_scale"))
            d = b.op("Sub", a, b.const(2.0))
            corr = b.op("Mul", a, b.op("Add", b.op("Mul", d, d), b.const(6.0)))
            z_k = b.op("Sub", z_k, b.op("Mul", corr, z_ir))  # 0.05 g_IR is in W_ir
        if gain is not None and not gain_in_weights:  # calibrated output range: the tile's gain before the ADC
            z_k = b.op("Mul", z_k, gain)
        if p.has_mvm_noise:
            xi = pass_noise(k, z_k)
            if p.read_noise > 0:
                var = b.op("Add", b.op("Mul", mvm(b.op("Mul", q, q), abs_w), k1), b.attr_const("noise_k2"))
                z_k = b.op("Add", z_k, b.op("Mul", b.op("Sqrt", var), xi))
            elif prescaled:
                z_k = b.op("Add", z_k, xi)  # fed pre-scaled by noise_std
            else:
                z_k = b.op("Add", z_k, b.op("Mul", b.attr_const("noise_std"), xi))
        saturated = None
        if passes > 1:
            peak = b.reduce("ReduceMax", b.op("Abs", z_k), [axis], 1, opset)
            saturated = b.op("GreaterOrEqual", peak, b.attr_const("code_bound"))
        if p.adc_bits is not None:
            z_k = b.op("Round", z_k)
        if p.adc_bound is not None:
            bound = b.attr_const("code_bound")
            z_k = b.op("Clip", z_k, b.op("Neg", bound), bound)
        if k:
            z_k = b.op("Mul", z_k, b.const(2.0**k))
        z = z_k if z is None else b.op("Where", saturated, z, z_k)
    assert z is not None  # passes >= 1
    return z


HASH_MODULUS = 2**31 - 1
"""Modulus of the counter-based generator (a Lehmer generator's prime, Park & Miller 1988)."""
HASH_MULTIPLIERS = (48271, 69621, 16807)
HASH_ROUNDS = 3


@functools.cache
def random_ops_load(opset: int) -> bool:
    """Whether the installed onnxruntime has a kernel for RandomNormalLike at ``opset`` (1.32 has none from
    opset 22, where the op's schema version changed)."""
    import onnxruntime as ort

    node = helper.make_node("RandomNormalLike", ["x"], ["y"], dtype=TensorProto.FLOAT)
    graph = helper.make_graph(
        [node],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.log_severity_level = 4
    try:
        ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - onnxruntime's own types: no kernel at this opset
        return False
    return True


def normal_like(b: _Body, ref: str, opset: int, mix: list[str]) -> str:
    """Standard normals shaped like ``ref``, seeded by the calling node's ``seed`` attribute.

    Where the installed onnxruntime runs RandomNormalLike at ``opset``, that op (fresh draws every run).
    Otherwise (opset >= 22 with onnxruntime 1.32) a counter-based generator of standard integer ops: for
    element i, x = ((i + key) mod (M - 1)) + 1 with key = (seed * 69621 + h) mod M, M = 2^31 - 1 and h a
    hash of the tensors ``mix`` (the values the noise perturbs, and t); then :data:`HASH_ROUNDS` rounds of
    x <- (48271 x mod M) xor (x >> 11) for one uniform, three more for a second, and Box-Muller. The draws are
    then a deterministic function of (seed, element, inputs): identical inputs give identical noise, any
    change of an input gives fresh noise. (The analog session never uses either: it feeds its own noise.)
    """
    if random_ops_load(opset):
        xi = b.op("RandomNormalLike", ref, dtype=TensorProto.FLOAT)
        _set_seed_ref(b.nodes[-1])
        return xi
    i64 = TensorProto.INT64
    m = b.const(HASH_MODULUS, i64)
    m1 = b.const(HASH_MODULUS - 1, i64)
    one = b.const(1, i64)
    mf = b.const(float(HASH_MODULUS))
    idx = b.op("Range", b.const(0, i64), b.op("Size", ref), one)
    seed = b.op("Cast", b.op("Mod", b.op("Abs", b.attr_const("seed")), mf, fmod=1), to=i64)
    key = b.op("Mul", seed, b.const(HASH_MULTIPLIERS[1], i64))
    for t in mix:
        total = b.op("ReduceSum", b.op("Abs", b.op("Cast", t, to=TensorProto.FLOAT)), keepdims=0)
        h = b.op("Floor", b.op("Mod", b.op("Mul", total, b.const(997.0)), mf, fmod=1))
        key = b.op(
            "Mod",
            b.op("Add", b.op("Mul", b.op("Mod", key, m), b.const(HASH_MULTIPLIERS[2], i64)), b.op("Cast", h, to=i64)),
            m,
        )
    x = b.op("Add", b.op("Mod", b.op("Add", idx, key), m1), one)

    def rounds(x: str, n: int) -> str:
        for _ in range(n):
            x = b.op("Mod", b.op("Mul", x, b.const(HASH_MULTIPLIERS[0], i64)), m)
            x = b.op("BitwiseXor", x, b.op("Div", x, b.const(2048, i64)))
            x = b.op("Add", b.op("Mod", x, m1), one)  # in [1, M - 1]: never the generator's fixed point 0
        return x

    x1 = rounds(x, HASH_ROUNDS)
    x2 = rounds(x1, HASH_ROUNDS)
    u1 = b.op("Min", b.op("Div", b.op("Cast", x1, to=TensorProto.FLOAT), mf), b.const(1.0))
    u2 = b.op("Div", b.op("Cast", x2, to=TensorProto.FLOAT), mf)
    radius = b.op("Sqrt", b.op("Mul", b.const(-2.0), b.op("Log", u1)))
    z = b.op("Mul", radius, b.op("Cos", b.op("Mul", u2, b.const(6.283185307179586))))
    return b.op("Reshape", z, b.op("Shape", ref))


def _set_seed_ref(node: onnx.NodeProto) -> None:
    a = AttributeProto()
    a.name, a.type, a.ref_attr_name = "seed", AttributeProto.FLOAT, "seed"
    node.attribute.append(a)


def chip_weights_attributes(device, significance, gain_us: float, seed: int, code_gain: float = 1.0) -> dict:
    """Attribute values of an ``AnalogChipWeights`` node, from the device dataclass fields.

    ``code_gain`` is the periphery's d/D (:func:`~anacompile.crossbar.reference.tile_constants`). A table
    device's curves are constants of its function body (:func:`build_chip_weights_function`), not attributes."""
    common = {
        "seed": float(seed),
        "significance": [float(f) for f in significance],
        "inv_gain": 1.0 / float(gain_us),
        "code_gain": float(code_gain),
    }
    if isinstance(device, TableDevice):
        return common
    return {
        **common,
        "g_max_us": float(device.g_max_us),
        "t0_s": float(device.drift.t0_s),
        "q_coefficient": float(device.read_noise.q_coefficient),
        "q_exponent": float(device.read_noise.q_exponent),
        "q_floor": float(device.read_noise.q_floor),
        "q_max": float(device.read_noise.q_max),
        "two_t_read_s": float(2.0 * device.read_noise.t_read_s),
        "t_read_s": float(device.read_noise.t_read_s),
    }


def _curve(b: _Body, curve: Curve, g: str, g_max_us: float) -> str:
    """A device curve of the conductance tensor ``g`` (µS) in ONNX ops, as :meth:`Curve.__call__`.

    Table: y0 + sum_k s_k (min(max(g, x_k), x_{k+1}) - x_k), the linear interpolation held at the ends.
    Piecewise polynomial: Horner in x = clip(g / g_max, 0, 1) per piece, selected with Where."""
    if curve.is_table:
        xs, ys = curve.g_us, curve.values
        out = b.op("Mul", b.op("Abs", g), b.const(0.0))  # zeros of g's shape
        out = b.op("Add", out, b.const(ys[0]))
        for k in range(len(xs) - 1):
            slope = (ys[k + 1] - ys[k]) / (xs[k + 1] - xs[k])
            seg = b.op("Sub", b.op("Min", b.op("Max", g, b.const(xs[k])), b.const(xs[k + 1])), b.const(xs[k]))
            out = b.op("Add", out, b.op("Mul", seg, b.const(slope)))
        return out
    x = b.op("Min", b.op("Max", b.op("Div", g, b.const(float(g_max_us))), b.const(0.0)), b.const(1.0))
    result = ""
    for i, coeffs in enumerate(curve.poly_g_hat):
        acc = b.op("Add", b.op("Mul", x, b.const(0.0)), b.const(coeffs[-1]))
        for c in coeffs[-2::-1]:
            acc = b.op("Add", b.op("Mul", acc, x), b.const(c))
        result = (
            acc if i == 0 else b.op("Where", b.op("GreaterOrEqual", x, b.const(curve.breaks_g_hat[i])), acc, result)
        )
    return result


def _table_read(b: _Body, device: TableDevice, opset: int) -> str:
    """g(t) of a table device (:mod:`anacompile.devices.table`): drift, relaxation and read noise, clipped."""
    t = b.op("Add", "t_inference", b.const(device.t0_s))
    g_drift = b.op(
        "Mul", "g_prog", b.op("Exp", b.op("Neg", b.op("Mul", "nu", b.op("Log", b.op("Div", t, b.const(device.t0_s))))))
    )
    g_max = device.g_max_us
    rel = b.op("Mul", b.op("Abs", g_drift), _curve(b, device.read_q, "g_prog", g_max))
    if device.read_bandwidth == "1/f":
        bw = b.op(
            "Sqrt", b.op("Log", b.op("Div", b.op("Add", t, b.const(device.t_read_s)), b.const(2.0 * device.t_read_s)))
        )
        rel = b.op("Mul", rel, bw)
    var = b.op("Mul", rel, rel)
    times = device.relaxation_times_s
    if times:
        s_p = _curve(b, device.programming_sigma, "g_prog", g_max)
        s_p2 = b.op("Mul", s_p, s_p)
        excess = []
        for c in device.relaxation_sigma:
            s_k = _curve(b, c, "g_prog", g_max)
            excess.append(b.op("Relu", b.op("Sub", b.op("Mul", s_k, s_k), s_p2)))
        lt = b.op("Log", b.op("Max", "t_inference", b.const(times[0])))
        v = excess[0]
        for k in range(len(times) - 1):
            l0, l1 = math.log(times[k]), math.log(times[k + 1])
            f = b.op(
                "Div",
                b.op("Sub", b.op("Min", b.op("Max", lt, b.const(l0)), b.const(l1)), b.const(l0)),
                b.const(l1 - l0),
            )
            v = b.op("Add", v, b.op("Mul", b.op("Sub", excess[k + 1], excess[k]), f))
        ramp = b.op("Min", b.op("Div", "t_inference", b.const(times[0])), b.const(1.0))
        var = b.op("Add", var, b.op("Mul", v, ramp))
    xi = normal_like(b, "g_prog", opset, ["nu", "t_inference"])
    g_t = b.op("Add", g_drift, b.op("Mul", b.op("Sqrt", var), xi))
    lo, hi = device.window_us
    return b.op("Min", b.op("Max", g_t, b.const(lo)), b.const(hi))


def build_chip_weights_function(compensation: DriftCompensation, opset: int, device=None) -> onnx.FunctionProto:
    """``AnalogChipWeights(g_prog, nu, t_inference, gdc_ref, out_scale) -> (W, scale)``: a chip at t.

    Device model (reference/papers.md, "PCM device model", items 2-3): t = t_inf + t0,
    g_drift = g_prog (t/t0)^-nu, g = max(g_drift + |g_drift| Q_s(|g_prog|/g_max) sqrt(ln((t + t_r)/(2 t_r))) xi, 0),
    Q_s(g^) = min(q / max(g^^e, q_floor), q_max). Then W = sum_p F_p (G+_p - G-_p) / gain and the drift
    compensation alpha = gdc_ref / sum|W| (:mod:`anacompile.crossbar.compensation`; global; per column for
    ``column``; ones for ``none``), and the
    output scale of AnalogMatMul, scale = out_scale * alpha.
    """
    b = _Body()
    i64 = TensorProto.INT64
    table = isinstance(device, TableDevice)
    if table:
        g_t = _table_read(b, device, opset)
    else:
        t = b.op("Add", "t_inference", b.attr_const("t0_s"))
        log_ratio = b.op("Log", b.op("Div", t, b.attr_const("t0_s")))
        g_drift = b.op("Mul", "g_prog", b.op("Exp", b.op("Neg", b.op("Mul", "nu", log_ratio))))
        bw = b.op(
            "Sqrt", b.op("Log", b.op("Div", b.op("Add", t, b.attr_const("t_read_s")), b.attr_const("two_t_read_s")))
        )
        ghat = b.op("Div", b.op("Abs", "g_prog"), b.attr_const("g_max_us"))
        powed = b.op("Pow", ghat, b.attr_const("q_exponent"))
        q = b.op(
            "Min",
            b.op("Div", b.attr_const("q_coefficient"), b.op("Max", powed, b.attr_const("q_floor"))),
            b.attr_const("q_max"),
        )
        xi = normal_like(b, "g_prog", opset, ["nu", "t_inference"])
        noise = b.op("Mul", b.op("Mul", b.op("Mul", b.op("Abs", g_drift), q), bw), xi)
        g_t = b.op("Relu", b.op("Add", g_drift, noise))
    g_pos = b.op("Gather", g_t, b.const(0, i64), axis=1)
    g_neg = b.op("Gather", g_t, b.const(1, i64), axis=1)
    diff = b.op("Sub", g_pos, g_neg)  # (P, [n_tiles,] rows, N)
    rank_rest = b.op("Sub", b.op("Size", b.op("Shape", diff)), b.const([1], i64))
    ones = b.op("ConstantOfShape", rank_rest, value=helper.make_tensor("one", i64, [1], [1]))
    sig = b.op("Reshape", b.attr_const("significance", "floats"), b.op("Concat", b.const([-1], i64), ones, axis=0))
    w = b.reduce("ReduceSum", b.op("Mul", diff, sig), [0], 0, opset)
    w = b.op("Mul", w, b.attr_const("inv_gain"))
    b.op("Mul", w, b.attr_const("code_gain"))  # pre-scaled to ADC codes per DAC code for AnalogMatMul
    b.nodes[-1].output[0] = "W"
    alpha = compensation_nodes(b, w, "gdc_ref", "out_scale", compensation, opset)
    b.op("Mul", "out_scale", alpha)
    b.nodes[-1].output[0] = "scale"
    attrs = list(CHIP_ATTRIBUTES[:4] if table else CHIP_ATTRIBUTES)
    return helper.make_function(
        contract.DOMAIN,
        contract.CHIP_WEIGHTS,
        list(CHIP_INPUTS),
        list(contract.CHIP_OUTPUTS),
        b.nodes,
        [helper.make_opsetid("", opset)],
        attributes=attrs,
        doc_string="One programmed chip's effective weights at t_inference: drift, 1/f read noise, GDC.",
    )
