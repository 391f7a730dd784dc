"""FeedNoisePass: every ``AnalogMatMul`` reads its per-MVM noise from the session instead of RandomNormalLike.

* A main-graph layer runs one MVM per run: the session feeds its noise tensor itself (input ``L.noise``,
  ``NoiseSource.FED`` overload), shaped like the MVM output.
* A layer in an If branch or a Loop body reads slices of one fed noise bank (input ``noise_bank``,
  ``NoiseSource.BANK``): step i reads ``bank[s_i : s_i + step]`` with
  s_i = (noise_start + i * step) mod (len(bank) - step + 1) and step = passes * n_tiles * N * (vectors of one
  step), ``passes`` the MVMs per vector (iterative bound management: 1 + bm_max_halvings). The session reserves
  noise_end - noise_start = T * step for the layer (inputs ``L.noise_start``, ``L.noise_end``; ``layer.input``
  counts the vectors of all T steps), so within a run the steps' slices are disjoint and every step gets fresh
  noise; the modulo only keeps a slice inside the bank. Outside Loops (an If branch) i = 0: the one call reads
  the slice reserved for it.

With no per-MVM noise in the periphery (``has_mvm_noise`` false) nothing changes.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from anacompile import contract
from anacompile.contract import TILED
from anacompile.crossbar.functions import NoiseSource, overload_name
from anacompile.crossbar.periphery import Periphery
from anacompile.runtime.passes._walk import analog_matmuls
from anacompile.runtime.passes.strip_chip_stage import replace_graph_input

__all__ = ["FeedNoisePass", "step_noise_offsets"]

NOISE_INPUT = 6
"""Index of ``AnalogMatMul``'s first noise input (``noise_bank``, then ``noise_start``, ``noise_end``)."""


def step_noise_offsets(
    node: ir.Node, iteration: ir.Value | None, cols: int, bank: ir.Value, start: ir.Value
) -> tuple[list[ir.Node], ir.Value, ir.Value]:
    """Nodes computing the bank slice [s_i, s_i + step) of ``node`` at iteration ``iteration`` (None: i = 0),
    ``cols`` = passes * n_tiles * N noise values per input vector; returns (nodes, s_i, s_i + step)."""
    p = f"{node.name}.step_noise."
    nodes: list[ir.Node] = []

    def make(op: str, inputs: list[ir.Value | None], out: str, **attrs) -> ir.Value:
        n = ir.node(op, inputs, attributes=attrs or None)
        n.outputs[0].name = p + out
        nodes.append(n)
        return n.outputs[0]

    def const(out: str, value: int) -> ir.Value:
        return make("Constant", [], out, value=ir.tensor(np.array([value], np.int64), name=p + out))

    zero, last, one, cols_v = const("zero", 0), const("last", -1), const("one", 1), const("cols", cols)
    x_shape = make("Shape", [node.inputs[0]], "x_shape")
    lead = make("Slice", [x_shape, zero, last], "lead")
    vectors = make("ReduceProd", [lead], "vectors", keepdims=1)
    step = make("Mul", [vectors, cols_v], "step")
    if iteration is not None:
        raw = make("Add", [start, make("Mul", [iteration, step], "skip")], "raw")
    else:
        raw = make("Identity", [start], "raw")
    bank_len = make("Shape", [bank], "bank_len")
    room = make("Add", [make("Sub", [bank_len, step], "room0"), one], "room")
    s_i = make("Mod", [raw, room], "start")
    return nodes, s_i, make("Add", [s_i, step], "end")


class FeedNoisePass(ir.passes.InPlacePass):
    """Wire every session layer's ``AnalogMatMul`` to fed noise (main graph) or fed bank slices (subgraphs).

    Sets ``layer.fed`` (True for a main-graph layer). Adds the graph inputs ``L.noise`` (main-graph layers),
    ``L.noise_start`` and ``L.noise_end`` (int64 [1], the others) and ``noise_bank`` (if any layer reads it).

    Args:
        layers: the session's layers (``ChipLayer``: ``name``, ``n_tiles``, ``n_out``, ``fed``).
        periphery: the periphery in force (``has_mvm_noise``, ``bm_passes``).
    """

    def __init__(self, layers: list, periphery: Periphery) -> None:
        super().__init__()
        self.layers = layers
        self.periphery = periphery

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        by_name = {layer.name: layer for layer in self.layers}
        found = [
            (g, it, node)
            for g, it, node in analog_matmuls(graph, by_name)
            if len(node.inputs) <= NOISE_INPUT or node.inputs[NOISE_INPUT] is None  # not wired yet
        ]
        if not self.periphery.has_mvm_noise or not found:
            return ir.passes.PassResult(model, modified=False)
        for g, _, node in found:
            by_name[node.name].fed = g is graph
        f, i64 = ir.DataType.FLOAT, ir.DataType.INT64
        inputs: dict[str, ir.Value] = {}
        for layer in self.layers:
            if layer.fed:
                inputs[layer.name] = replace_graph_input(graph, f"{layer.name}.{contract.NOISE}", f, None)[0]
            else:
                for suffix in (contract.NOISE_START, contract.NOISE_END):
                    name = f"{layer.name}.{suffix}"
                    inputs[name] = replace_graph_input(graph, name, i64, [1])[0]
        bank = None
        if not all(layer.fed for layer in self.layers):
            bank = replace_graph_input(graph, contract.NOISE_BANK, f, ["bank"])[0]
        for g, iteration, node in found:
            layer = by_name[node.name]
            gain = node.inputs[contract.OUT_GAIN_INPUT] if len(node.inputs) > contract.OUT_GAIN_INPUT else None
            node.resize_inputs(NOISE_INPUT)
            if layer.fed:  # one MVM per run: the session feeds its noise tensor as is
                noise: list[ir.Value | None] = [inputs[layer.name]]
                node.overload = overload_name(node.overload == TILED, NoiseSource.FED)
            else:  # a new slice at every iteration of a Loop body; an If branch's: the slice reserved for this run
                assert bank is not None  # some layer is not fed
                start = inputs[f"{layer.name}.{contract.NOISE_START}"]
                cols = self.periphery.bm_passes * layer.n_tiles * layer.n_out
                offsets, s_i, end = step_noise_offsets(node, iteration, cols, bank, start)
                g.insert_before(node, offsets)
                noise = [bank, s_i, end]
            if gain is not None:  # calibrated output range: the tiles' gains stay the last input
                noise += [None] * (contract.OUT_GAIN_INPUT - NOISE_INPUT - len(noise)) + [gain]
            node.resize_inputs(NOISE_INPUT + len(noise))
            for k, value in enumerate(noise):
                node.replace_input_with(NOISE_INPUT + k, value)
        return ir.passes.PassResult(model, modified=True)
