"""Convolutions without the patch matrix, in the analog session (issue 14).

A compiled file runs a convolution layer as patch extraction (a one-hot ``Conv``), a Transpose to channels
last, one ``AnalogMatMul`` over the patches and a Transpose back (:mod:`anacompile.passes.conv`). That is
right for every periphery, abs-max input ranges included, but the DAC and the whole periphery then run on the
patch matrix, prod(kernel) times the activations, and the one-hot ``Conv`` (C * prod(kernel) output channels)
is the slowest node of the model.

With static input ranges (or no DAC) the DAC commutes with patch extraction, so the session replaces the
four nodes of such a layer by one ``AnalogMatMul`` call of a per-layer body that quantises the input once and
runs the tile MVMs as native ``Conv`` ops of the fed weights
(:func:`anacompile.crossbar.functions.build_analog_conv_function`). It is fed what the patch path is fed
(the chip's weights, scales, and one standard normal per tile output), so the session's programming, noise
bank and shape probes are unchanged.

Layers keep the patch path with abs-max ranges (one range per patch), with iterative bound management (the
DAC runs once per pass, on halved inputs), for ``ConvTranspose`` (patches of the zero-inserted input), when a
row tile would split an input channel (that channel would have two DAC scales), for a pointwise conv (no
patches to save; it runs as a 1x1 NCHWc Conv where onnxruntime has one for it and the layer is on one tile,
which saves the two Transposes), and when a tensor of the patch path is asked for (``extra_outputs``).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
from onnx import helper, numpy_helper

from anacompile import contract
from anacompile.crossbar.functions import build_analog_conv_function, conv_overload
from anacompile.crossbar.periphery import InputRange, Periphery
from anacompile.graph_walk import all_nodes, drop_unused_initializers
from anacompile.runtime.nchwc import FED, NCHWC_DOMAIN, NchwcLayer, nchwc_conv

__all__ = ["native_convs"]


def native_convs(
    m: onnx.ModelProto,
    layers,
    periphery: Periphery,
    keep: set[str] | frozenset[str] = frozenset(),
    nchwc: dict | None = None,
) -> list[str]:
    """Rewrite every eligible convolution layer of the session model ``m`` in place; return their names.

    Args:
        m: the session's model (chip stage stripped; a main-graph layer's noise, if any, is fed).
        layers: the session's :class:`~anacompile.runtime.session.ChipLayer` list.
        periphery: the periphery in force.
        keep: tensor names that must stay computed (``extra_outputs``).
        nchwc: None, or run the tile MVMs as onnxruntime's NCHWc Convs where it has them for the geometry
            (:mod:`anacompile.runtime.nchwc`; CPU provider only) and put those layers' :class:`NchwcLayer`
            in this dict by name (the session feeds what they derive from its chip state).
    """
    static = periphery.dac_bits is None or periphery.input_range is InputRange.STATIC
    if not static or periphery.bm_passes > 1:
        return []
    g = m.graph
    producers = {out: node for node in g.node for out in node.output}
    uses = Counter(name for node in all_nodes(g) for name in node.input)
    pinned = set(keep) | {o.name for o in g.output}
    by_name = {layer.name: layer for layer in layers}
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 17)
    drop: set[int] = set()
    done: list[str] = []
    for node in g.node:  # main-graph layers only (their noise is fed; Loop bodies slice the bank)
        layer = by_name.get(node.name)
        if layer is None or node.domain != contract.DOMAIN or node.op_type != contract.ANALOG_MATMUL:
            continue
        found = _patch_nodes(node, layer, producers, uses, pinned, g)
        if found is None:
            continue
        patch, to_last, to_first, window = found
        spec = layer.spec
        channels = int(window["group"])
        plan = _nchwc_plan(window, channels, spec) if nchwc is not None else None
        if patch is None and plan is None:  # pointwise: no patches to save, the Transposes and MatMul stay
            continue
        if plan is not None:
            assert nchwc is not None  # a plan only when asked for
            values = {t.name: t for t in g.initializer}
            gain = node.input[contract.OUT_GAIN_INPUT] if len(node.input) > contract.OUT_GAIN_INPUT else ""
            nl = NchwcLayer(
                node.name,
                layer.weights,
                periphery,
                window,
                channels,
                spec.n_out,
                spec.n_tiles,
                spec.rows,
                plan,
                numpy_helper.to_array(values[node.input[5]]),
                numpy_helper.to_array(values[gain]) if gain in values else None,
            )
            m.functions.append(nl.function(opset))
            if not any(o.domain == NCHWC_DOMAIN for o in m.opset_import):
                m.opset_import.append(helper.make_opsetid(NCHWC_DOMAIN, 1))
            w_shape, s_shape = layer.state_shapes
            fed = nl.feeds(np.zeros(w_shape, np.float32), np.zeros(s_shape, np.float32))
            for name, value in fed.items():
                g.input.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, list(value.shape)))
            noise = node.input[6] if len(node.input) > 6 else ""
            x, in_scale, bias = node.input[0], node.input[2], node.input[4]
            names = [nl.input_name(k) if nl.input_name(k) in fed else "" for k in FED]
            del node.input[:]
            node.input.extend([x, in_scale, noise, *names, bias])
            nchwc[node.name] = nl
        else:
            args = (periphery, opset, node.name, window, channels, spec.n_out, spec.n_tiles, spec.rows)
            m.functions.append(build_analog_conv_function(*args))
        node.input[0] = (to_last if patch is None else patch).input[0]
        node.output[0] = to_first.output[0]
        node.overload = conv_overload(node.name)
        drop.update(id(n) for n in (patch, to_last, to_first) if n is not None)
        done.append(node.name)
    if done:
        kept = [n for n in g.node if id(n) not in drop]
        del g.node[:]
        g.node.extend(kept)
        drop_unused_initializers(g)
    return done


def _nchwc_plan(window: dict, channels: int, spec):
    """onnxruntime's NCHWc form of the layer's grouped tile Conv (one group per row tile, its channels padded to
    whole blocks where onnxruntime needs that), or None."""
    kk = int(np.prod(window["kernel_shape"]))
    cpt = spec.rows // kk if spec.tiled else channels
    if not spec.tiled:
        return nchwc_conv(cpt, spec.n_out, 1, window)
    for align in (1, 8, 16):  # tiles padded with zero channels to a multiple of the kernels' block
        plan = nchwc_conv(spec.n_tiles * -(-cpt // align) * align, spec.n_tiles * spec.n_out, spec.n_tiles, window)
        if plan is not None:
            return plan
    return None


def _patch_nodes(node, layer, producers, uses, pinned, g):
    """(patch Conv, channels-last and channels-first Transposes, the window) of a layer to rewrite, or None."""
    name = node.name
    to_last = producers.get(node.input[0])
    if to_last is None or to_last.op_type != "Transpose" or to_last.name != f"{name}.channels_last":
        return None
    patch = producers.get(to_last.input[0])
    to_first = next((n for n in g.node if n.name == f"{name}.channels_first" and n.input[0] == node.output[0]), None)
    if to_first is None:
        return None
    spec = layer.spec
    if patch is None or patch.name != f"{name}.patches":  # pointwise: no patches, the tiles read the input
        r = len(helper.get_attribute_value(to_last.attribute[0])) - 2
        if spec.tiled or any(uses[t] != 1 or t in pinned for t in (to_last.output[0], node.output[0])):
            return None  # (a tiled layer's exact channel count is not in the session's plan)
        window = {"kernel_shape": [1] * r, "strides": [1] * r, "dilations": [1] * r, "pads": [0] * (2 * r)}
        return None, to_last, to_first, {**window, "group": spec.rows}
    if patch.op_type != "Conv":
        return None  # ConvTranspose (patches of the zero-inserted input)
    window = {a.name: helper.get_attribute_value(a) for a in patch.attribute}
    window = {k: v.decode() if isinstance(v, bytes) else v for k, v in window.items()}
    kk = int(np.prod(window["kernel_shape"]))
    if spec.tiled and spec.rows % kk:  # a tile boundary inside an input channel
        return None
    if not spec.tiled and spec.rows != int(window["group"]) * kk:
        return None
    if any(uses[t] != 1 or t in pinned for t in (patch.output[0], to_last.output[0], node.output[0])):
        return None
    return patch, to_last, to_first, window
