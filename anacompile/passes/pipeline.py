"""The compiler's pass pipeline, built in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import onnx_ir as ir

from anacompile import contract, devices
from anacompile.config import read_config_file
from anacompile.crossbar.periphery import InputRange, OutputRange, Periphery, get_periphery
from anacompile.errors import ConfigError
from anacompile.feeds import load_feeds, model_input_specs
from anacompile.limits import check_index
from anacompile.mapping import ConductanceMapping
from anacompile.mapping.registry import get_mapping
from anacompile.model_io import ModelInput, model_label, read_model
from anacompile.passes._tensor_store import TensorStore
from anacompile.passes.add_analog_functions import AddAnalogFunctionsPass
from anacompile.passes.apply_placement import ApplyPlacementPass, parse_placement
from anacompile.passes.calibrate_input_ranges import (
    CalibrateInputRangesPass,
    CalibrateOutputRangesPass,
    SetInputRangesPass,
)
from anacompile.passes.calibration_feeds import calibration_batches
from anacompile.passes.compile_report import CountMacsPass, RecordLayerReportsPass, WriteCompileReportPass
from anacompile.passes.conv import SplitGroupedConvsPass
from anacompile.passes.deploy_form import DEPLOY, SIMULATION, TARGETS, MakeDeployFormPass
from anacompile.passes.fold_constant_weights import FoldConstantWeightsPass
from anacompile.passes.map_conductances import MapConductancesPass
from anacompile.passes.mark_analog_ops import MarkAnalogOpsPass
from anacompile.passes.partition_weights import PartitionWeightsPass
from anacompile.passes.program_chip import ProgramChipPass
from anacompile.passes.rewrite_to_analog_ops import RewriteToAnalogOpsPass
from anacompile.passes.verify_analog_model import VerifyAnalogModelPass

__all__ = [
    "CALIBRATION_SAMPLES",
    "CompileSettings",
    "analysis_pipeline",
    "check_output_form",
    "compile_pipeline",
    "compile_settings",
    "default_pipeline",
    "deploy_pipeline",
    "emit_pipeline",
    "load_input_ranges",
    "planning_pipeline",
    "settings_analysis",
    "settings_emit",
    "settings_pipeline",
    "verify_pipeline",
]

CALIBRATION_SAMPLES = 256
"""Calibration samples read from a data set for static input ranges (its training split)."""


def planning_pipeline(shared_weights: str = "share") -> ir.passes.PassManager:
    """Fold weight chains, split grouped convs, find the analog ops: the layers and the weight matrices (K, N)
    the compiler maps (``LayerPlan.weight``), before any device or periphery is involved. The start of
    :func:`analysis_pipeline`; ``optimize`` scores these matrices (:mod:`anacompile.passes.mapped_weights`)."""
    return ir.passes.PassManager(
        [FoldConstantWeightsPass(), SplitGroupedConvsPass(), MarkAnalogOpsPass(shared_weights)], early_stop=False
    )


@dataclass(frozen=True)
class CompileSettings:
    """The compiler's resolved options, in one place (:func:`compile_settings` resolves the user's).

    Attributes:
        device: device model.
        mapping: the model's programming strategy.
        periphery: the periphery in force.
        calibration_feeds: calibration feeds (a list of feed dicts or one dict of batches), or None.
        seed: experiment seed; chip: the chip of it the file carries.
        programming: chip programming method (``gaussian`` or ``verify``).
        store: with a :class:`~anacompile.passes._tensor_store.TensorStore`, the conductance arrays of every
            layer go to its file as they are made, so memory stays bounded by one layer (large models).
        input_ranges: provided static input ranges per layer name.
        placement: a :class:`~anacompile.passes.apply_placement.Placement` (digital layers, per-layer
            strategies), applied right after the analog ops are found.
        shared_weights: ``share`` (a stored weight read by several ops is programmed once) or ``replicate``.
        chip_state: ``full`` or ``none`` (no chip is programmed: the file carries the plan only).
        macs: the source graph's MACs per op, if counted already.
        notes: notes for the report.
        deploy: also make the deployment form.
        label: the source's name in the report and in messages.
        verify: run the full ONNX checker in memory at the end.
    """

    device: Any
    mapping: ConductanceMapping
    periphery: Periphery
    calibration_feeds: Any = None
    seed: int = 0
    chip: int = 0
    programming: str = "gaussian"
    store: TensorStore | None = None
    input_ranges: dict | None = None
    placement: Any = None
    shared_weights: str = "share"
    chip_state: str = contract.CHIP_STATE_FULL
    macs: dict | None = None
    notes: list[str] | None = None
    deploy: bool = False
    label: str = "model"
    verify: bool = False


def analysis_pipeline(device, mapping, periphery, calibration_feeds=None, **options) -> ir.passes.PassManager:
    """Fold weight chains, split grouped convs, find analog ops, placement, partition, calibrate, map and
    program (:class:`CompileSettings`: the arguments and ``options``; ``chip_state="none"``: no chip is
    programmed)."""
    return settings_analysis(CompileSettings(device, mapping, periphery, calibration_feeds, **options))


def settings_analysis(s: CompileSettings) -> ir.passes.PassManager:
    """:func:`analysis_pipeline` of resolved settings."""
    return ir.passes.PassManager(
        [
            *planning_pipeline(s.shared_weights).passes,
            *([ApplyPlacementPass(s.placement)] if s.placement else []),
            PartitionWeightsPass(s.periphery),
            *([SetInputRangesPass(s.input_ranges, require_all=s.calibration_feeds is None)] if s.input_ranges else []),
            CalibrateInputRangesPass(s.periphery, s.calibration_feeds),
            MapConductancesPass(s.device, s.mapping, store=s.store),
            CalibrateOutputRangesPass(s.device, s.mapping, s.periphery),
            *(
                [
                    ProgramChipPass(
                        s.device,
                        s.mapping,
                        s.periphery.drift_compensation,
                        seed=s.seed,
                        chip=s.chip,
                        method=s.programming,
                        store=s.store,
                    )
                ]
                if s.chip_state == contract.CHIP_STATE_FULL
                else []
            ),
        ],
        early_stop=False,
    )


def emit_pipeline(
    device,
    mapping: ConductanceMapping,
    periphery: Periphery,
    seed: int = 0,
    chip: int = 0,
    verify: bool = True,
    chip_state: str = contract.CHIP_STATE_FULL,
) -> ir.passes.PassManager:
    """Rewrite to analog ops, add their functions, verify with the full ONNX checker (in memory).

    ``verify=False`` leaves the check to :func:`verify_pipeline` on the saved file (what the compiler does).
    """
    return settings_emit(
        CompileSettings(device, mapping, periphery, seed=seed, chip=chip, chip_state=chip_state, verify=verify)
    )


def settings_emit(s: CompileSettings) -> ir.passes.PassManager:
    """:func:`emit_pipeline` of resolved settings (``s.verify``: the checker in memory)."""
    return ir.passes.PassManager(
        [
            RewriteToAnalogOpsPass(s.device, s.mapping, s.periphery, seed=s.seed, chip=s.chip, chip_state=s.chip_state),
            AddAnalogFunctionsPass(s.periphery, s.periphery.drift_compensation, s.device),
            *([VerifyAnalogModelPass()] if s.verify else []),
        ],
        early_stop=False,
    )


def compile_pipeline(device, mapping, periphery, calibration_feeds=None, **options) -> ir.passes.PassManager:
    """The whole compiler (what ``compile_model`` runs) for :class:`CompileSettings` (the arguments and
    ``options``): :func:`settings_pipeline`."""
    return settings_pipeline(CompileSettings(device, mapping, periphery, calibration_feeds, **options))


def settings_pipeline(s: CompileSettings) -> ir.passes.PassManager:
    """The whole compiler, in this order, for resolved settings:

    1. :class:`CountMacsPass` (the source graph's MACs, for the report);
    2. :func:`analysis_pipeline`: fold, split grouped convs, mark, placement, partition, input ranges, map,
       program;
    3. :class:`RecordLayerReportsPass` (the per-layer report, while the plans are known);
    4. :func:`emit_pipeline`: rewrite to the analog ops, add their functions;
    5. :class:`~anacompile.passes.deploy_form.MakeDeployFormPass` where ``deploy``;
    6. :class:`WriteCompileReportPass` (metadata);
    7. :class:`VerifyAnalogModelPass` in memory where ``verify`` (``compile_model`` checks the saved file).
    """
    feeds = s.calibration_feeds
    calibration_shapes = {k: [1, *v.shape[1:]] for k, v in feeds.items()} if isinstance(feeds, dict) else None
    return ir.passes.PassManager(
        [
            CountMacsPass(calibration_shapes, s.macs),
            *settings_analysis(s).passes,
            RecordLayerReportsPass(s.periphery, s.mapping, s.shared_weights, label=s.label),
            *settings_emit(replace(s, verify=False)).passes,
            *([MakeDeployFormPass()] if s.deploy else []),
            WriteCompileReportPass(
                s.device,
                s.mapping,
                s.periphery,
                seed=s.seed,
                chip=s.chip,
                programming=s.programming,
                notes=s.notes,
                deploy=s.deploy,
                label=s.label,
                chip_state=s.chip_state,
            ),
            *([VerifyAnalogModelPass()] if s.verify else []),
        ],
        early_stop=False,
    )


def deploy_pipeline() -> ir.passes.PassManager:
    """The deployment form (:mod:`anacompile.passes.deploy_form`), after :func:`emit_pipeline`."""
    return ir.passes.PassManager([MakeDeployFormPass()], early_stop=False)


def verify_pipeline(path: str | os.PathLike[str] | None, full_check: bool = True) -> ir.passes.PassManager:
    """Check the saved compiled model by path with the ONNX checker (any size, external data too); with
    ``path=None``, the model in memory."""
    return ir.passes.PassManager([VerifyAnalogModelPass(path, full_check=full_check)], early_stop=False)


def compile_settings(proto, device, periphery, periphery_overrides, strategy, calibration, input_ranges):
    """Options resolved: (device, mapping, periphery, calibration feeds, input ranges, notes).

    ``calibration`` is a data set name or .npz (read for ``proto``'s inputs), or a dict of feeds already loaded.
    """
    dev = devices.get(device)
    mapping = get_mapping(strategy)
    peri = get_periphery(periphery, periphery_overrides)
    notes: list[str] = []
    feeds = None
    ranges = load_input_ranges(input_ranges)
    if ranges and peri.input_range is not InputRange.STATIC:
        peri = peri.replace(input_range=InputRange.STATIC.value)
        notes.append("input ranges provided: static input ranges")
    if peri.input_range is InputRange.STATIC:
        if calibration is None and ranges:
            pass  # every layer must then be listed (checked by SetInputRangesPass)
        elif calibration is None:
            peri = peri.replace(input_range=InputRange.ABSMAX.value)
            notes.append(
                "no calibration data: static input ranges replaced by abs-max noise management "
                "(pass --calibration to calibrate static ranges)"
            )
    peri, range_note = _output_range(peri, calibration)
    notes.append(range_note)
    if calibration is not None and (
        peri.input_range is InputRange.STATIC or peri.output_range is OutputRange.CALIBRATED
    ):
        if isinstance(calibration, (str, os.PathLike)):
            if proto is None:
                raise ConfigError(
                    f"calibration={calibration!r}: give the model too (model=...) so that the data "
                    "can be matched to its inputs, or pass the feeds as a dict."
                )
            calibration, _ = load_feeds(calibration, proto, part="train", limit=CALIBRATION_SAMPLES)
        specs = model_input_specs(proto) if proto is not None else None
        if specs is None:  # no model: the feeds' own names and dtypes
            first = calibration if isinstance(calibration, dict) else None
            if first is None:
                calibration = (
                    list(iter(calibration.get_next, None)) if hasattr(calibration, "get_next") else list(calibration)
                )
                first = calibration[0] if calibration else {}
            specs = [(k, [None] * np.asarray(v).ndim, np.asarray(v).dtype.type) for k, v in first.items()]
        feeds = calibration_batches(calibration, specs, CALIBRATION_SAMPLES)
    return dev, mapping, peri, feeds, ranges, notes


def _output_range(peri: Periphery, calibration) -> tuple[Periphery, str]:
    """The ADC ranges in force (``output_range``) and the report's note on them."""
    if peri.output_range is OutputRange.CALIBRATED and peri.adc_bound is None:
        return peri.replace(output_range=OutputRange.FIXED.value), (
            "no ADC bound (adc_bound=none): output ranges are not calibrated, since nothing saturates"
        )
    if peri.output_range is OutputRange.CALIBRATED and calibration is None:
        return peri.replace(output_range=OutputRange.FIXED.value), (
            f"no calibration data: output ranges at the fixed ADC bound (adc_bound={peri.adc_bound}), since a "
            "calibrated range needs the tiles' outputs on data; pass --calibration to calibrate them"
        )
    if peri.output_range is OutputRange.CALIBRATED:
        return peri, (
            f"output ranges calibrated per tile: the {peri.output_range_percentile} percentile of |tile "
            "output| on the calibration data meets the ADC bound (output_range=calibrated)"
        )
    return peri, (
        f"output ranges fixed at the ADC bound adc_bound={peri.adc_bound} (output_range=fixed, Rasch et al. 2023)"
    )


def check_output_form(target: str, chip_state: str) -> None:
    """Refuse an unknown ``target`` or ``chip_state``, and ``chip_state="none"`` with ``target="deploy"`` (a
    device runtime loads a programmed chip), before any work.

    Raises:
        ConfigError: naming the option and its valid values.
    """
    if target not in TARGETS:
        raise ConfigError(f"target {target!r}: use one of {', '.join(TARGETS)}.")
    if chip_state not in contract.CHIP_STATES:
        raise ConfigError(f"--chip-state {chip_state!r}: use one of {', '.join(contract.CHIP_STATES)}.")
    if chip_state == contract.CHIP_STATE_NONE and target == DEPLOY:
        raise ConfigError(
            "--chip-state none stores no programmed chip, which --target deploy needs; use --chip-state full."
        )


def default_pipeline(
    *,
    device: str | os.PathLike[str] = "pcm",
    periphery: str | os.PathLike[str] | Periphery = "calibrated",
    periphery_overrides: dict[str, Any] | list[str] | None = None,
    strategy: str | os.PathLike[str] = "single",
    calibration: str | os.PathLike[str] | dict[str, Any] | None = None,
    model: ModelInput | None = None,
    seed: int = 0,
    chip: int = 0,
    programming: str = "gaussian",
    input_ranges: dict[str, float | list[float]] | str | os.PathLike[str] | None = None,
    digital: str | list[str] | None = None,
    layer_strategies: dict[str, Any] | list[str] | None = None,
    target: str = SIMULATION,
    shared_weights: str = "share",
    verify: bool = True,
    chip_state: str = contract.CHIP_STATE_FULL,
) -> ir.passes.PassManager:
    """The compiler as an onnx-ir pass pipeline, for other onnx-ir / onnxscript pipelines to run between theirs.

    The options are :func:`compile_model`'s; the passes and their order are
    :func:`anacompile.passes.pipeline.compile_pipeline` (MACs, analysis, per-layer report, emit, deployment
    form, metadata report), then the full ONNX checker in memory (``verify``). Run on the source model
    (``ir.load(path)`` or ``ir.from_proto(proto)``; the passes work in place), the result serialises to the
    bytes ``compile_model`` writes for the same source and options (for models under protobuf's 2 GB; larger
    ones: use ``compile_model``, which streams tensors to external data). Source checks and opset upgrades
    are ``compile_model``'s: put onnx-ir's or your own before this pipeline. After it, passes that delete
    initializers no node reads (onnx-ir's ``RemoveUnusedNodesPass``) strip the simulation form's programming
    plans, which the analog session needs: use ``target="deploy"`` for that form instead.

    Args:
        calibration: a data set name or .npz (then ``model``: the source, to match the data to its inputs),
            or the calibration feeds themselves (input name -> array).
        model: the source model, only to read calibration data for its inputs.
        chip_state: ``full`` (the file carries the programmed chip) or ``none`` (the plan and seed only), as
            ``compile --chip-state``.

    Example::

        import onnx_ir as ir
        from onnx_ir.passes import common
        import anacompile.passes

        model = ir.load("model.onnx")
        ir.passes.Sequential(
            common.RemoveUnusedNodesPass(),
            anacompile.passes.default_pipeline(device="pcm", periphery="calibrated", calibration="digits", model=model),
            common.RemoveUnusedOpsetsPass(),
        )(model)
    """
    check_output_form(target, chip_state)
    seed, chip = check_index(seed, "--seed"), check_index(chip, "--chip")
    proto = read_model(model) if model is not None else None
    dev, mapping, peri, feeds, ranges, notes = compile_settings(
        proto, device, periphery, periphery_overrides, strategy, calibration, input_ranges
    )
    return compile_pipeline(
        dev,
        mapping,
        peri,
        feeds,
        seed=seed,
        chip=chip,
        programming=programming,
        input_ranges=ranges,
        placement=parse_placement(digital, layer_strategies),
        shared_weights=shared_weights,
        notes=notes,
        deploy=target == DEPLOY,
        label=model_label(model) if model is not None else "model",
        verify=verify,
        chip_state=chip_state,
    )


def load_input_ranges(spec) -> dict | None:
    """Provided input ranges: a dict, or a JSON file mapping layer names to a range (or one per tile)."""
    if spec is None or isinstance(spec, dict):
        return spec or None
    return read_config_file(spec, "Input-ranges file") or None
