"""The compiler's pass pipeline, built in one place."""

from __future__ import annotations

import os

import numpy as np
import onnx_ir as ir

from anacompile.crossbar.periphery import Periphery
from anacompile.mapping import ConductanceMapping
from anacompile.passes._tensor_store import TensorStore
from anacompile.passes.add_analog_functions import AddAnalogFunctionsPass
from anacompile.passes.apply_placement import ApplyPlacementPass
from anacompile.passes.calibrate_input_ranges import (
    CalibrateInputRangesPass,
    CalibrateOutputRangesPass,
    SetInputRangesPass,
)
from anacompile.passes.conv import SplitGroupedConvsPass
from anacompile.passes.deploy_form import MakeDeployFormPass
from anacompile.passes.fold_constant_weights import FoldConstantWeightsPass
from anacompile.passes.map_conductances import MapConductancesPass
from anacompile.passes.mark_analog_ops import MarkAnalogOpsPass
from anacompile.passes.partition_weights import PartitionWeightsPass
from anacompile.passes.program_chip import ProgramChipPass
from anacompile.passes.rewrite_to_analog_ops import RewriteToAnalogOpsPass
from anacompile.passes.verify_analog_model import VerifyAnalogModelPass

__all__ = ["analysis_pipeline", "deploy_pipeline", "emit_pipeline", "verify_pipeline"]


def analysis_pipeline(device, mapping: ConductanceMapping, periphery: Periphery,
                      calibration_feeds: dict[str, np.ndarray] | None, seed: int = 0, chip: int = 0,
                      programming: str = "gaussian", store: TensorStore | None = None,
                      input_ranges: dict | None = None, placement=None,
                      shared_weights: str = "share") -> ir.passes.PassManager:
    """Fold weight chains, split grouped convs, find analog ops, partition, calibrate, map and program.

    With a ``store``, the conductance arrays of every layer go to its file as they are made, so
    memory stays bounded by one layer (large models, :mod:`anacompile.passes._tensor_store`). A
    ``placement`` (:class:`~anacompile.passes.apply_placement.Placement`) keeps layers digital and sets
    per-layer strategies right after the analog ops are found. ``shared_weights``: ``share`` (a stored weight
    read by several ops is programmed once) or ``replicate``.
    """
    return ir.passes.PassManager([
        FoldConstantWeightsPass(),
        SplitGroupedConvsPass(),
        MarkAnalogOpsPass(shared_weights),
        *([ApplyPlacementPass(placement)] if placement else []),
        PartitionWeightsPass(periphery),
        *([SetInputRangesPass(input_ranges, require_all=calibration_feeds is None)] if input_ranges else []),
        CalibrateInputRangesPass(periphery, calibration_feeds),
        MapConductancesPass(device, mapping, store=store),
        CalibrateOutputRangesPass(device, mapping, periphery),
        ProgramChipPass(device, mapping, periphery.drift_compensation, seed=seed, chip=chip, method=programming,
                        store=store),
    ], early_stop=False)


def emit_pipeline(device, mapping: ConductanceMapping, periphery: Periphery, seed: int = 0,
                  chip: int = 0, verify: bool = True) -> ir.passes.PassManager:
    """Rewrite to analog ops, add their functions, verify with the full ONNX checker (in memory).

    ``verify=False`` leaves the check to :func:`verify_pipeline` on the saved file (what the compiler does).
    """
    return ir.passes.PassManager([
        RewriteToAnalogOpsPass(device, mapping, periphery, seed=seed, chip=chip),
        AddAnalogFunctionsPass(periphery, periphery.drift_compensation, device),
        *([VerifyAnalogModelPass()] if verify else []),
    ], early_stop=False)


def deploy_pipeline() -> ir.passes.PassManager:
    """The deployment form (:mod:`anacompile.passes.deploy_form`), after :func:`emit_pipeline`."""
    return ir.passes.PassManager([MakeDeployFormPass()], early_stop=False)


def verify_pipeline(path: str | os.PathLike[str] | None, full_check: bool = True) -> ir.passes.PassManager:
    """Check the saved compiled model by path with the ONNX checker (any size, external data too); with
    ``path=None``, the model in memory."""
    return ir.passes.PassManager([VerifyAnalogModelPass(path, full_check=full_check)], early_stop=False)
