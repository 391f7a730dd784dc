"""``compile_model``: the public compiler API (the ``anacompile compile`` command, one to one).

load -> analysis passes (mark, partition, calibrate, map, program) -> emit passes (rewrite, functions,
verify) -> metadata report -> atomic save.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir

import anacompile
from anacompile import devices, ops
from anacompile.crossbar.periphery import InputRange, Periphery, get_periphery
from anacompile.errors import AnacompileError, UnsupportedModelError
from anacompile.evaluate.data import load_feeds
from anacompile.mapping.registry import get_mapping
from anacompile.model_io import atomic_output, check_output_path, load_model, load_proto
from anacompile.passes._layer import DIGITAL_KEY, LAYER_KEY
from anacompile.passes.mark_analog_ops import HANDLERS
from anacompile.passes.pipeline import analysis_pipeline, emit_pipeline

__all__ = ["CompileReport", "LayerReport", "compile_model", "default_output_path", "read_report"]

logger = logging.getLogger(__name__)
CALIBRATION_SAMPLES = 256


@dataclass
class LayerReport:
    """One weight-bearing op: what the compiler did with it."""

    name: str
    op: str
    analog: bool
    weight_shape: list[int] = field(default_factory=list)
    tiles: list[int] = field(default_factory=list)  # [row tiles, column tiles]
    utilisation: float = 0.0
    parameters: int = 0
    reason: str = ""


@dataclass
class CompileReport:
    """The compile report, also stored as JSON in the model's ``metadata_props`` (``anacompile.report``)."""

    source: str
    output: str
    device: dict[str, Any]
    periphery: dict[str, Any]
    strategy: dict[str, Any]
    seed: int
    chip: int
    programming: str
    layers: list[LayerReport]
    notes: list[str] = field(default_factory=list)
    anacompile_version: str = anacompile.__version__

    @property
    def totals(self) -> dict[str, Any]:
        """Weights mapped, share of parameters analog, tiles used."""
        analog = [layer for layer in self.layers if layer.analog]
        n_analog = sum(layer.parameters for layer in analog)
        n_all = sum(layer.parameters for layer in self.layers)
        return {
            "analog_layers": len(analog),
            "digital_layers": len(self.layers) - len(analog),
            "weights_mapped": n_analog,
            "analog_parameter_share": (n_analog / n_all) if n_all else 0.0,
            "tiles": sum(layer.tiles[0] * layer.tiles[1] for layer in analog),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, totals included."""
        d = asdict(self)
        d["totals"] = self.totals
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompileReport:
        """Inverse of :meth:`to_dict`."""
        d = {k: v for k, v in d.items() if k != "totals"}
        d["layers"] = [LayerReport(**layer) for layer in d["layers"]]
        return cls(**d)


def default_output_path(model: str | os.PathLike[str]) -> Path:
    """``model.onnx`` -> ``model.analog.onnx`` beside it."""
    p = Path(model)
    stem = p.name[: -len(".onnx")] if p.name.endswith(".onnx") else p.name
    return p.with_name(stem + ".analog.onnx")


def compile_model(
    model: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    device: str | os.PathLike[str] = "pcm",
    periphery: str | os.PathLike[str] | Periphery = "standard",
    periphery_overrides: dict[str, Any] | list[str] | None = None,
    strategy: str | os.PathLike[str] = "single",
    calibration: str | os.PathLike[str] | None = None,
    seed: int = 0,
    chip: int = 0,
    programming: str = "gaussian",
    force: bool = False,
) -> CompileReport:
    """Compile an ONNX model for analog crossbar tiles and write the annotated model.

    Args:
        model: source ONNX file.
        output: destination; default ``<model>.analog.onnx`` beside the source.
        device: device preset name (``pcm``) or device file.
        periphery: periphery preset (``standard``, ``ideal``), file or :class:`Periphery`.
        periphery_overrides: per-key overrides (``{"adc_bits": 6}`` or ``["adc_bits=6"]``).
        strategy: programming strategy (``single``, or a strategy file).
        calibration: data for static input ranges: a built-in set name (``digits``) or an .npz; without
            it, static input ranges fall back to abs-max noise management (noted in the report).
        seed: experiment seed; ``chip``: index of the chip whose programmed state is stored in the file.
        programming: chip programming method (``gaussian``).
        force: overwrite an existing output.

    Returns:
        The compile report (also stored in the output's metadata).

    Raises:
        AnacompileError: bad input model, options or output path; nothing is written then.
    """
    source = Path(model)
    proto = load_proto(source)
    out = check_output_path(output if output is not None else default_output_path(source), [source], force)
    dev = devices.get(device)
    mapping = get_mapping(strategy)
    peri = get_periphery(periphery, periphery_overrides)
    notes: list[str] = []
    feeds = None
    if peri.input_range is InputRange.STATIC:
        if calibration is None:
            peri = peri.replace(input_range=InputRange.ABSMAX.value)
            notes.append("no calibration data: static input ranges replaced by abs-max noise management "
                         "(pass --calibration to calibrate static ranges)")
        else:
            feeds, _ = load_feeds(calibration, proto, part="train", limit=CALIBRATION_SAMPLES)
    if proto.opset_import and _default_opset(proto) < 13:
        raise UnsupportedModelError(
            f"{source}: opset {_default_opset(proto)} is older than 13; convert it first with "
            "onnx.version_converter.convert_version(model, 17)."
        )
    irmodel = load_model(source)
    _run(analysis_pipeline(dev, mapping, peri, feeds, seed=seed, chip=chip, programming=programming), irmodel)
    layers = _layer_reports(irmodel, peri)
    if not any(layer.analog for layer in layers):
        found = ", ".join(f"{layer.name} ({layer.op}: {layer.reason})" for layer in layers) or "none"
        raise UnsupportedModelError(
            f"{source}: no analog-capable op (MatMul/Gemm with a constant 2-D weight) found; weight-bearing ops "
            f"seen: {found}. Nothing to compile."
        )
    _run(emit_pipeline(dev, mapping, peri, seed=seed, chip=chip), irmodel)
    report = CompileReport(
        source=str(source), output=str(out), device=dev.to_dict(), periphery=peri.to_dict(),
        strategy=mapping.to_dict(), seed=seed, chip=chip, programming=programming, layers=layers, notes=notes,
    )
    irmodel.metadata_props[ops.META_REPORT] = json.dumps(report.to_dict())
    irmodel.metadata_props[ops.META_VERSION] = anacompile.__version__
    irmodel.producer_name = "anacompile"
    irmodel.producer_version = anacompile.__version__
    with atomic_output(out) as tmp:
        ir.save(irmodel, tmp)
    logger.info("wrote %s (%d analog layers)", out, report.totals["analog_layers"])
    return report


def read_report(proto) -> CompileReport:
    """The compile report stored in a compiled model (``onnx.ModelProto``)."""
    meta = {p.key: p.value for p in proto.metadata_props}
    if ops.META_REPORT not in meta:
        raise UnsupportedModelError("The model has no anacompile report: compile it with `anacompile compile` first.")
    return CompileReport.from_dict(json.loads(meta[ops.META_REPORT]))


def _default_opset(proto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _run(pm: ir.passes.PassManager, model: ir.Model) -> None:
    try:
        pm(model)
    except ir.passes.PassError as err:
        cause = err
        while cause is not None and not isinstance(cause, AnacompileError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from err
        raise


def _layer_reports(model: ir.Model, peri: Periphery) -> list[LayerReport]:
    rows = []
    for node in model.graph:
        if (node.domain, node.op_type) not in HANDLERS:
            continue
        if LAYER_KEY in node.meta:
            plan = node.meta[LAYER_KEY]
            cap = plan.n_tiles * peri.tile_rows * plan.n_col_tiles * peri.tile_cols
            rows.append(LayerReport(
                name=plan.name, op=node.op_type, analog=True, weight_shape=[plan.k, plan.n_out],
                tiles=[plan.n_tiles, plan.n_col_tiles], utilisation=float(plan.k * plan.n_out / cap),
                parameters=int(plan.k * plan.n_out), reason="",
            ))
        else:
            shape = _weight_shape(node)
            rows.append(LayerReport(name=node.name or node.op_type, op=node.op_type, analog=False,
                                    weight_shape=shape, parameters=int(np.prod(shape)) if shape else 0,
                                    reason=node.meta.get(DIGITAL_KEY, "")))
    return rows


def _weight_shape(node: ir.Node) -> list[int]:
    for value in node.inputs[1:2]:
        if value is not None and value.const_value is not None:
            return [int(d) for d in value.const_value.shape]
    return []
