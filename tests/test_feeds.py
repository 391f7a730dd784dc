"""Feeds cut into runs from the model's declared input shapes (anacompile/feeds.py)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from anacompile.feeds import feed_batches, model_input_specs


def _model(batch_dim: int | str | None) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch_dim, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch_dim, 3])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_negative_batch_dim_is_dynamic_and_every_sample_is_fed():
    # Paddle's exporter writes dim_value -1 for a dynamic axis (rapidocr's MobileNetV3 classifier does):
    # it must not be read as a fixed batch of -1, which cut the feeds into no runs at all.
    specs = model_input_specs(_model(-1))
    assert specs[0][1] == [None, 3]
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    runs = feed_batches({"x": x}, specs, 4)
    assert [r["x"].shape[0] for r in runs] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([r["x"] for r in runs]), x)


def test_a_fixed_batch_of_one_feeds_one_sample_per_run():
    specs = model_input_specs(_model(1))
    assert specs[0][1] == [1, 3]
    runs = feed_batches({"x": np.zeros((5, 3), np.float32)}, specs, 4)
    assert [r["x"].shape[0] for r in runs] == [1] * 5


def test_a_symbolic_batch_dim_takes_the_requested_batch():
    specs = model_input_specs(_model("N"))
    assert specs[0][1] == [None, 3]
    runs = feed_batches({"x": np.zeros((9, 3), np.float32)}, specs, 4)
    assert [r["x"].shape[0] for r in runs] == [4, 4, 1]
