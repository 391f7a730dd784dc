"""Per-layer analysis state carried in ``node.meta`` between the compiler passes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np
import onnx_ir as ir
from numpy.typing import NDArray

from anacompile.errors import ConfigError

__all__ = [
    "DIGITAL_KEY",
    "LAYER_KEY",
    "NAME_KEY",
    "CalibrationSample",
    "ChipState",
    "Conductances",
    "DigitalBias",
    "InputRanges",
    "LayerOp",
    "LayerPlan",
    "LayerStrategy",
    "NoCalibrationData",
    "OutputGains",
    "StageRecord",
    "Tiling",
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
NAME_KEY = "anacompile.layer_name"
"""``node.meta`` key of a subgraph op's unique layer name (names in different branches may clash), kept for its
report row when it stays digital (a top-level digital row keeps the node's own name)."""


# -- what the planner (MarkAnalogOpsPass) knows of the source op ------------------------------------------


class LayerOp:
    """Op-specific data of a layer whose tiles read a transform of the op's input (Conv, LSTM/GRU/RNN).

    Subclasses (:class:`~anacompile.passes.conv.ConvLayer`, :class:`~anacompile.passes.recurrent.RecurrentLayer`)
    are written by their op's planner and read by their op's emitter. A MatMul/Gemm layer has none.
    """

    row_group: int = 1
    """Rows that belong together (a conv's input channel): :class:`PartitionWeightsPass` puts tile boundaries
    between groups where that costs no extra tile."""

    def tile_input(self, x: np.ndarray) -> np.ndarray:
        """The tiles' input matrix (..., K) for the op's input ``x`` (calibration): ``x`` itself by default."""
        return x


@dataclass(frozen=True)
class DigitalBias:
    """A bias computed at run time (not a constant), added digitally after the analog op as ``scale * value``
    (Gemm: ``beta * C``; Conv: B, scale 1)."""

    value: ir.Value
    scale: float = 1.0


# -- stage records: one per pass after the planner ----------------------------------------------------------


class StageRecord:
    """What one compiler pass records about a layer, written once (:meth:`LayerPlan.write`).

    ``written_by`` names the pass (or the alternative passes) that writes it; ``requires`` the records the
    plan must already hold, so a pass run before its predecessor stops with a message naming that pass.
    """

    written_by: ClassVar[str]
    requires: ClassVar[tuple[type[StageRecord], ...]] = ()


@dataclass(frozen=True)
class LayerStrategy(StageRecord):
    """The layer's own programming strategy (``--layer-strategy``) and the option text that chose it."""

    written_by: ClassVar[str] = "ApplyPlacementPass"
    mapping: Any
    spec: Any = None


@dataclass(frozen=True)
class Tiling(StageRecord):
    """Row tiles, rows stored per tile (K for a one-tile layer) and column tiles (for the report)."""

    written_by: ClassVar[str] = "PartitionWeightsPass"
    n_tiles: int
    tile_rows: int
    n_col_tiles: int


@dataclass(frozen=True)
class InputRanges(StageRecord):
    """Static DAC input range per row tile, (n_tiles, 1, 1) float32."""

    written_by: ClassVar[str] = "SetInputRangesPass or CalibrateInputRangesPass"
    requires: ClassVar[tuple[type[StageRecord], ...]] = (Tiling,)
    in_range: NDArray[np.float32]


@dataclass(frozen=True)
class CalibrationSample(StageRecord):
    """The layer's kept calibration tile inputs, (n_tiles, vectors, tile_rows), for the output ranges."""

    written_by: ClassVar[str] = "CalibrateInputRangesPass"
    requires: ClassVar[tuple[type[StageRecord], ...]] = (Tiling,)
    tile_inputs: NDArray[np.float32]


@dataclass(frozen=True)
class NoCalibrationData(StageRecord):
    """The layer's tiles saw no calibration vector (an If branch the data never takes): its input range stays
    1.0 and its output gain 1 (the fixed ADC bound); the report notes it."""

    written_by: ClassVar[str] = "CalibrateInputRangesPass"
    requires: ClassVar[tuple[type[StageRecord], ...]] = (Tiling,)


@dataclass(frozen=True)
class Conductances(StageRecord):
    """Column scales gamma (n_tiles, 1, N) and target conductances (P, 2, n_tiles, rows, N)."""

    written_by: ClassVar[str] = "MapConductancesPass"
    requires: ClassVar[tuple[type[StageRecord], ...]] = (Tiling,)
    col_scale: NDArray[np.float32]
    g_target: Any  # NDArray[np.float32] or a memory-mapped ir.ExternalTensor


@dataclass(frozen=True)
class OutputGains(StageRecord):
    """Calibrated output gain per row tile before the ADC, (n_tiles,) (``output_range: calibrated``)."""

    written_by: ClassVar[str] = "CalibrateOutputRangesPass"
    requires: ClassVar[tuple[type[StageRecord], ...]] = (Conductances, CalibrationSample)
    gains: NDArray[np.float32]


@dataclass(frozen=True)
class ChipState(StageRecord):
    """The programmed chip: conductances, drift exponents and the GDC reference read."""

    written_by: ClassVar[str] = "ProgramChipPass"
    requires: ClassVar[tuple[type[StageRecord], ...]] = (Conductances,)
    g_prog: Any  # NDArray[np.float32] or a memory-mapped ir.ExternalTensor
    nu: Any
    gdc_ref: NDArray[np.float32] | None


R = TypeVar("R", bound=StageRecord)


@dataclass
class LayerPlan:
    """Everything the compiler knows about one analog layer y = x W + b, W of shape (K, N).

    The planner of the layer's op (:class:`~anacompile.passes.mark_analog_ops.MarkAnalogOpsPass`) fills the
    fields; every later pass adds its own :class:`StageRecord` (:meth:`write`): :class:`LayerStrategy`
    (ApplyPlacement), :class:`Tiling` (PartitionWeights), :class:`InputRanges` (Set/CalibrateInputRanges),
    :class:`CalibrationSample` and :class:`NoCalibrationData` (CalibrateInputRanges), :class:`Conductances`
    (MapConductances),
    :class:`OutputGains` (CalibrateOutputRanges), :class:`ChipState` (ProgramChip). The properties
    ``n_tiles``, ``in_range``, ``g_target``, ... read those records (0 or None before the pass ran).

    Memory: ``weight`` may be a view of the source tensor (float32, or memory-mapped external data); it is
    dropped once the layer is mapped (:meth:`release_weight`, the shape is kept). ``g_target``, ``g_prog``
    and ``nu`` are arrays, or memory-mapped tensors of the output's data file when the compiler streams a
    large model (:mod:`anacompile.passes._tensor_store`).

    Attributes:
        op: op-specific data (:class:`LayerOp`: conv geometry, recurrent gate layout), None for MatMul/Gemm.
        digital_bias: a bias computed at run time, added after the analog op.
        io_dtype: the source op's compute type (its weight's dtype), where the input's type is unknown.
        graph: the graph the layer's op lives in: ``""`` for the main graph, else the path of subgraphs from
            it, e.g. ``If_0.then_branch/decoder_If.else_branch`` (node name, ``.``, attribute name).
        tiles_of: a *use* of a shared weight: the owner plan whose programmed tiles it reads
            (:func:`is_use`). A stored tensor read by several ops (an unrolled recurrence, tied weights) is
            programmed once: the first op in graph order owns the plan (partitioned, calibrated over every
            use's inputs, mapped, programmed), the others get a use plan that carries only their own input
            and bias and reads the owner's chip stage.
        uses: on an owner, the names of every op reading its tiles (itself first); empty if not shared.
    """

    name: str
    source_op: str
    weight: NDArray[np.floating] | None
    bias: NDArray[np.float64] | None
    input: ir.Value
    op: LayerOp | None = None
    digital_bias: DigitalBias | None = None
    io_dtype: ir.DataType | None = None
    graph: str = ""
    tiles_of: LayerPlan | None = None
    uses: list[str] = field(default_factory=list)
    weight_shape: tuple[int, int] | None = None  # kept when the weight is released
    records: dict[type[StageRecord], StageRecord] = field(default_factory=dict, repr=False)

    # -- stage records ---------------------------------------------------------------------------------

    def check_ready(self, kind: type[StageRecord]) -> None:
        """Raise a :class:`ConfigError` naming the pass to run first if a record ``kind`` requires is missing."""
        for needed in kind.requires:
            if needed not in self.records:
                raise ConfigError(
                    f"layer {self.name!r}: {kind.written_by} needs the {needed.__name__} record of "
                    f"{needed.written_by}; run {needed.written_by} first."
                )

    def write(self, record: StageRecord) -> None:
        """Add the record of a pass; its predecessors' records must be there, and it is written once."""
        kind = type(record)
        self.check_ready(kind)
        if kind in self.records:
            raise ValueError(f"layer {self.name!r}: {kind.__name__} is already recorded")
        self.records[kind] = record

    def get(self, kind: type[R]) -> R | None:
        """The record of type ``kind``, or None if its pass has not run (on this layer)."""
        record = self.records.get(kind)
        return record if isinstance(record, kind) else None

    def take(self, kind: type[R]) -> R | None:
        """Remove and return the record of type ``kind`` (a working record consumed by the next pass)."""
        record = self.records.pop(kind, None)
        return record if isinstance(record, kind) else None

    @property
    def n_tiles(self) -> int:
        """Row tiles (0 before PartitionWeightsPass)."""
        t = self.get(Tiling)
        return 0 if t is None else t.n_tiles

    @property
    def tile_rows(self) -> int:
        """Rows stored per tile (0 before PartitionWeightsPass)."""
        t = self.get(Tiling)
        return 0 if t is None else t.tile_rows

    @property
    def n_col_tiles(self) -> int:
        """Column tiles (0 before PartitionWeightsPass)."""
        t = self.get(Tiling)
        return 0 if t is None else t.n_col_tiles

    @property
    def in_range(self) -> NDArray[np.float32] | None:
        """Static input range per row tile (None before the input ranges are set)."""
        r = self.get(InputRanges)
        return None if r is None else r.in_range

    @property
    def col_scale(self) -> NDArray[np.float32] | None:
        """Column scales gamma (None before MapConductancesPass)."""
        c = self.get(Conductances)
        return None if c is None else c.col_scale

    @property
    def g_target(self) -> Any:
        """Target conductances (None before MapConductancesPass)."""
        c = self.get(Conductances)
        return None if c is None else c.g_target

    @property
    def out_gain(self) -> NDArray[np.float32] | None:
        """Calibrated output gains per row tile (None unless CalibrateOutputRangesPass set them)."""
        g = self.get(OutputGains)
        return None if g is None else g.gains

    @property
    def g_prog(self) -> Any:
        """Programmed conductances (None before ProgramChipPass)."""
        c = self.get(ChipState)
        return None if c is None else c.g_prog

    @property
    def nu(self) -> Any:
        """Drift exponents (None before ProgramChipPass)."""
        c = self.get(ChipState)
        return None if c is None else c.nu

    @property
    def gdc_ref(self) -> NDArray[np.float32] | None:
        """The GDC reference read (None before ProgramChipPass, or without drift compensation)."""
        c = self.get(ChipState)
        return None if c is None else c.gdc_ref

    @property
    def strategy(self) -> LayerStrategy | None:
        """The layer's own programming strategy, or None (the model's)."""
        return self.get(LayerStrategy)

    # -- the weight ------------------------------------------------------------------------------------

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
    """The graph and every subgraph at any depth, each with its path (``LayerPlan.graph``): a graph comes
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
    return plan.tiles_of is not None


def plan_mapping(plan: LayerPlan, default):
    """The layer's own programming strategy (``--layer-strategy``), else the model's ``default``."""
    own = plan.get(LayerStrategy)
    return own.mapping if own is not None else default
