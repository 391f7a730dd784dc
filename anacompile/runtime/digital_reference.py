"""The FP32 model a compiled file was made from, rebuilt from the file's programming plan."""

from __future__ import annotations

import numpy as np
import onnx

from anacompile import contract, devices
from anacompile.contract import read_report
from anacompile.errors import UnsupportedModelError
from anacompile.graph_walk import all_nodes, expose_values, node_subgraphs, walk_graphs
from anacompile.mapping import decode_pairs
from anacompile.mapping.registry import mapping_from_dict

__all__ = ["all_nodes", "digital_reference_model", "plan_weight", "weights_layer"]


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
    used = {i for n in all_nodes(g) for i in n.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    state = {contract.layer_tensor(name, s) for name in shapes for s in (contract.W_EFF, contract.SCALE)}
    # the model's inputs stay; a file without a chip (chip_state none) loses its chip-state inputs
    inputs = [i for i in g.input if i.name in used or (i.name not in inits and i.name not in state)]
    del g.input[:]
    g.input.extend(inputs)
    del m.functions[:]
    del g.value_info[:]
    return m
