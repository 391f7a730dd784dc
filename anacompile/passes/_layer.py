"""Per-layer analysis state carried in ``node.meta`` between the compiler passes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir
from numpy.typing import NDArray

__all__ = [
    "DIGITAL_KEY",
    "GRAPH_KEY",
    "LAYER_KEY",
    "OUT_GAIN_KEY",
    "SHARED_KEY",
    "LayerPlan",
    "analog_layers",
    "is_use",
    "node_plans",
    "plan_mapping",
    "subgraphs",
    "walk_graphs",
    "walk_nodes",
]

LAYER_KEY = "anacompile.layer"
DIGITAL_KEY = "anacompile.digital_reason"
GRAPH_KEY = "graph"
"""``LayerPlan.extra`` key of the graph the layer's op lives in: ``""`` for the main graph, else the path of
subgraphs from it, e.g. ``If_0.then_branch/decoder_If.else_branch`` (node name, ``.``, attribute name)."""
OUT_GAIN_KEY = "out_gain"
"""``LayerPlan.extra`` key of the layer's calibrated output gains per row tile, (n_tiles,) (output_range:
calibrated; :class:`~anacompile.passes.calibrate_input_ranges.CalibrateOutputRangesPass`)."""
SHARED_KEY = "tiles_of"
"""``LayerPlan.extra`` key of a *use* of another layer's tiles: the plan whose programmed weight it reads.

A stored tensor read by several ops (an unrolled recurrence, tied weights) is programmed once: the first op
in graph order owns the plan (partitioned, calibrated over every use's inputs, mapped, programmed), the
others get a use plan that carries only their own input and bias and reads the owner's chip stage."""


@dataclass
class LayerPlan:
    """Everything the compiler knows about one analog layer y = x W + b, W of shape (K, N).

    Filled step by step: MarkAnalogOps (weight, bias, input), PartitionWeights (tiles),
    CalibrateInputRanges (in_range), MapConductances (col_scale, g_target), ProgramChip (g_prog, nu,
    gdc_ref).

    Memory: ``weight`` may be a view of the source tensor (float32, or memory-mapped external data); it is
    dropped once the layer is mapped (:meth:`release_weight`, the shape is kept). ``g_target``, ``g_prog``
    and ``nu`` are arrays, or memory-mapped tensors of the output's data file when the compiler streams a
    large model (:mod:`anacompile.passes._tensor_store`).
    """

    name: str
    source_op: str
    weight: NDArray[np.floating] | None
    bias: NDArray[np.float64] | None
    input: ir.Value
    extra: dict[str, Any] = field(default_factory=dict)
    n_tiles: int = 0
    tile_rows: int = 0
    n_col_tiles: int = 0
    in_range: NDArray[np.float32] | None = None
    col_scale: NDArray[np.float32] | None = None
    g_target: Any = None  # NDArray[np.float32] or a memory-mapped ir.ExternalTensor
    g_prog: Any = None
    nu: Any = None
    gdc_ref: NDArray[np.float32] | None = None
    weight_shape: tuple[int, int] | None = None  # kept when the weight is released

    @property
    def k(self) -> int:
        """Number of inputs (rows of W)."""
        return int((self.weight.shape if self.weight is not None else self.weight_shape)[0])

    @property
    def n_out(self) -> int:
        """Number of outputs (columns of W)."""
        return int((self.weight.shape if self.weight is not None else self.weight_shape)[1])

    def tiled_weight(self) -> NDArray[np.float64]:
        """W (float64) zero-padded to n_tiles * tile_rows rows and split into (n_tiles, tile_rows, N)."""
        if self.weight is None:
            raise ValueError(f"layer {self.name!r}: the weight was released after mapping")
        pad = self.n_tiles * self.tile_rows - self.k
        w = np.pad(np.asarray(self.weight, np.float64), ((0, pad), (0, 0)))
        return w.reshape(self.n_tiles, self.tile_rows, self.n_out)

    def release_weight(self) -> None:
        """Drop the source weight once mapped (its target conductances replace it); keep its shape."""
        if self.weight is not None:
            self.weight_shape = (int(self.weight.shape[0]), int(self.weight.shape[1]))
            self.weight = None


def subgraphs(node: ir.Node) -> list[tuple[str, ir.Graph]]:
    """The subgraphs a node holds (an If's two branches, a Loop's or Scan's body), with their attribute names."""
    out = []
    for name, attr in node.attributes.items():
        if attr.type == ir.AttributeType.GRAPH:
            out.append((name, attr.value))
        elif attr.type == ir.AttributeType.GRAPHS:
            out += [(f"{name}{i}", g) for i, g in enumerate(attr.value)]
    return out


def walk_graphs(graph: ir.Graph, path: str = ""):
    """The graph and every subgraph at any depth, each with its path (:data:`GRAPH_KEY`): a graph comes
    before the subgraphs of its nodes, so the main graph's nodes are seen first."""
    yield graph, path
    for node in list(graph):
        for attr_name, sub in subgraphs(node):
            step = f"{node.name or node.op_type}.{attr_name}"
            yield from walk_graphs(sub, f"{path}/{step}" if path else step)


def walk_nodes(graph: ir.Graph):
    """Every node of the graph and its subgraphs as (node, graph path), each graph's nodes in order."""
    for g, path in walk_graphs(graph):
        for node in list(g):
            yield node, path


def node_plans(node: ir.Node) -> list[LayerPlan]:
    """The analog layers planned for one source node: one for MatMul/Gemm, several for a recurrent op
    (one per direction, two per direction for GRU with linear_before_reset=0); none if it stays digital."""
    plans = node.meta.get(LAYER_KEY)
    if plans is None:
        return []
    return list(plans) if isinstance(plans, (list, tuple)) else [plans]


def analog_layers(model: ir.Model) -> list[tuple[ir.Node, LayerPlan]]:
    """Every analog layer as (source node, plan): the main graph's in graph order, then those of If branches
    and Loop/Scan bodies at any depth (:func:`walk_nodes`), then plan order; the uses of a shared weight's
    tiles (:func:`is_use`) are not layers of their own and are left out."""
    return [(n, plan) for n, _ in walk_nodes(model.graph) for plan in node_plans(n) if not is_use(plan)]


def is_use(plan: LayerPlan) -> bool:
    """Whether ``plan`` reads another layer's programmed tiles (a shared weight's second or later use)."""
    return SHARED_KEY in plan.extra


def plan_mapping(plan: LayerPlan, default):
    """The layer's own programming strategy (``--layer-strategy``), else the model's ``default``."""
    return plan.extra.get("mapping") or default
