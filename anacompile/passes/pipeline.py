"""The compiler's pass pipeline, built in one place."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from anacompile.crossbar.periphery import Periphery
from anacompile.mapping import ConductanceMapping
from anacompile.passes.add_analog_functions import AddAnalogFunctionsPass
from anacompile.passes.calibrate_input_ranges import CalibrateInputRangesPass
from anacompile.passes.map_conductances import MapConductancesPass
from anacompile.passes.mark_analog_ops import MarkAnalogOpsPass
from anacompile.passes.partition_weights import PartitionWeightsPass
from anacompile.passes.program_chip import ProgramChipPass
from anacompile.passes.rewrite_to_analog_ops import RewriteToAnalogOpsPass
from anacompile.passes.verify_analog_model import VerifyAnalogModelPass

__all__ = ["analysis_pipeline", "emit_pipeline"]


def analysis_pipeline(device, mapping: ConductanceMapping, periphery: Periphery,
                      calibration_feeds: dict[str, np.ndarray] | None, seed: int = 0, chip: int = 0,
                      programming: str = "gaussian") -> ir.passes.PassManager:
    """Find analog ops, partition onto tiles, calibrate input ranges, map and program the weights."""
    return ir.passes.PassManager([
        MarkAnalogOpsPass(),
        PartitionWeightsPass(periphery),
        CalibrateInputRangesPass(periphery, calibration_feeds),
        MapConductancesPass(device, mapping),
        ProgramChipPass(device, mapping, periphery.drift_compensation, seed=seed, chip=chip, method=programming),
    ], early_stop=False)


def emit_pipeline(device, mapping: ConductanceMapping, periphery: Periphery, seed: int = 0,
                  chip: int = 0) -> ir.passes.PassManager:
    """Rewrite to analog ops, add their functions, verify with the full ONNX checker."""
    return ir.passes.PassManager([
        RewriteToAnalogOpsPass(device, mapping, periphery, seed=seed, chip=chip),
        AddAnalogFunctionsPass(periphery, periphery.drift_compensation),
        VerifyAnalogModelPass(),
    ], early_stop=False)
