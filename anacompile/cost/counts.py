"""Operation counts of one inference of a compiled model: per layer, from its report and its graph's shapes.

The number of input vectors of each analog layer comes from ONNX shape inference on the compiled model with
the batch dimension set to 1 and every other symbolic dimension set to ``dims`` (e.g. the sequence length
of a transformer, default 128): vectors = prod(shape of X[:-1]). A layer inside a recurrence's Loop body
counts per time step, times the Loop's trip count (its sequence length). Activation x activation MatMuls
(attention) are counted as digital MACs of the graph.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import onnx
from onnx import shape_inference

from anacompile import ops
from anacompile.compiler import CompileReport, read_report
from anacompile.model_io import load_proto

__all__ = ["LayerCounts", "ModelCounts", "count_operations"]

BATCH_NAMES = ("batch", "batch_size", "b", "n", "n_batch")


@dataclass
class LayerCounts:
    """What one inference asks of one layer (counts, not costs).

    Attributes:
        name: layer (node) name.
        op: source op type.
        analog: on tiles (True) or digital.
        weight_shape: (K, N).
        tiles: physical tiles the layer occupies (row tiles x column tiles x tiles per pair group).
        vectors: input vectors per time step (per inference for a feed-forward layer).
        steps: time steps per inference (1 for feed-forward; the sequence length in a recurrence).
        mvms: tile MVMs per inference (vectors x steps x tiles).
        dac_conversions: DAC conversions per inference (each tile row, each input cycle).
        adc_conversions: ADC conversions per inference (each tile column, each input cycle).
        partial_sums: digital additions of tiles' partial outputs.
        scales: digital multiplications by per-column scales (drift compensation folded in).
        bias_adds: digital bias additions.
        input_scaling: digital operations of per-vector input ranges (abs-max: max and multiply).
        compensation: extra digital operations per inference for drift compensation (0: folded into the
            scale, which is recomputed once per (chip, time), not per inference).
        digital_macs: MACs done digitally (a digital layer's, or an activation x activation MatMul's).
        notes: assumptions (e.g. an unknown shape).
    """

    name: str
    op: str
    analog: bool
    weight_shape: list[int]
    tiles: int = 0
    vectors: int = 1
    steps: int = 1
    mvms: int = 0
    dac_conversions: int = 0
    adc_conversions: int = 0
    partial_sums: int = 0
    scales: int = 0
    bias_adds: int = 0
    input_scaling: int = 0
    compensation: int = 0
    digital_macs: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def digital_ops(self) -> int:
        """Digital additions and multiplications besides MACs."""
        return self.partial_sums + self.scales + self.bias_adds + self.input_scaling + self.compensation

    @property
    def macs(self) -> int:
        """MACs of the layer's weights per inference (analog or digital): K x N x vectors x steps."""
        k, n = (self.weight_shape + [0, 0])[:2]
        return k * n * self.vectors * self.steps

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values, derived counts included."""
        return asdict(self) | {"digital_ops": self.digital_ops, "macs": self.macs}


@dataclass
class ModelCounts:
    """Counts of every layer of one compiled model, per inference."""

    model: str
    tile_rows: int
    tile_cols: int
    pairs: int
    layers: list[LayerCounts]
    dims: dict[str, int]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return asdict(self) | {"layers": [layer.to_dict() for layer in self.layers]}


def _shape(v: onnx.ValueInfoProto) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]


def _fix_inputs(model: onnx.ModelProto, dims: dict[str, int], default_dim: int) -> None:
    for value in model.graph.input:
        for d in value.type.tensor_type.shape.dim:
            if d.HasField("dim_value"):
                continue
            name = d.dim_param
            d.Clear()
            if name in dims:
                d.dim_value = dims[name]
            elif name.lower() in BATCH_NAMES or not name:
                d.dim_value = 1
            else:
                d.dim_value = default_dim


def count_operations(
    path: str | os.PathLike[str],
    pairs_per_cell: int = 1,
    input_cycles: int = 1,
    dims: dict[str, int] | None = None,
    default_dim: int = 128,
) -> ModelCounts:
    """Count the operations of one inference (batch 1) of the compiled model at ``path``.

    Args:
        path: a compiled model (``anacompile compile`` output).
        pairs_per_cell: differential pairs one unit cell holds (``ceil(P / pairs_per_cell)`` tiles per tile
            position for P pairs per weight).
        input_cycles: input cycles per vector (bit-serial inputs convert once per bit).
        dims: symbolic input dimensions (other than the batch) -> size.
        default_dim: size of a symbolic dimension not in ``dims`` (e.g. a sequence length).

    Returns:
        Per-layer counts, in the report's layer order, plus one ``(graph)`` entry for digital
        activation x activation MatMuls when there are any.
    """
    proto = load_proto(path)
    report: CompileReport = read_report(proto)
    dims = dict(dims or {})
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    for init in model.graph.initializer:  # shapes only: drop the weights' bytes
        if init.data_location == onnx.TensorProto.EXTERNAL:
            del init.external_data[:]
            init.data_location = onnx.TensorProto.DEFAULT
    _fix_inputs(model, dims, default_dim)
    notes: list[str] = []
    try:
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    except Exception as err:  # onnx raises several types; counting goes on with what is known
        notes.append(f"shape inference failed ({type(err).__name__}); unknown shapes count as 1 vector")
        inferred = model
    shapes: dict[str, list[int | None]] = {}
    for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        shapes[v.name] = _shape(v)
    producers = {o: n for n in inferred.graph.node for o in n.output}
    initializers = {i.name for i in inferred.graph.initializer}

    def trip_count(loop: onnx.NodeProto) -> int | None:
        trip = loop.input[0] if loop.input else ""
        node = producers.get(trip)
        if node is not None and node.op_type == "Gather":  # Gather(Shape(X), c): X's dim c
            src, idx = producers.get(node.input[0]), producers.get(node.input[1])
            index = _const_int(idx, inferred, node.input[1])
            if src is not None and src.op_type == "Shape" and index is not None:
                dim = shapes.get(src.input[0], [])
                if 0 <= index < len(dim) and dim[index]:
                    return int(dim[index])  # type: ignore[arg-type]
        return _const_int(node, inferred, trip)

    vectors: dict[str, tuple[int, int, str]] = {}  # layer -> (vectors per step, steps, note)

    def walk(graph: onnx.GraphProto, steps: int, note: str) -> None:
        for v in graph.value_info:
            shapes.setdefault(v.name, _shape(v))
        for node in graph.node:
            if node.domain == ops.DOMAIN and node.op_type == ops.ANALOG_MATMUL:
                shape = shapes.get(node.input[0])
                if shape:
                    lead = shape[:-1]
                    extra = "" if all(lead) else f"unknown dims of input {list(lead)} taken as 1 (batch)"
                    n_vec = math.prod(int(d) if d else 1 for d in lead)
                    vectors[node.name] = (n_vec, steps, "; ".join(x for x in (note, extra) if x))
                else:
                    vectors[node.name] = (1, steps, (note + "; " if note else "") + "input shape unknown: 1 vector")
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    n_steps = trip_count(node) if node.op_type == "Loop" else 1
                    sub_note = note
                    if n_steps is None:
                        n_steps, sub_note = 1, "loop trip count unknown: 1 step"
                    walk(attr.g, steps * n_steps, sub_note)

    walk(inferred.graph, 1, "")
    for node in inferred.graph.node:  # layers kept digital stay ops of the source kind
        if node.name in vectors or node.op_type not in ("MatMul", "Gemm", "Conv"):
            continue
        ref = node.output[0] if node.op_type == "Conv" else node.input[0]
        shape = shapes.get(ref)
        if shape:
            lead = shape[2:] if node.op_type == "Conv" else shape[:-1]
            vectors[node.name] = (math.prod(int(d) if d else 1 for d in lead), 1, "")
    peri = report.periphery
    rows, cols = int(peri.get("tile_rows", 512)), int(peri.get("tile_cols", 512))
    pairs = _pairs(report.strategy)
    absmax = peri.get("input_range") == "absmax"
    layers: list[LayerCounts] = []
    for lay in report.layers:
        k, n = (list(lay.weight_shape) + [0, 0])[:2]
        lc = LayerCounts(lay.name, lay.op, lay.analog, [k, n])
        per_pos = -(-_pairs(lay.strategy or report.strategy) // max(1, pairs_per_cell))
        v, steps, note = vectors.get(lay.name, (1, 1, "not found in the graph: 1 vector"))
        for use in set(getattr(lay, "uses", [])) - {lay.name}:  # tiles shared by several ops: every use runs MVMs
            v += vectors.get(use, (1, 1, ""))[0]
        lc.vectors, lc.steps = v, steps
        if note:
            lc.notes.append(note)
        calls = v * steps
        if lay.analog:
            rt, ct = (list(lay.tiles) + [1, 1])[:2]
            lc.tiles = rt * ct * per_pos
            lc.mvms = calls * lc.tiles
            lc.dac_conversions = calls * k * ct * per_pos * input_cycles
            lc.adc_conversions = calls * n * rt * per_pos * input_cycles
            lc.partial_sums = calls * n * (rt * per_pos - 1)
            lc.scales = calls * n * rt * per_pos
            lc.bias_adds = calls * n
            lc.input_scaling = calls * 2 * k * ct if absmax else 0
        else:
            lc.digital_macs = calls * k * n
            lc.bias_adds = calls * n
        layers.append(lc)
    graph_macs = 0
    for node in inferred.graph.node:
        if node.op_type == "MatMul" and not any(i in initializers for i in node.input):
            a, y = shapes.get(node.input[0]), shapes.get(node.output[0])
            if a and y and a[-1]:
                graph_macs += math.prod(int(d) if d else 1 for d in y) * int(a[-1])
    if graph_macs:
        g = LayerCounts("(graph)", "MatMul", False, [0, 0], digital_macs=graph_macs)
        g.notes.append("activation x activation MatMuls (e.g. attention), digital")
        layers.append(g)
    used = {d.dim_param for v in proto.graph.input for d in v.type.tensor_type.shape.dim if d.dim_param}
    resolved = {name: dims.get(name, 1 if name.lower() in BATCH_NAMES else default_dim) for name in sorted(used)}
    return ModelCounts(str(path), rows, cols, pairs, layers, resolved, notes)


def _pairs(strategy: dict[str, Any]) -> int:
    """Differential pairs per weight of a report's strategy dict."""
    from anacompile.mapping.registry import mapping_from_dict

    try:
        return max(1, len(mapping_from_dict(strategy).significance))
    except Exception:  # an unreadable strategy dict: count one pair and say so in the model notes
        return 1


def _const_int(node: onnx.NodeProto | None, model: onnx.ModelProto, name: str) -> int | None:
    """The integer value of a Constant node or an initializer named ``name`` (scalar or 1-element)."""
    from onnx import numpy_helper

    tensor = None
    if node is not None and node.op_type == "Constant":
        for a in node.attribute:
            if a.name == "value":
                tensor = a.t
    else:
        tensor = next((i for i in model.graph.initializer if i.name == name), None)
    if tensor is None:
        return None
    arr = numpy_helper.to_array(tensor).ravel()
    return int(arr[0]) if arr.size == 1 else None
