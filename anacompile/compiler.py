"""``compile_model``: the public compiler API (the ``anacompile compile`` command, one to one).

load -> analysis passes (mark, partition, calibrate, map, program) -> emit passes (rewrite, functions,
verify) -> metadata report -> atomic save.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import onnx
import onnx_ir as ir

from anacompile.contract import (
    CHIP_STATE_FULL,
    REPORT_SCHEMA_VERSION,
    CompileReport,
    LayerReport,
    read_report,
)
from anacompile.crossbar.periphery import Periphery
from anacompile.errors import AnacompileError, ConfigError, OutputError, UnsupportedModelError
from anacompile.limits import check_index
from anacompile.model_io import (
    EXTERNAL_DATA_LIMIT_BYTES,
    ModelInput,
    atomic_output,
    check_output_path,
    external_data_files,
    external_data_name,
    is_in_memory,
    load_model,
    load_proto,
    model_file,
    model_label,
    read_model,
)
from anacompile.model_validation import check_source, check_structure, checker_problem, ort_problem, refuse_invalid
from anacompile.passes._tensor_store import TensorStore
from anacompile.passes.apply_placement import parse_placement
from anacompile.passes.compile_report import REPORT_META
from anacompile.passes.count_macs import node_macs
from anacompile.passes.deploy_form import DEPLOY, SIMULATION, TARGETS
from anacompile.passes.pipeline import (
    check_output_form,
    compile_pipeline,
    compile_settings,
    default_pipeline,
    verify_pipeline,
)
from anacompile.passes.pipeline import load_input_ranges as _load_input_ranges  # noqa: F401 (kept importable)
from anacompile.passes.upgrade_opset import MIN_OPSET, default_opset, upgrade_opset

__all__ = [
    "REPORT_SCHEMA_VERSION",
    "CompileReport",
    "LayerReport",
    "compile_model",
    "default_output_path",
    "default_pipeline",
    "read_report",
]

logger = logging.getLogger(__name__)


def default_output_path(model: str | os.PathLike[str]) -> Path:
    """``model.onnx`` -> ``model.analog.onnx`` beside it."""
    p = Path(model)
    stem = p.name[: -len(".onnx")] if p.name.endswith(".onnx") else p.name
    return p.with_name(stem + ".analog.onnx")


def compile_model(
    model: ModelInput,
    output: str | os.PathLike[str] | None = None,
    *,
    device: str | os.PathLike[str] = "pcm",
    periphery: str | os.PathLike[str] | Periphery = "calibrated",
    periphery_overrides: dict[str, Any] | list[str] | None = None,
    strategy: str | os.PathLike[str] = "single",
    calibration: Any = None,
    seed: int = 0,
    chip: int = 0,
    programming: str = "gaussian",
    force: bool = False,
    input_ranges: dict[str, float | list[float]] | str | os.PathLike[str] | None = None,
    digital: str | list[str] | None = None,
    layer_strategies: dict[str, Any] | list[str] | None = None,
    target: str = SIMULATION,
    allow_invalid: bool = False,
    shared_weights: str = "share",
    chip_state: str = CHIP_STATE_FULL,
) -> CompileReport | tuple[onnx.ModelProto | ir.Model, CompileReport]:
    """Compile an ONNX model for analog crossbar tiles and write the annotated model (or return it).

    Args:
        model: source model: an ONNX file, an ``onnx.ModelProto`` or an ``onnx_ir.Model`` (never modified).
        output: destination; default ``<model>.analog.onnx`` beside a source file. For an in-memory source
            with no ``output`` nothing is written: the compiled model is returned (see Returns).
        device: device preset name (``pcm``) or device file.
        periphery: periphery preset (``calibrated``: the standard periphery with ADC ranges calibrated from
            ``calibration``; ``standard``: Rasch et al. 2023 with its fixed ADC bound; ``ideal``), file or
            :class:`Periphery`.
        periphery_overrides: per-key overrides (``{"adc_bits": 6}`` or ``["adc_bits=6"]``).
        strategy: programming strategy (``single``, or a strategy file).
        calibration: data for static input ranges and calibrated output ranges: a built-in set name
            (``digits``), an .npz of batched arrays named after the inputs, a dict of such arrays, any iterable
            of feed dicts, or an object with ``get_next()`` (onnxruntime's ``CalibrationDataReader``); at most
            256 samples are used. Without it, static input ranges fall back to abs-max noise management and
            output ranges to the fixed ADC bound (both noted in the report).
        seed: experiment seed; ``chip``: index of the chip whose programmed state is stored in the file.
        programming: chip programming method (``gaussian``).
        force: overwrite an existing output.
        input_ranges: static DAC input ranges provided per layer (e.g. learned in hardware-aware training):
            ``{"fc1_Gemm": 2.5}`` or a JSON file of that form (one number, or one per row tile); layers not
            listed are calibrated from ``calibration``.
        allow_invalid: compile a source that fails ``onnx.checker``'s full check (refused otherwise, with the
            checker's message); the output is then checked as strictly as the source passes.
        digital: layers to keep digital: node names, layer names, op types or glob patterns, or
            ``"@placement.json"`` (:mod:`anacompile.passes.apply_placement`).
        layer_strategies: per-layer programming strategies, ``{"fc1": "dual"}`` or ``["fc1=dual"]`` (or
            ``"@placement.json"``); other layers use ``strategy``.
        target: ``simulation`` (default: what ``evaluate`` and the analog session read) or ``deploy``: the
            form a device runtime loads, without the simulation-only initializers and with ``t_inference``
            a plain graph input (:mod:`anacompile.passes.deploy_form`).
        shared_weights: a stored weight read by several MatMul/Gemm ops (an unrolled recurrence, tied
            weights) is programmed once on one set of tiles that every use reads (``share``), or a copy per
            use on its own tiles (``replicate``, noted in the report).

    Returns:
        The compile report (also stored in the output's metadata, without the file paths: a compiled model's
        bytes depend on the source model and the options only). For an in-memory source and
        ``output=None``: ``(compiled, report)``, with ``compiled`` an ``onnx.ModelProto`` (an
        ``onnx_ir.Model``, its tensors in memory, when the source was one); its serialised bytes are those
        the CLI writes for the same source and options.

    Raises:
        AnacompileError: bad input model, options or output path; nothing is written then.
    """
    seed, chip = check_index(seed, "--seed"), check_index(chip, "--chip")
    check_output_form(target, chip_state)
    options = {
        "device": device,
        "periphery": periphery,
        "periphery_overrides": periphery_overrides,
        "strategy": strategy,
        "calibration": calibration,
        "seed": seed,
        "chip": chip,
        "programming": programming,
        "force": force,
        "input_ranges": input_ranges,
        "placement": parse_placement(digital, layer_strategies),
        "target": target,
        "allow_invalid": allow_invalid,
        "shared_weights": shared_weights,
        "chip_state": chip_state,
    }
    if not is_in_memory(model):
        source = Path(model)
        return _compile_file(source, output if output is not None else default_output_path(source), **options)
    label = model_label(model)
    if output is None and _fits_in_memory(model):  # compiled in memory: no file is written at all
        report, compiled = _compile_file(read_model(model, load_external_data=True), None, label=label, **options)
        if isinstance(model, onnx.ModelProto):
            compiled = ir.serde.serialize_model(compiled)
        return compiled, replace(report, source=label, output="")
    with model_file(model) as source:  # large or external-data models: through a private temporary folder
        if output is not None:
            return replace(_compile_file(source, output, label=label, **options), source=label)
        with tempfile.TemporaryDirectory(prefix="anacompile-compile-") as folder:
            out = Path(folder) / "model.analog.onnx"
            report = _compile_file(source, out, label=label, **options)
            compiled = _read_compiled(out, as_ir=isinstance(model, ir.Model))
    return compiled, replace(report, source=label, output="")


def _read_compiled(path: Path, as_ir: bool) -> onnx.ModelProto | ir.Model:
    """A compiled file back in memory, external data included (the file's folder is removed after)."""
    if not as_ir:
        return onnx.load(str(path))
    model = ir.load(str(path))
    ir.external_data.load_to_model(model)
    return model


def _fits_in_memory(model: onnx.ModelProto | ir.Model) -> bool:
    """Whether an in-memory source and its compiled model stay in memory: no external tensors, and an upper
    bound of the compiled size (:func:`_needs_external_data`) under the external-data limit."""
    if isinstance(model, ir.Model):
        if any(isinstance(v.const_value, ir.ExternalTensor) for g in model.graphs() for v in g.initializers.values()):
            return False
        size = sum(
            v.const_value.nbytes for g in model.graphs() for v in g.initializers.values() if v.const_value is not None
        )
        shapes = [tuple(v.const_value.shape) for v in model.graph.initializers.values() if v.const_value is not None]
    else:
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
            return False
        size = model.ByteSize()
        shapes = [tuple(t.dims) for t in model.graph.initializer]
    # the largest strategy and tile padding are not known here: bound them generously (4 pairs, 512 rows)
    for shape in shapes:
        if len(shape) == 2:
            size += 6 * 4 * 4 * max(_pad(int(shape[0]), 512) * int(shape[1]), _pad(int(shape[1]), 512) * int(shape[0]))
    return size <= EXTERNAL_DATA_LIMIT_BYTES


def _compile_file(
    source: Path | onnx.ModelProto,
    output,
    *,
    device,
    periphery,
    periphery_overrides,
    strategy,
    calibration,
    seed,
    chip,
    programming,
    force,
    input_ranges,
    placement=None,
    target=SIMULATION,
    label: str | None = None,
    allow_invalid: bool = False,
    shared_weights: str = "share",
    chip_state: str = CHIP_STATE_FULL,
):
    """:func:`compile_model` from a source file to an output file (``label`` names the source in errors).

    With a ModelProto as ``source`` and ``output=None`` (:func:`_fits_in_memory` models), everything stays in
    memory: returns ``(report, compiled onnx-ir model)``. The caller's proto is not modified.
    """
    in_memory = isinstance(source, onnx.ModelProto)
    label = label or str(source)
    if target not in TARGETS:
        raise ConfigError(f"target {target!r}: use one of {', '.join(TARGETS)}.")
    proto = source if in_memory else load_proto(source)
    if in_memory:
        check_structure(proto, label)
    check_source(proto, label, allow_invalid=allow_invalid, in_memory=in_memory, checker=False)
    out = None if in_memory else check_output_path(output, [source], force)
    dev, mapping, peri, feeds, ranges, notes = compile_settings(
        proto, device, periphery, periphery_overrides, strategy, calibration, input_ranges
    )
    upgraded = None
    if proto.opset_import and default_opset(proto) < MIN_OPSET:  # opset 7-12: upgraded on load, noted
        if not in_memory and external_data_files(proto, source):
            proto = load_proto(source, load_external_data=True)
        upgraded, note = upgrade_opset(proto, label)
        notes.append(note)
    source_problem = refuse_invalid(
        upgraded if upgraded is not None else proto if in_memory else source, label, allow_invalid
    )
    external = not in_memory and _needs_external_data(
        proto, source, len(mapping.significance), peri.tile_rows, 3 if chip_state == CHIP_STATE_FULL else 1
    )
    if external:
        data_file = out.parent / external_data_name(out)
        if data_file.resolve() in external_data_files(proto, source):
            raise OutputError(
                f"Output {out} would write its external data to {data_file}, which the source model "
                "reads; choose another output name."
            )
        notes.append(f"tensor data written beside the model to {data_file.name} (external data)")
    if source_problem is not None:
        notes.append(
            f"the source model itself fails onnx.checker's full check ({source_problem}); the compiled "
            "model is checked as strictly as its source allows"
        )
    shapes = {k: [1, *v.shape[1:]] for k, v in feeds.items()} if isinstance(feeds, dict) else None
    macs = node_macs(upgraded if upgraded is not None else proto, shapes)  # one calibration sample's shapes
    if upgraded is not None:
        irmodel = ir.from_proto(upgraded)
    elif in_memory:  # a copy: the passes must not touch the caller's tensors
        irmodel = ir.serde.deserialize_model(onnx.ModelProto.FromString(proto.SerializeToString()))
    else:
        irmodel = load_model(source)
    del upgraded
    if not in_memory:
        del proto  # only the onnx-ir model from here on: one copy of the source in memory
    with contextlib.nullcontext() if in_memory else atomic_output(out) as tmp:
        # a large output streams its conductance arrays, as they are made, straight into its external data
        # file (<name>.data beside the temporary model file; moved into place with it): bounded memory
        store = TensorStore(tmp.parent, external_data_name(out)) if external else None
        try:
            _run(
                compile_pipeline(
                    dev,
                    mapping,
                    peri,
                    feeds,
                    seed=seed,
                    chip=chip,
                    programming=programming,
                    store=store,
                    input_ranges=ranges,
                    placement=placement,
                    shared_weights=shared_weights,
                    macs=macs,
                    notes=notes,
                    deploy=target == DEPLOY,
                    label=label,
                    chip_state=chip_state,
                ),
                irmodel,
            )
            report = replace(irmodel.meta[REPORT_META], output=str(out or ""))
            if store is not None:
                store.adopt(irmodel)  # the source's other tensors join the same data file
                store.close()
            if tmp is not None:
                ir.save(irmodel, tmp)
            # the file as written, by path (any size, external data too), or the model in memory; no stricter
            # than the source passes
            if source_problem is None:
                _run(verify_pipeline(tmp), irmodel)
            elif checker_problem(proto if in_memory else source, full_check=False) is None:
                _run(verify_pipeline(tmp, full_check=False), irmodel)
            if source_problem is not None and tmp is not None and ort_problem(source) is None:
                problem = ort_problem(tmp)  # an invalid source that onnxruntime loads: so must its output
                if problem is not None:
                    raise UnsupportedModelError(
                        f"{label}: the model fails onnx.checker and its compiled form would "
                        f"not load in onnxruntime ({problem}); fix the source model."
                    )
        finally:
            if store is not None:
                store.close()
    if in_memory:
        logger.info("compiled %s in memory (%d analog layers)", label, report.totals["analog_layers"])
        return report, irmodel
    logger.info("wrote %s (%d analog layers)", out, report.totals["analog_layers"])
    return report


def _needs_external_data(proto, source: Path, pairs: int, tile_rows: int, arrays: int = 3) -> bool:
    """Whether the output must keep its tensor data in a file beside it.

    Yes when the source does, or when an upper bound of the output's size exceeds
    :data:`~anacompile.model_io.EXTERNAL_DATA_LIMIT_BYTES`: the source, plus for every 2-D initializer
    (a possible weight) ``arrays`` of g_target, g_prog and nu of ``pairs`` device pairs (2 float32 per pair,
    weight and array: 6 with the chip, 2 without), with rows padded to whole tiles.
    """
    files = external_data_files(proto, source)
    if files:
        return True
    size = source.stat().st_size
    for tensor in proto.graph.initializer:
        if len(tensor.dims) == 2:
            k, n = int(tensor.dims[0]), int(tensor.dims[1])
            padded = max(_pad(k, tile_rows) * n, _pad(n, tile_rows) * k)
            size += 2 * arrays * 4 * pairs * padded
    return size > EXTERNAL_DATA_LIMIT_BYTES


def _pad(k: int, tile_rows: int) -> int:
    return k if k <= tile_rows else -(-k // tile_rows) * tile_rows


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
