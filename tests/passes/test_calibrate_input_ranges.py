"""CalibrateInputRangesPass and SetInputRangesPass: static DAC input ranges per row tile."""

from __future__ import annotations

import numpy as np
import pytest

from anacompile.errors import ConfigError
from anacompile.passes import MarkAnalogOpsPass, PartitionWeightsPass
from anacompile.passes.calibrate_input_ranges import CalibrateInputRangesPass, SetInputRangesPass
from tests._support.passes import STANDARD, assert_idempotent, mlp, op_counts, plans, run_truthfully

STATIC = STANDARD.replace(input_range="static", tile_rows=32)


def _partitioned():
    model = mlp()
    MarkAnalogOpsPass()(model)
    PartitionWeightsPass(STATIC)(model)
    return model


def test_ranges_are_the_max_abs_input_of_each_row_tile():
    model = _partitioned()
    x = np.random.default_rng(1).standard_normal((50, 64)).astype(np.float32)
    x[:, 32:] *= 3  # the second row tile sees larger inputs
    counts = op_counts(model)
    assert run_truthfully(CalibrateInputRangesPass(STATIC, {"x": x}), model)
    assert op_counts(model) == counts  # the probe outputs are added to a copy, not to the model
    assert [v.name for v in model.graph.outputs] == ["y", "gram"]
    fc1 = plans(model)["fc1"]
    np.testing.assert_allclose(fc1.in_range.ravel(), [np.abs(x[:, :32]).max(), np.abs(x[:, 32:]).max()], rtol=1e-6)
    r = np.maximum(x @ plans(model)["fc1"].weight, 0)  # Relu(x W1): the input of fc2 (one row tile of 32)
    np.testing.assert_allclose(plans(model)["fc2"].in_range.ravel(), [np.abs(r).max()], rtol=1e-4)
    assert_idempotent(CalibrateInputRangesPass(STATIC, {"x": x}), model)


def test_absmax_periphery_needs_no_ranges():
    model = _partitioned()
    assert not run_truthfully(CalibrateInputRangesPass(STATIC.replace(input_range="absmax"), None), model)
    assert all(plan.in_range is None for plan in plans(model).values())


def test_without_data_the_range_is_full_scale():
    model = _partitioned()
    assert run_truthfully(CalibrateInputRangesPass(STATIC, None), model)
    assert all(np.all(plan.in_range == 1.0) for plan in plans(model).values())
    assert_idempotent(CalibrateInputRangesPass(STATIC, None), model)


def test_provided_ranges_win_and_are_checked():
    model = _partitioned()
    assert run_truthfully(SetInputRangesPass({"fc1": [2.0, 3.0], "fc2": 1.5}), model)
    np.testing.assert_array_equal(plans(model)["fc1"].in_range.ravel(), [2.0, 3.0])
    np.testing.assert_array_equal(plans(model)["fc2"].in_range.ravel(), [1.5])
    assert_idempotent(SetInputRangesPass({"fc1": [2.0, 3.0], "fc2": 1.5}), model)
    assert not run_truthfully(CalibrateInputRangesPass(STATIC, None), model)  # nothing left to calibrate
    with pytest.raises(ConfigError, match="unknown layer"):
        SetInputRangesPass({"fc9": 1.0})(_partitioned())
    with pytest.raises(ConfigError, match="fc2"):
        SetInputRangesPass({"fc1": 1.0}, require_all=True)(_partitioned())
    with pytest.raises(ConfigError, match="one per row tile"):
        SetInputRangesPass({"fc1": [1.0, 2.0, 3.0]})(_partitioned())
