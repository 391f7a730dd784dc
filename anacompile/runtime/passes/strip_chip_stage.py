"""StripChipStagePass: the in-graph chip stage becomes inputs that the session feeds per (chip, t).

The compiled file computes every layer's effective weights and output scales in the graph
(``(L.w_eff, L.scale) = AnalogChipWeights(L.g_prog, L.nu, t_inference, L.gdc_ref, L.out_scale)``). The session
programs chips and reads them at time t in numpy instead (:mod:`anacompile.programming.chip_state`), so this
pass removes every ``AnalogChipWeights`` node and adds ``L.w_eff`` and ``L.scale`` as graph inputs, once per
stored weight (a shared weight's uses read its owner's). Initializers and graph inputs that no node reads any
more (the chip stage's ``g_prog``, ``nu``, ``t_inference``, ...) are dropped. A file without a chip
(``chip_state none``) already has these inputs: they are kept, with the layer's shapes.
"""

from __future__ import annotations

import onnx_ir as ir

from anacompile import contract

__all__ = ["StripChipStagePass"]

MIN_IR_VERSION = 10
"""The session's model uses function overloads (``AnalogMatMul`` bodies per noise source): IR version 10."""


def _graph_input(name: str, dtype: ir.DataType, shape: list | None) -> ir.Value:
    return ir.Value(name=name, type=ir.TensorType(dtype), shape=None if shape is None else ir.Shape(shape))


def replace_graph_input(graph: ir.Graph, name: str, dtype: ir.DataType, shape: list | None) -> tuple[ir.Value, bool]:
    """Graph input ``name`` of ``dtype`` and ``shape``, and whether the graph changed: an existing input of that
    name, type and shape is kept; otherwise a new input is appended and takes over the uses of the old one."""
    new = _graph_input(name, dtype, shape)
    old = next((v for v in graph.inputs if v.name == name), None)
    if old is not None and old.type == new.type and old.shape == new.shape:
        return old, False
    if old is not None:
        old.replace_all_uses_with(new)
        graph.inputs.remove(old)
    graph.inputs.append(new)
    return new, True


class StripChipStagePass(ir.passes.InPlacePass):
    """Remove the ``AnalogChipWeights`` nodes; feed ``L.w_eff`` and ``L.scale`` as graph inputs.

    Args:
        layers: the session's layers (``ChipLayer``: ``name``, ``owns_tiles``, ``state_shapes``).
    """

    def __init__(self, layers: list) -> None:
        super().__init__()
        self.layers = layers

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        chips = [n for n in graph if n.domain == contract.DOMAIN and n.op_type == contract.CHIP_WEIGHTS]
        produced = {out.name: out for node in chips for out in node.outputs}
        fed: list[ir.Value] = []
        modified = bool(chips)
        for layer in self.layers:
            if not layer.owns_tiles:  # the uses of a shared weight read its owner's state
                continue
            for suffix, shape in zip((contract.W_EFF, contract.SCALE), layer.state_shapes, strict=True):
                name = f"{layer.name}.{suffix}"
                new, changed = replace_graph_input(graph, name, ir.DataType.FLOAT, shape)
                modified |= changed
                if name in produced:
                    produced[name].replace_all_uses_with(new)
                fed.append(new)
        for node in chips:
            graph.remove(node, safe=True)
        for name, value in list(graph.initializers.items()):  # Loop bodies read them as outer-scope values
            if not value.uses() and not value.is_graph_output():
                graph.initializers.pop(name)
                if value in graph.inputs:
                    graph.inputs.remove(value)
                modified = True
        keep = set(map(id, fed))
        for value in list(graph.inputs):
            if id(value) not in keep and not value.uses() and not value.is_graph_output():
                graph.inputs.remove(value)
                modified = True
        if model.ir_version < MIN_IR_VERSION:
            model.ir_version, modified = MIN_IR_VERSION, True
        return ir.passes.PassResult(model, modified=modified)
