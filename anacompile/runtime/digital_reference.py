"""The FP32 model a compiled file was made from, rebuilt from the file's programming plan."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx

from anacompile import contract, devices
from anacompile.contract import read_report
from anacompile.errors import UnsupportedModelError
from anacompile.graph_walk import all_nodes, drop_unused_initializers, expose_values, node_subgraphs, walk_graphs
from anacompile.mapping import decode_pairs
from anacompile.mapping.registry import mapping_from_dict

__all__ = ["all_nodes", "digital_reference_model", "plan_weight", "weights_layer", "without_patches"]


def weights_layer(node: onnx.NodeProto) -> str:
    """The layer whose programmed tiles an AnalogMatMul reads: its W input is ``<layer>.w_eff``. That is the
    node's own name, or for a later use of a shared weight, the name of the weight's owner."""
    w = node.input[1] if len(node.input) > 1 else ""
    suffix = f".{contract.W_EFF}"
    return w[: -len(suffix)] if w.endswith(suffix) else node.name


def plan_weight(g_target_us: np.ndarray, col_scale: np.ndarray, significance, gain_us: float) -> np.ndarray:
    """A layer's weight from its programming plan, W = decode(g_target) * gamma, as (tile rows in all, N)."""
    return (decode_pairs(g_target_us, significance, gain_us) * col_scale).reshape(-1, g_target_us.shape[-1])


def digital_reference_model(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The FP32 model of a compiled file: every AnalogMatMul back to MatMul + Add with the decoded weight.

    The weight is decoded from the stored programming plan, W = decode(g_target) * gamma, so it equals the
    source weight up to float32 rounding (single pair; strategies that clip represent what they can).
    """

    report = read_report(proto)
    dev = devices.from_dict(report.device)
    mapping = mapping_from_dict(report.strategy)
    shapes = {layer.name: layer.weight_shape for layer in report.layers if layer.analog}
    own = {layer.name: mapping_from_dict(layer.strategy) for layer in report.layers if layer.analog and layer.strategy}
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    new_inits = []
    decoded: set[str] = set()

    def to_digital(graph: onnx.GraphProto) -> None:  # the main graph, and Loop bodies (recurrent layers)
        new_nodes = []
        for node in graph.node:
            if node.domain == contract.DOMAIN and node.op_type == contract.CHIP_WEIGHTS:
                continue
            if node.domain == contract.DOMAIN and node.op_type == contract.ANALOG_MATMUL:
                name, weights = node.name, weights_layer(node)  # a shared weight's uses read one matrix
                shape = shapes.get(weights)
                if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(d, int) for d in shape)):
                    raise UnsupportedModelError(
                        f"The compiled model's report does not describe analog layer "
                        f"{weights!r}; the file is corrupt: recompile the source model."
                    )
                if weights not in decoded:
                    g_t = onnx.numpy_helper.to_array(inits[f"{weights}.{contract.G_TARGET}"])
                    gamma = onnx.numpy_helper.to_array(inits[f"{weights}.{contract.COL_SCALE}"])
                    lm = own.get(weights, mapping)  # the layer's own strategy (--layer-strategy), else the model's
                    w = plan_weight(g_t, gamma, lm.significance, lm.gain_us(dev.g_min_us, dev.g_max_us))
                    w = w[: shapes[weights][0]]  # drop the zero rows that pad K to whole tiles
                    new_inits.append(onnx.numpy_helper.from_array(w.astype(np.float32), f"{weights}.weight"))
                    decoded.add(weights)
                mm_out = f"{name}.digital_mm"
                new_nodes.append(onnx.helper.make_node("MatMul", [node.input[0], f"{weights}.weight"], [mm_out]))
                new_nodes.append(onnx.helper.make_node("Add", [mm_out, node.input[4]], [node.output[0]]))
                continue
            for sub in node_subgraphs(node):
                to_digital(sub)
            new_nodes.append(node)
        del graph.node[:]
        graph.node.extend(new_nodes)

    inner = [  # layers in If branches and Loop/Scan bodies: their inputs as main-graph values
        (node.input[0], f"{node.name}.{contract.TILE_INPUTS}")
        for sub, _ in list(walk_graphs(g))[1:]
        for node in sub.node
        if node.domain == contract.DOMAIN and node.op_type == contract.ANALOG_MATMUL
    ]
    to_digital(g)
    # a Loop body's layer: the inputs of all steps, (T, ..., K), as a scan output; an If branch's: its input
    # when the branch runs, else an empty tensor (expose_values)
    expose_values(g, inner)
    g.initializer.extend(new_inits)  # main-graph initializers: a Loop body reads them from the outer scope
    drop_unused_initializers(g)
    used = {i for n in all_nodes(g) for i in n.input}
    state = {contract.layer_tensor(name, s) for name in shapes for s in (contract.W_EFF, contract.SCALE)}
    # the model's inputs stay; a file without a chip (chip_state none) loses its chip-state inputs
    inputs = [i for i in g.input if i.name in used or (i.name not in inits and i.name not in state)]
    del g.input[:]
    g.input.extend(inputs)
    del m.functions[:]
    del g.value_info[:]
    return m


def without_patches(m: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the digital reference model ``m`` in which every main-graph convolution layer is one ``Conv``.

    :func:`digital_reference_model` keeps the compiled file's patch path: a one-hot ``Conv`` that extracts the
    patches, a Transpose to channels last, ``MatMul`` + ``Add`` with the decoded weight and a Transpose back
    (:mod:`anacompile.passes.conv`). That path's tensors are the tiles' inputs (:meth:`AnalogSession.layer_inputs
    <anacompile.runtime.session.AnalogSession.layer_inputs>`), but it runs at about a tenth of a plain Conv's
    speed (the one-hot Conv writes prod(kernel) times the activations). The same arithmetic as one ``Conv``:
    the weight's rows are channel-major (c, kernel offset), so W (K, N) is the kernel (N, C, *kernel)
    transposed, and the window is the patch op's with group 1. Equal up to float32 summation order.

    Rewritten only where that is exactly the patch path: the patch kernel is the one-hot kernel of its group
    count and window (a pointwise layer has no patch op: the channels-last Transpose reads the input), the
    weight and bias are initializers, and no tensor in between is read elsewhere or a graph output. Layers in
    If branches and Loop bodies, and ``ConvTranspose`` layers, keep the patch path.
    """
    out = onnx.ModelProto()
    out.CopyFrom(m)
    g = out.graph
    inits = {t.name: t for t in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    uses = Counter(name for n in all_nodes(g) for name in n.input) + Counter(o.name for o in g.output)
    drop: set[int] = set()
    new: dict[int, onnx.NodeProto] = {}
    kernels: dict[tuple[str, tuple[int, ...]], str] = {}
    for last in g.node:
        if last.op_type != "Transpose" or not last.name.endswith(".channels_first"):
            continue
        layer = last.name[: -len(".channels_first")]
        found = _patch_path(last, layer, producers, uses, inits)
        if found is None:
            continue
        chain, x, w, bias, window, channels = found
        kernel = [int(k) for k in window["kernel_shape"]]
        key = (w, (channels, *kernel))
        if key not in kernels:  # a shared weight's layers read one kernel
            wk = onnx.numpy_helper.to_array(inits[w]).T.reshape(-1, channels, *kernel)
            kernels[key] = f"{w}.conv{len(kernels)}"
            g.initializer.append(onnx.numpy_helper.from_array(np.ascontiguousarray(wk), kernels[key]))
        attrs = {k: v for k, v in window.items() if k != "group"}
        conv = onnx.helper.make_node(
            "Conv", [x, kernels[key], bias], [last.output[0]], name=f"{layer}.digital_conv", **attrs
        )
        drop.update(id(n) for n in chain)
        new[id(chain[0])] = conv
    if new:
        nodes = [new.get(id(n), n) for n in g.node if id(n) not in drop or id(n) in new]
        del g.node[:]
        g.node.extend(nodes)
        drop_unused_initializers(g)
    return out


def _patch_path(last, layer, producers, uses, inits):
    """(nodes from the first to ``last``, X, W, bias, window, C) of a conv layer's digital patch path, or None."""
    add = producers.get(last.input[0])
    mm = producers.get(add.input[0]) if add is not None and add.op_type == "Add" else None
    if mm is None or mm.op_type != "MatMul" or mm.output[0] != f"{layer}.digital_mm":
        return None
    to_last = producers.get(mm.input[0])
    if to_last is None or to_last.op_type != "Transpose" or to_last.name != f"{layer}.channels_last":
        return None
    w, bias = mm.input[1], add.input[1]
    if w not in inits or bias not in inits or len(inits[w].dims) != 2 or list(inits[bias].dims) != [inits[w].dims[1]]:
        return None
    patch = producers.get(to_last.input[0])
    if patch is not None and patch.name == f"{layer}.patches":
        if patch.op_type != "Conv" or len(patch.input) != 2 or patch.input[1] not in inits:
            return None  # ConvTranspose: patches of the zero-inserted input
        window = {a.name: onnx.helper.get_attribute_value(a) for a in patch.attribute}
        window = {k: v.decode() if isinstance(v, bytes) else v for k, v in window.items()}
        kernel = [int(k) for k in window.get("kernel_shape", [])]
        channels, kk = int(window.get("group", 1)), int(np.prod(kernel)) if kernel else 0
        e = onnx.numpy_helper.to_array(inits[patch.input[1]])
        one_hot = np.zeros((channels, kk, kk), np.float32)
        one_hot[:, np.arange(kk), np.arange(kk)] = 1.0
        if (
            not kernel
            or e.shape != (channels * kk, 1, *kernel)
            or not np.array_equal(e.reshape(one_hot.shape), one_hot)
        ):
            return None
        chain, x = [patch, to_last, mm, add, last], patch.input[0]
    else:  # pointwise: the tiles read the input itself, channels last
        r = len(onnx.helper.get_attribute_value(to_last.attribute[0])) - 2
        window = {"kernel_shape": [1] * r, "strides": [1] * r, "pads": [0] * (2 * r)}
        channels, chain, x = int(inits[w].dims[0]), [to_last, mm, add, last], to_last.input[0]
    if inits[w].dims[0] != channels * int(np.prod(window["kernel_shape"])):
        return None
    if any(uses.get(n.output[0], 0) != 1 for n in chain[:-1]):
        return None
    return chain, x, w, bias, window, channels
