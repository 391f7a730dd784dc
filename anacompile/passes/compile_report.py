"""The compile report as passes: count MACs, record the per-layer report, write it into the model's metadata.

Three passes of :func:`anacompile.passes.default_pipeline` (and of ``compile_model``, which runs the same
pipeline), so that a pipeline of other passes around the compiler's gets the same report in its model:

* :class:`CountMacsPass` (first, on the source graph): multiply-accumulates per weight-bearing op
  (:mod:`anacompile.passes.count_macs`), kept in ``model.meta``;
* :class:`RecordLayerReportsPass` (after the analysis passes, while the plans are in ``node.meta``): one
  :class:`~anacompile.compiler.LayerReport` per weight-bearing op; refuses a model with no analog layer;
* :class:`WriteCompileReportPass` (last): the :class:`~anacompile.compiler.CompileReport` as JSON in
  ``metadata_props`` (``anacompile.report``, without file paths), the producer, and the report itself in
  ``model.meta`` for the caller.

The report dataclasses live beside ``compile_model`` (:mod:`anacompile.compiler`, same layer), imported when
a pass runs.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import onnx_ir as ir

from anacompile import ops
from anacompile.errors import UnsupportedModelError
from anacompile.passes.count_macs import node_macs
from anacompile.passes.mark_analog_ops import HANDLERS

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
        from anacompile.compiler import _layer_reports, _sharing_notes

        layers = _layer_reports(model, self.periphery, model.meta.get(MACS_META), self.mapping)
        if not any(layer.analog for layer in layers):
            found = ", ".join(f"{layer.name} ({layer.op}: {layer.reason})" for layer in layers) or "none"
            raise UnsupportedModelError(
                f"{self.label}: no analog-capable op ({', '.join(sorted({op for _, op in HANDLERS}))} with a "
                f"constant weight) found; weight-bearing ops seen: {found}. Nothing to compile."
            )
        model.meta[LAYERS_META] = (layers, _sharing_notes(layers, self.shared_weights))
        return ir.passes.PassResult(model, modified=False)


class WriteCompileReportPass(ir.passes.InPlacePass):
    """Write the compile report into ``metadata_props`` and set the producer.

    Args:
        device, mapping, periphery: as compiled; seed, chip, programming: the chip stored in the model.
        notes: notes gathered before the passes ran (calibration, external data...), then the sharing
            notes of :class:`RecordLayerReportsPass`, then the deployment-form note where ``deploy``.
        label: the source's name in the returned report (``model.meta``; the stored report has no paths).
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
    ) -> None:
        super().__init__()
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
        import anacompile
        from anacompile.compiler import CompileReport

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
        )
        stored: dict[str, Any] = replace(report, source="", output="").to_dict()
        model.metadata_props[ops.META_REPORT] = json.dumps(stored)
        model.metadata_props[ops.META_VERSION] = anacompile.__version__
        model.producer_name = "anacompile"
        model.producer_version = anacompile.__version__
        model.meta[REPORT_META] = report
        return ir.passes.PassResult(model, modified=True)
