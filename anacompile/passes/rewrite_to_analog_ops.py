"""RewriteToAnalogOpsPass: replace every planned MatMul/Gemm by AnalogChipWeights + AnalogMatMul.

Per layer ``L`` the graph gains initializers ``L.g_target`` (programming plan), ``L.col_scale`` (gamma)
and ``L.in_range`` (alpha_in), ``L.g_prog`` and ``L.nu`` (the programmed chip's state), ``L.gdc_ref``,
``L.out_scale``, ``L.in_scale``, ``L.bias``, ``L.ir_row_weight``, and two nodes in domain ``ai.anacompile``::

    (L.w_eff, L.scale) = AnalogChipWeights(L.g_prog, L.nu, t_inference, L.gdc_ref, L.out_scale)
    Y                  = AnalogMatMul(X, L.w_eff, L.in_scale, L.scale, L.bias, L.ir_row_weight)

``t_inference`` is a scalar graph input with a stored default of 0 s (an overridable initializer), so
tools that know nothing of time can ignore it.

With ``chip_state="none"`` (:data:`anacompile.contract.CHIP_STATE_NONE`) no chip was programmed: there are
no ``L.g_prog``, ``L.nu``, ``L.gdc_ref``, no AnalogChipWeights node and no ``t_inference``, and
``L.w_eff`` and ``L.scale`` are graph inputs (the analog session feeds them after programming the chip).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from anacompile import contract
from anacompile.contract import TILED
from anacompile.crossbar.functions import analog_matmul_attributes, chip_weights_attributes
from anacompile.crossbar.periphery import OutputRange, Periphery
from anacompile.crossbar.reference import ir_row_weights, layer_scales, tile_constants
from anacompile.errors import UnsupportedModelError
from anacompile.passes._layer import (
    LAYER_KEY,
    LayerPlan,
    analog_layers,
    is_use,
    node_plans,
    plan_mapping,
    walk_nodes,
)
from anacompile.passes._names import free_layer_prefixes, register_initializer
from anacompile.passes._tensor_store import squeezed
from anacompile.passes.lowering import EmitContext, LoweringRegistry
from anacompile.passes.op_registry import LOWERINGS

__all__ = ["RewriteToAnalogOpsPass"]


_initializer = register_initializer


class RewriteToAnalogOpsPass(ir.passes.InPlacePass):
    """Rewrite every planned layer to the analog ops; a second run finds nothing left to rewrite.

    Each planned node is replaced by its lowering's emitter, looked up in ``lowerings`` by the node's
    ``(domain, op_type)``, the key :class:`~anacompile.passes.mark_analog_ops.MarkAnalogOpsPass` planned it by.
    """

    def __init__(
        self,
        device,
        mapping,
        periphery: Periphery,
        seed: int = 0,
        chip: int = 0,
        lowerings: LoweringRegistry = LOWERINGS,
        chip_state: str = contract.CHIP_STATE_FULL,
    ) -> None:
        super().__init__()
        self.lowerings = lowerings
        self.chip_state = chip_state
        self.device = device
        self.mapping = mapping
        self.periphery = periphery
        self.seed = seed
        self.chip = chip

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        layers = analog_layers(model)
        if not layers:
            return ir.passes.PassResult(model, modified=False)
        graph = model.graph
        free_layer_prefixes(graph, [plan.name for _, plan in layers])  # a source value "fc1.bias" of layer fc1
        t_inf = graph.initializers.get(contract.T_INFERENCE)
        if t_inf is None and self.chip_state == contract.CHIP_STATE_FULL:
            t_inf = _initializer(graph, contract.T_INFERENCE, np.zeros((), np.float32))
            graph.inputs.append(t_inf)
        index = {id(plan): i for i, (_, plan) in enumerate(layers)}  # seeds: one per layer, in plan order
        # every planned node, main graph first, then If/Loop/Scan bodies (the order MarkAnalogOps named them
        # in): a shared weight's owner comes before the ops that use its tiles
        nodes = [node for node, _ in walk_nodes(graph) if node_plans(node)]
        self._chips: dict[str, tuple[ir.Value, ir.Value, ir.Value, ir.Value]] = {}
        self._n_uses = 0
        lifted: list[ir.Node] = []  # chip stages of layers in subgraphs: they go to the main graph
        for node in nodes:
            plans = node_plans(node)
            home = node.graph  # the main graph, or the If branch / Loop or Scan body holding the op

            def analog(x, plan=None, plans=plans):
                plan = plans[0] if plan is None else plan
                return self._analog_nodes(graph, plan, x, index.get(id(plan), -1), t_inf)

            ctx = EmitContext(
                graph=graph,
                node=node,
                plan=plans[0],
                plans=plans,
                analog=analog,
                initializer=lambda suffix, array, plan=plans[0]: _initializer(graph, f"{plan.name}.{suffix}", array),
            )
            lowering = self.lowerings.get(node)
            if lowering is None:
                raise UnsupportedModelError(
                    f"node {node.name or node.op_type!r} ({node.domain or 'ai.onnx'}::{node.op_type}) is planned as "
                    "analog but has no lowering in this registry; plan and rewrite with the same registry."
                )
            new_nodes, outs = lowering.emit(ctx)
            if home is not graph:  # AnalogChipWeights reads initializers and t_inference only: main graph
                lifted += [n for n in new_nodes if n.domain == contract.DOMAIN and n.op_type == contract.CHIP_WEIGHTS]
                new_nodes = [n for n in new_nodes if n not in lifted]
            outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
            pairs = [(old, new) for old, new in zip(node.outputs, outs, strict=False) if new is not None]
            for old_out, out in pairs:
                out.shape, out.type = old_out.shape, old_out.type
            old_inputs = [v for v in node.inputs if v is not None]
            ir.convenience.replace_nodes_and_values(
                home, node, [node], new_nodes, [p[0] for p in pairs], [p[1] for p in pairs]
            )
            node.meta.pop(LAYER_KEY, None)
            for value in old_inputs:  # the source weight (and bias) now live in the analog initializers
                for owner in {id(graph): graph, id(home): home}.values():  # main graph, or the subgraph's own
                    if owner.initializers.get(value.name) is value and not value.uses() and not value.is_graph_input():
                        del owner.initializers[value.name]
        if lifted:
            first = next(iter(graph))
            graph.insert_before(first, lifted)
        return ir.passes.PassResult(model, modified=True)

    def _analog_nodes(
        self, graph: ir.Graph, plan: LayerPlan, x: ir.Value, index: int, t_inf: ir.Value
    ) -> tuple[list[ir.Node], ir.Value]:
        """The layer's analog nodes for input ``x``, adapted to it: the analog ops compute in float32 on
        inputs of rank >= 2, so other float types are cast in and out and a 1-D input gets a batch axis."""
        dtype = x.type.dtype if x.type is not None else (plan.io_dtype or ir.DataType.FLOAT)
        rank = len(x.shape) if x.shape is not None else None
        pre, post = [], []
        if dtype != ir.DataType.FLOAT:
            pre.append(ir.node("Cast", [x], attributes={"to": ir.DataType.FLOAT}))
            x = pre[-1].outputs[0]
        if rank == 1:
            axes = _initializer(graph, f"{plan.name}.batch_axis", np.array([0], np.int64))
            pre.append(ir.node("Unsqueeze", [x, axes]))
            x = pre[-1].outputs[0]
        nodes, y = self._analog_core(graph, plan, x, index, t_inf)
        if rank == 1:
            post.append(ir.node("Squeeze", [y, graph.initializers[f"{plan.name}.batch_axis"]]))
            y = post[-1].outputs[0]
        if dtype != ir.DataType.FLOAT:
            post.append(ir.node("Cast", [y], attributes={"to": dtype}))
            y = post[-1].outputs[0]
        return pre + nodes + post, y

    def _analog_core(
        self, graph: ir.Graph, plan: LayerPlan, x: ir.Value, index: int, t_inf: ir.Value
    ) -> tuple[list[ir.Node], ir.Value]:
        if is_use(plan):  # a shared weight's later use: its own AnalogMatMul on the owner's programmed tiles
            owner = plan.tiles_of
            w_eff, scale, in_scale, ir_weight, gain = self._chips[owner.name]
            bias = plan.bias if plan.bias is not None else np.zeros(owner.n_out)
            mm_node = ir.node(
                contract.ANALOG_MATMUL,
                [
                    x,
                    w_eff,
                    in_scale,
                    scale,
                    _initializer(graph, f"{plan.name}.{contract.BIAS}", bias.astype(np.float32)),
                    ir_weight,
                    *_gain_inputs(gain),
                ],
                attributes=analog_matmul_attributes(
                    self.periphery, seed=_node_seed(self.seed, self.chip, (1 << 20) + self._n_uses)
                ),
                domain=contract.DOMAIN,
                name=plan.name,
                overload=TILED if owner.n_tiles > 1 else "",
            )
            self._n_uses += 1
            return [mm_node], mm_node.outputs[0]
        L = plan.name
        tiled = plan.n_tiles > 1
        mapping = plan_mapping(plan, self.mapping)
        gain = mapping.gain_us(self.device.g_min_us, self.device.g_max_us)

        def init(suffix: str, array: np.ndarray | ir.ExternalTensor) -> ir.Value:
            # one-tile layers are stored without the tile axis (axis -3): AnalogMatMul's plain body
            if isinstance(array, ir.ExternalTensor):  # streamed to the data file: a view, not a load
                if not tiled and len(array.shape) >= 3:
                    array = squeezed(array, -3, f"{L}.{suffix}")
                return _initializer(graph, f"{L}.{suffix}", array)
            array = np.asarray(array)
            if not tiled and array.ndim >= 3:
                array = np.squeeze(array, axis=-3)
            return _initializer(graph, f"{L}.{suffix}", array)

        init(contract.G_TARGET, plan.g_target)
        init(contract.COL_SCALE, plan.col_scale)
        init(contract.IN_RANGE, _in_range(plan))
        out_gain = None
        if self.periphery.output_range is OutputRange.CALIBRATED:  # per-tile gains before the ADC
            out_gain = init(contract.OUT_GAIN, np.asarray(plan.out_gain, np.float32).reshape(plan.n_tiles, 1, 1))
        in_scale, out_scale = layer_scales(
            plan.col_scale, _in_range(plan), self.periphery, None if out_gain is None else plan.out_gain
        )
        if self.chip_state != contract.CHIP_STATE_FULL:  # no chip in the file: the session feeds its state
            chip_nodes, (w_eff, scale) = [], _chip_state_inputs(graph, plan, out_scale, init)
        else:
            chip_nodes, (w_eff, scale) = self._chip_node(plan, mapping, gain, index, t_inf, out_scale, init)
        bias = plan.bias if plan.bias is not None else np.zeros(plan.n_out)
        mm_node = ir.node(
            contract.ANALOG_MATMUL,
            [
                x,
                w_eff,
                init(contract.IN_SCALE, in_scale),
                scale,
                init(contract.BIAS, bias.astype(np.float32)),
                init(contract.IR_WEIGHT, ir_row_weights(self.periphery.tile_rows)[: plan.tile_rows]),
                *_gain_inputs(out_gain),
            ],
            attributes=analog_matmul_attributes(self.periphery, seed=_node_seed(self.seed, self.chip, 2 * index + 1)),
            domain=contract.DOMAIN,
            name=L,
            overload=TILED if tiled else "",
        )
        self._chips[L] = (w_eff, scale, mm_node.inputs[2], mm_node.inputs[5], out_gain)
        return [*chip_nodes, mm_node], mm_node.outputs[0]

    def _chip_node(self, plan, mapping, gain, index, t_inf, out_scale, init) -> tuple[list[ir.Node], tuple]:
        """The layer's in-graph chip stage: (L.w_eff, L.scale) = AnalogChipWeights(L.g_prog, L.nu, ...)."""
        L = plan.name
        chip_node = ir.node(
            contract.CHIP_WEIGHTS,
            [
                init(contract.G_PROG, plan.g_prog),
                init(contract.NU, plan.nu),
                t_inf,
                init(contract.GDC_REF, plan.gdc_ref),
                init(contract.OUT_SCALE, out_scale),
            ],
            attributes=chip_weights_attributes(
                self.device,
                mapping.significance,
                gain,
                seed=_node_seed(self.seed, self.chip, 2 * index),
                code_gain=tile_constants(self.periphery).code_gain,
            ),
            domain=contract.DOMAIN,
            num_outputs=2,
            name=f"{L}.chip",
        )
        w_eff, scale = chip_node.outputs
        w_eff.name, scale.name = f"{L}.{contract.W_EFF}", f"{L}.{contract.SCALE}"
        return [chip_node], (w_eff, scale)


def _chip_state_inputs(graph: ir.Graph, plan: LayerPlan, out_scale, init) -> tuple[ir.Value, ir.Value]:
    """A file without a chip: ``L.w_eff`` and ``L.scale`` as float32 graph inputs of the layer's shapes
    (``L.out_scale`` stays an initializer: the session derives the scales from it)."""
    init(contract.OUT_SCALE, out_scale)
    spec = contract.LayerSpec.from_plan_shape(plan.name, 0, _plan_shape(plan))
    values = []
    for suffix, shape in ((contract.W_EFF, spec.weight_shape), (contract.SCALE, spec.scale_shape)):
        value = ir.Value(
            name=f"{plan.name}.{suffix}", shape=ir.Shape(list(shape)), type=ir.TensorType(ir.DataType.FLOAT)
        )
        graph.inputs.append(value)
        values.append(value)
    return values[0], values[1]


def _plan_shape(plan: LayerPlan) -> list[int]:
    """The stored plan's shape: (P, 2, [n_tiles,] rows, N), the tile axis only for a tiled layer."""
    shape = list(plan.g_target.shape)
    if plan.n_tiles <= 1 and len(shape) >= 5:
        del shape[-3]
    return shape


def _gain_inputs(gain: ir.Value | None) -> list[ir.Value | None]:
    """AnalogMatMul's inputs after ``ir_row_weight``: none, or (three empty noise inputs, ``L.out_gain``)."""
    if gain is None:
        return []
    return [None] * (contract.OUT_GAIN_INPUT - 6) + [gain]


def _in_range(plan) -> np.ndarray:
    if plan.in_range is not None:
        return plan.in_range
    return np.ones((plan.n_tiles, 1, 1), np.float32)


def _node_seed(seed: int, chip: int, index: int) -> float:
    """A float seed for a node's in-graph random op, distinct per node and chip, exact in float32."""
    ss = np.random.SeedSequence(int(seed), spawn_key=(int(chip), 99, int(index)))
    return float(int(ss.generate_state(1)[0]) % (1 << 24))
