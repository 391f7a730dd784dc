"""The compile report as passes: count MACs, record the per-layer report, write it into the model's metadata.

Three passes of :func:`anacompile.passes.default_pipeline` (and of ``compile_model``, which runs the same
pipeline), so that a pipeline of other passes around the compiler's gets the same report in its model:

* :class:`CountMacsPass` (first, on the source graph): multiply-accumulates per weight-bearing op
  (:mod:`anacompile.passes.count_macs`), kept in ``model.meta``;
* :class:`RecordLayerReportsPass` (after the analysis passes, while the plans are in ``node.meta``): one
  :class:`~anacompile.contract.LayerReport` per weight-bearing op; refuses a model with no analog layer;
* :class:`WriteCompileReportPass` (last): the :class:`~anacompile.contract.CompileReport` as JSON in
  ``metadata_props`` (``anacompile.report``, without file paths), the producer, and the report itself in
  ``model.meta`` for the caller.

The report dataclasses are the contract's (:mod:`anacompile.contract.report`).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import numpy as np
import onnx_ir as ir

from anacompile import contract
from anacompile._version import __version__
from anacompile.contract import CompileReport, LayerReport
from anacompile.crossbar.periphery import Periphery
from anacompile.errors import UnsupportedModelError
from anacompile.passes._layer import (
    DIGITAL_KEY,
    LAYER_KEY,
    NAME_KEY,
    NoCalibrationData,
    analog_layers,
    is_use,
    node_plans,
    plan_mapping,
    walk_nodes,
)
from anacompile.passes.count_macs import node_macs
from anacompile.passes.fold_constant_weights import tensor_readers, weight_source
from anacompile.passes.op_registry import LOWERINGS

__all__ = [
    "LAYERS_META",
    "MACS_META",
    "REPORT_META",
    "CountMacsPass",
    "RecordLayerReportsPass",
    "WriteCompileReportPass",
]

MACS_META = "anacompile.macs"
LAYERS_META = "anacompile.layer_reports"
REPORT_META = "anacompile.compile_report"
"""``model.meta`` keys (in memory only, never serialised)."""


class CountMacsPass(ir.passes.InPlacePass):
    """Count every weight-bearing op's MACs on the source graph; changes nothing.

    Args:
        input_shapes: shapes fixing the model inputs' dynamic dimensions (one calibration sample's), or None.
        macs: counts already made (``compile_model`` counts on its source proto): stored as they are.
    """

    def __init__(self, input_shapes: dict[str, list[int]] | None = None, macs: dict | None = None) -> None:
        super().__init__()
        self.input_shapes = input_shapes
        self.macs = macs

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        if MACS_META not in model.meta:
            macs = self.macs
            if macs is None:
                macs = node_macs(ir.serde.serialize_model(model), self.input_shapes)
            model.meta[MACS_META] = macs
        return ir.passes.PassResult(model, modified=False)


class RecordLayerReportsPass(ir.passes.InPlacePass):
    """Record one report row per weight-bearing op from the analysis state; changes nothing.

    Raises:
        UnsupportedModelError: no analog-capable op with a constant weight (``label`` names the model).
    """

    def __init__(self, periphery, mapping, shared_weights: str = "share", label: str = "model") -> None:
        super().__init__()
        self.periphery = periphery
        self.mapping = mapping
        self.shared_weights = shared_weights
        self.label = label

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        layers = layer_reports(model, self.periphery, model.meta.get(MACS_META), self.mapping)
        if not any(layer.analog for layer in layers):
            found = ", ".join(f"{layer.name} ({layer.op}: {layer.reason})" for layer in layers) or "none"
            raise UnsupportedModelError(
                f"{self.label}: no analog-capable op ({', '.join(LOWERINGS.op_types())} with a "
                f"constant weight) found; weight-bearing ops seen: {found}. Nothing to compile."
            )
        notes = sharing_notes(layers, self.shared_weights)
        unseen = [plan.name for _, plan in analog_layers(model) if plan.get(NoCalibrationData) is not None]
        if unseen:  # e.g. the branch of an If that the calibration data never takes
            notes.append(
                f"no calibration data reached layer(s) {', '.join(unseen)} (an If branch the data never takes?): "
                "their input range stays 1.0 and their output range the fixed ADC bound; calibrate with data "
                "that takes every branch"
            )
        model.meta[LAYERS_META] = (layers, notes)
        return ir.passes.PassResult(model, modified=False)


class WriteCompileReportPass(ir.passes.InPlacePass):
    """Write the compile report into ``metadata_props`` and set the producer.

    Args:
        device, mapping, periphery: as compiled; seed, chip, programming: the chip stored in the model.
        notes: notes gathered before the passes ran (calibration, external data...), then the sharing
            notes of :class:`RecordLayerReportsPass`, then the deployment-form note where ``deploy``.
        label: the source's name in the returned report (``model.meta``; the stored report has no paths).
        chip_state: what the file carries of the chip (:data:`anacompile.contract.CHIP_STATES`).
    """

    def __init__(
        self,
        device,
        mapping,
        periphery,
        *,
        seed: int = 0,
        chip: int = 0,
        programming: str = "gaussian",
        notes: list[str] | None = None,
        deploy: bool = False,
        label: str = "",
        chip_state: str = contract.CHIP_STATE_FULL,
    ) -> None:
        super().__init__()
        self.chip_state = chip_state
        self.device = device
        self.mapping = mapping
        self.periphery = periphery
        self.seed = seed
        self.chip = chip
        self.programming = programming
        self.notes = list(notes or [])
        self.deploy = deploy
        self.label = label

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        if LAYERS_META not in model.meta:
            raise UnsupportedModelError("WriteCompileReportPass needs RecordLayerReportsPass before the emit passes.")
        layers, sharing = model.meta[LAYERS_META]
        notes = [*self.notes, *sharing]
        if self.deploy:
            notes.append(
                "deployment form: simulation-only initializers removed, t_inference a plain graph "
                "input (feed 0.0 for the programmed state); evaluate the simulation form"
            )
        report = CompileReport(
            source=self.label,
            output="",
            device=self.device.to_dict(),
            periphery=self.periphery.to_dict(),
            strategy=self.mapping.to_dict(),
            seed=self.seed,
            chip=self.chip,
            programming=self.programming,
            layers=layers,
            notes=notes,
            chip_state=self.chip_state,
        )
        stored: dict[str, Any] = replace(report, source="", output="").to_dict()
        model.metadata_props[contract.META_REPORT] = json.dumps(stored)
        model.metadata_props[contract.META_VERSION] = __version__
        model.producer_name = "anacompile"
        model.producer_version = __version__
        model.meta[REPORT_META] = report
        return ir.passes.PassResult(model, modified=True)


def layer_reports(
    model: ir.Model, peri: Periphery, macs: dict[str, tuple[int, bool]] | None = None, mapping=None
) -> list[LayerReport]:
    rows = []
    readers = tensor_readers(model.graph)
    macs = macs or {}
    use_macs: dict[str, int] = {}  # a shared weight's owner -> the MACs of its later uses (counted in its row)
    for node, path in walk_nodes(model.graph):  # If branches and Loop/Scan bodies too; ``graph`` says where
        if LOWERINGS.get(node) is None:
            continue
        first = len(rows)
        if LAYER_KEY in node.meta:
            for plan in node_plans(node):  # one row per analog layer (a recurrent op may have several)
                if is_use(plan):  # a shared weight's later use: counted once, in its owner's row (``uses``)
                    use_total, _ = macs.get(node.outputs[0].name if node.outputs else "", (None, False))
                    owner = plan.tiles_of.name
                    use_macs[owner] = use_macs.get(owner, 0) + int(use_total or plan.k * plan.n_out)
                    continue
                cap = plan.n_tiles * peri.tile_rows * plan.n_col_tiles * peri.tile_cols
                own = plan.strategy.mapping if plan.strategy is not None else None
                pairs = len(plan_mapping(plan, mapping).significance) if mapping is not None else 1
                rows.append(
                    LayerReport(
                        name=plan.name,
                        op=node.op_type,
                        analog=True,
                        weight_shape=[plan.k, plan.n_out],
                        tiles=[plan.n_tiles, plan.n_col_tiles],
                        utilisation=float(plan.k * plan.n_out / cap),
                        parameters=int(plan.k * plan.n_out),
                        reason="",
                        uses=list(plan.uses),
                        strategy=own.to_dict() if own is not None else {},
                        devices=2 * pairs * int(plan.k * plan.n_out),
                        graph=path,
                    )
                )
        else:
            shape = _weight_shape(node)
            rows.append(
                LayerReport(
                    name=node.meta.get(NAME_KEY) or node.name or node.op_type,
                    op=node.op_type,
                    analog=False,
                    weight_shape=shape,
                    parameters=int(np.prod(shape)) if shape else 0,
                    reason=node.meta.get(DIGITAL_KEY, ""),
                    graph=path,
                )
            )
        node_total, _ = macs.get(node.outputs[0].name if node.outputs else "", (None, False))
        params = sum(row.parameters for row in rows[first:])
        for row in rows[first:]:  # a recurrent op's MACs split between its layers by their weights
            if node_total and len(rows) - first == 1:
                row.macs = int(node_total)
            else:
                row.macs = int(round(node_total * row.parameters / params)) if node_total and params else row.parameters
        source = weight_source(node.inputs[1] if len(node.inputs) > 1 else None)
        if source is not None:
            shared = [_op_name(n) for n in readers.get(source.tensor, []) if n is not node]
            for row in rows[first:]:
                row.weight_source, row.shared_with = source.expression, shared
    for row in rows:  # a shared weight's tiles do the MVMs of every use: its MACs are all of theirs
        row.macs += use_macs.get(row.name, 0) if row.analog else 0
    return rows


def sharing_notes(layers: list[LayerReport], shared_weights: str) -> list[str]:
    """What the report says about weights that several ops read."""
    shared = [layer for layer in layers if len(layer.uses) > 1]
    if shared:
        n_uses = sum(len(layer.uses) for layer in shared)
        return [
            f"{len(shared)} stored weight(s) read by {n_uses} ops are programmed once each; every use reads "
            "the same tiles (listed under 'uses')"
        ]
    if shared_weights == "replicate" and any(layer.shared_with for layer in layers if layer.analog):
        return [
            "shared weights replicated: every op reading a shared stored weight has its own tiles "
            "(shared_weights=replicate)"
        ]
    return []


def _op_name(node: ir.Node) -> str:
    """A node's name in the report: its (first) analog layer's name, else the node's own name."""
    plans = node_plans(node)
    return plans[0].name if plans else (node.name or node.op_type)


def _weight_shape(node: ir.Node) -> list[int]:
    for value in node.inputs[1:2]:
        if value is not None and value.const_value is not None:
            return [int(d) for d in value.const_value.shape]
    return []
