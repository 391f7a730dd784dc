"""Typed stage records of a layer plan: each written by one pass, once, after the records it requires."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from anacompile.crossbar.periphery import PERIPHERY_PRESETS
from anacompile.errors import ConfigError
from anacompile.mapping import SinglePairMapping
from anacompile.passes import MapConductancesPass, MarkAnalogOpsPass, PartitionWeightsPass, ProgramChipPass
from anacompile.passes._layer import (
    CalibrationSample,
    ChipState,
    Conductances,
    DigitalBias,
    InputRanges,
    LayerPlan,
    LayerStrategy,
    NoCalibrationData,
    OutputGains,
    StageRecord,
    Tiling,
)
from anacompile.passes.apply_placement import ApplyPlacementPass
from anacompile.passes.calibrate_input_ranges import (
    CalibrateInputRangesPass,
    CalibrateOutputRangesPass,
    SetInputRangesPass,
)
from anacompile.passes.pipeline import analysis_pipeline
from tests._support.passes import PCM, STANDARD, mlp, plans

M = SinglePairMapping()
RECORDS = (
    LayerStrategy,
    Tiling,
    InputRanges,
    CalibrationSample,
    NoCalibrationData,
    Conductances,
    OutputGains,
    ChipState,
)
PASSES = {
    LayerStrategy: [ApplyPlacementPass],
    Tiling: [PartitionWeightsPass],
    InputRanges: [SetInputRangesPass, CalibrateInputRangesPass],
    CalibrationSample: [CalibrateInputRangesPass],
    NoCalibrationData: [CalibrateInputRangesPass],
    Conductances: [MapConductancesPass],
    OutputGains: [CalibrateOutputRangesPass],
    ChipState: [ProgramChipPass],
}


def test_every_record_names_the_pass_that_writes_it_and_its_predecessors():
    assert set(RECORDS) == set(StageRecord.__subclasses__())
    for kind in RECORDS:
        assert dataclasses.is_dataclass(kind) and kind.__dataclass_params__.frozen, kind
        writers = [p.__name__ for p in PASSES[kind]]
        assert kind.written_by == " or ".join(writers), kind
    # the chain after the planner: tiling first, then ranges / conductances, then gains / the chip
    assert Tiling.requires == () and LayerStrategy.requires == ()
    assert InputRanges.requires == CalibrationSample.requires == Conductances.requires == (Tiling,)
    assert NoCalibrationData.requires == (Tiling,)
    assert ChipState.requires == (Conductances,)
    assert set(OutputGains.requires) == {Conductances, CalibrationSample}
    assert "extra" not in {f.name for f in dataclasses.fields(LayerPlan)}


def test_a_pass_run_before_its_predecessor_names_the_pass_to_run_first():
    model = mlp()
    MarkAnalogOpsPass()(model)
    with pytest.raises(ConfigError, match=r"layer 'fc1': MapConductancesPass needs .*Tiling.*run PartitionWeightsPass"):
        MapConductancesPass(PCM, M)(model)
    PartitionWeightsPass(STANDARD)(model)
    with pytest.raises(ConfigError, match=r"ProgramChipPass needs the Conductances record of MapConductancesPass"):
        ProgramChipPass(PCM, M, STANDARD.drift_compensation)(model)


def test_a_record_is_written_once():
    model = mlp()
    MarkAnalogOpsPass()(model)
    PartitionWeightsPass(STANDARD)(model)
    fc1 = plans(model)["fc1"]
    assert fc1.get(Tiling) == Tiling(n_tiles=1, tile_rows=64, n_col_tiles=1)
    assert (fc1.n_tiles, fc1.tile_rows, fc1.n_col_tiles) == (1, 64, 1)
    with pytest.raises(ValueError, match="Tiling is already recorded"):
        fc1.write(Tiling(2, 32, 1))
    assert fc1.get(Tiling).n_tiles == 1


def test_the_analysis_pipeline_leaves_each_record_once_and_consumes_the_calibration_sample():
    peri = PERIPHERY_PRESETS["calibrated"].replace(tile_rows=32)
    x = np.random.default_rng(0).standard_normal((40, 64)).astype(np.float32)
    model = mlp()
    analysis_pipeline(PCM, M, peri, [{"x": x}])(model)
    for name in ("fc1", "fc2"):
        plan = plans(model)[name]
        assert set(plan.records) == {Tiling, InputRanges, Conductances, OutputGains, ChipState}, name
        assert plan.out_gain.shape == (plan.n_tiles,) and plan.in_range.shape == (plan.n_tiles, 1, 1)
        assert plan.g_prog.shape == plan.g_target.shape and plan.col_scale.shape == (plan.n_tiles, 1, plan.n_out)


def _gemm_with_runtime_c() -> ir.Model:
    w = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "c"], ["y"], beta=0.25, name="g")],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8]),
            helper.make_tensor_value_info("c", TensorProto.FLOAT, ["N", 4]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(w, "W")],
    )
    return ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_a_runtime_bias_is_typed_with_its_scale():
    model = _gemm_with_runtime_c()
    MarkAnalogOpsPass()(model)
    plan = plans(model)["g"]
    assert plan.bias is None and plan.op is None
    assert plan.digital_bias == DigitalBias(model.graph.inputs[1], 0.25)
    assert plan.io_dtype == ir.DataType.FLOAT
