"""Placement and metrics on a model with a fixed batch of 1, a recurrent-state input and a scalar input.

The model is a VAD-like stand-in built from the digits MLP (models/train_digits_mlp.py): inputs ``x``
(1, 64), ``state`` (2, 1, 16) and ``sr`` (a 0-d int64, as silero-vad takes its sample rate); outputs the
class scores (1, 10) and ``stateN`` = state + 1. The state and the rate reach the output only through a
product with zero, so the FP32 function is the MLP's. Data and calibration come as an .npz whose ``state``
and ``sr`` arrays stack whole inputs ((N, 2, 1, 16), (N,)), as a list of feed dicts, and as a user's
metric file that carries the state from sample to sample.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from anacompile.evaluate.datasets import load_digits_split

N = 60
METRIC_FILE = """
import numpy as np
from anacompile.evaluate.datasets import load_digits_split

TEST = load_digits_split()[1]


def streamed_accuracy(run):
    state, hits = np.zeros((2, 1, 16), np.float32), 0
    for x, y in zip(TEST.x[:{n}], TEST.y[:{n}]):
        out, state = run({{"x": x[None].astype(np.float32), "state": state, "sr": np.array(16000, np.int64)}})
        hits += int(np.argmax(out) == y)
    assert state[0, 0, 0] > 0  # the state came back and was fed again
    return hits / {n}
"""


def _stateful(source):
    src = {t.name: numpy_helper.to_array(t) for t in onnx.load(source).graph.initializer}
    inits = [
        numpy_helper.from_array(src["fc1.weight"].T.copy(), "w1"),
        numpy_helper.from_array(src["fc1.bias"], "b1"),
        numpy_helper.from_array(src["fc2.weight"].T.copy(), "w2"),
        numpy_helper.from_array(src["fc2.bias"], "b2"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m1"], name="fc1"),
        helper.make_node("Add", ["m1", "b1"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["h"]),
        helper.make_node("MatMul", ["h", "w2"], ["m2"], name="fc2"),
        helper.make_node("Add", ["m2", "b2"], ["a2"]),
        helper.make_node("ReduceSum", ["state"], ["ssum"], keepdims=0),
        helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["ssum", "srf"], ["aux"]),
        helper.make_node("Mul", ["aux", "zero"], ["aux0"]),
        helper.make_node("Add", ["a2", "aux0"], ["y"]),
        helper.make_node("Add", ["state", "one"], ["stateN"]),
    ]
    graph = helper.make_graph(
        nodes,
        "stateful",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, 1, 16]),
            helper.make_tensor_value_info("sr", TensorProto.INT64, []),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10]),
            helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, 1, 16]),
        ],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def files(tmp_path_factory, mlp_fp):
    folder = tmp_path_factory.mktemp("batch1")
    onnx.save(_stateful(mlp_fp), folder / "vadlike.onnx")
    train, test = load_digits_split()
    for name, split in (("cal", train), ("data", test)):
        np.savez(
            folder / f"{name}.npz",
            x=split.x[:N].astype(np.float32),
            state=np.zeros((N, 2, 1, 16), np.float32),
            sr=np.full(N, 16000, np.int64),
            labels=split.y[:N],
        )
    (folder / "metric.py").write_text(METRIC_FILE.format(n=N))
    return folder


def test_feed_batches_cut_whole_inputs_one_sample_per_run():
    from anacompile.feeds import feed_batches

    specs = [("x", [1, 64], np.float32), ("state", [2, None, 16], np.float32), ("sr", [], np.int64)]
    feeds = {"x": np.zeros((5, 64)), "state": np.zeros((5, 2, 1, 16)), "sr": np.arange(5)}
    runs = feed_batches(feeds, specs, batch=64)
    assert len(runs) == 5 and runs[3]["x"].shape == (1, 64) and runs[3]["state"].shape == (2, 1, 16)
    assert runs[3]["sr"].shape == () and int(runs[3]["sr"]) == 3
    batched = feed_batches({"x": np.zeros((130, 64))}, [("x", [None, 64], np.float32)], batch=64)
    assert [r["x"].shape[0] for r in batched] == [64, 64, 2]


def test_cli_placement_and_evaluate_on_a_batch1_stateful_model(files):
    from anacompile.cli import main

    src, cal, data = files / "vadlike.onnx", files / "cal.npz", files / "data.npz"
    out = files / "placed.onnx"
    rc = main(
        [
            "compile",
            str(src),
            "-o",
            str(out),
            "--calibration",
            str(cal),
            "--accuracy-budget",
            "0.02",
            "--at",
            "1d",
            "--metric",
            f"{files / 'metric.py'}:streamed_accuracy",
            "--chips",
            "2",
            "--verify-chips",
            "3",
            "--json",
            str(files / "placement.json"),
        ]
    )
    assert rc == 0
    doc = json.loads((files / "placement.json").read_text())
    assert doc["meets_budget"] and doc["analog_mac_share"] > 0 and doc["baseline"] > 0.9
    assert doc["verified_lcb"] >= doc["target"] and doc["verify_chips"] == 3 and doc["rounds"][-1]["passed"]
    # the built-in metric over the .npz (whole-input state and rate arrays): one sample per run
    from anacompile.evaluate.monte_carlo import evaluate

    r = evaluate(out, data=str(data), times="1d", chips=2)
    assert r.metric == "accuracy" and r.baseline == pytest.approx(doc["baseline"])
    # calibration as a list of feed dicts compiles to the same plan as the .npz
    from anacompile.compiler import compile_model

    arrays = np.load(cal)
    feeds = [{"x": arrays["x"][i : i + 1], "state": arrays["state"][i], "sr": arrays["sr"][i]} for i in range(N)]
    a, b = files / "a.onnx", files / "b.onnx"
    compile_model(src, a, calibration=str(cal))
    compile_model(src, b, calibration=feeds)
    assert a.read_bytes() == b.read_bytes()
