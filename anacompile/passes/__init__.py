"""Compiler passes over onnx-ir models, one job each, composed in :mod:`anacompile.passes.pipeline`."""

from anacompile.passes import recurrent  # noqa: F401  (registers the LSTM/GRU/RNN handlers and emitter)
from anacompile.passes.add_analog_functions import AddAnalogFunctionsPass
from anacompile.passes.calibrate_input_ranges import CalibrateInputRangesPass
from anacompile.passes.conv import SplitGroupedConvsPass  # also registers the Conv/ConvTranspose handlers
from anacompile.passes.fold_constant_weights import FoldConstantWeightsPass
from anacompile.passes.map_conductances import MapConductancesPass
from anacompile.passes.mark_analog_ops import MarkAnalogOpsPass
from anacompile.passes.partition_weights import PartitionWeightsPass
from anacompile.passes.program_chip import ProgramChipPass
from anacompile.passes.rewrite_to_analog_ops import RewriteToAnalogOpsPass
from anacompile.passes.verify_analog_model import VerifyAnalogModelPass

__all__ = [
    "AddAnalogFunctionsPass",
    "CalibrateInputRangesPass",
    "FoldConstantWeightsPass",
    "MapConductancesPass",
    "MarkAnalogOpsPass",
    "PartitionWeightsPass",
    "ProgramChipPass",
    "RewriteToAnalogOpsPass",
    "SplitGroupedConvsPass",
    "VerifyAnalogModelPass",
]
