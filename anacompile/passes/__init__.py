"""Compiler passes over onnx-ir models, one job each, composed in :mod:`anacompile.passes.pipeline`.

Every pass is a public ``onnx_ir.passes.InPlacePass``. :func:`default_pipeline` returns the whole compiler as
one ``onnx_ir.passes.PassManager`` (the order is :func:`anacompile.passes.pipeline.compile_pipeline`'s), to run
between the passes of other onnx-ir or onnxscript pipelines; ``compile_model`` runs the same pipeline.
"""

from anacompile.passes.add_analog_functions import AddAnalogFunctionsPass
from anacompile.passes.calibrate_input_ranges import CalibrateInputRangesPass
from anacompile.passes.compile_report import CountMacsPass, RecordLayerReportsPass, WriteCompileReportPass
from anacompile.passes.conv import SplitGroupedConvsPass
from anacompile.passes.deploy_form import MakeDeployFormPass
from anacompile.passes.fold_constant_weights import FoldConstantWeightsPass
from anacompile.passes.map_conductances import MapConductancesPass
from anacompile.passes.mark_analog_ops import MarkAnalogOpsPass
from anacompile.passes.partition_weights import PartitionWeightsPass
from anacompile.passes.pipeline import default_pipeline
from anacompile.passes.program_chip import ProgramChipPass
from anacompile.passes.rewrite_to_analog_ops import RewriteToAnalogOpsPass
from anacompile.passes.verify_analog_model import VerifyAnalogModelPass

__all__ = [
    "AddAnalogFunctionsPass",
    "CalibrateInputRangesPass",
    "CountMacsPass",
    "FoldConstantWeightsPass",
    "MakeDeployFormPass",
    "MapConductancesPass",
    "MarkAnalogOpsPass",
    "PartitionWeightsPass",
    "ProgramChipPass",
    "RecordLayerReportsPass",
    "RewriteToAnalogOpsPass",
    "SplitGroupedConvsPass",
    "VerifyAnalogModelPass",
    "WriteCompileReportPass",
    "default_pipeline",
]
