"""Many (chip, t) pairs in one onnxruntime call (runtime/chip_batch.py): bit for bit one pair per call."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from anacompile.compiler import compile_model
from anacompile.errors import ConfigError, UnsupportedModelError
from anacompile.evaluate.datasets import load_digits_split
from anacompile.evaluate.monte_carlo import evaluate
from anacompile.runtime import chip_batch
from anacompile.runtime.chip_batch import ChipBatch, batch_obstacle, pair_bytes, pairs_per_call
from anacompile.runtime.session import AnalogSession
from tests.conftest import MODELS


def _pairs(session, chips, times):
    states = []
    for chip in chips:
        session.program(chip)
        for t in times:
            session.set_time(t)
            states.append(session.snapshot())
    return states


def _one_by_one(session, chips, times, feeds):
    outs = []
    for chip in chips:
        session.program(chip)
        for t in times:
            session.set_time(t)
            outs.append(session.run(feeds))
    return outs


@pytest.mark.parametrize(
    "overrides",
    [
        None,  # calibrated periphery: DAC, read noise, IR drop, output noise, ADC with calibrated gains
        ["tile_rows=24"],  # tiled layers (the pair-axis overload of the tiled body)
        ["tile_rows=24", "bound_management=iterative", "bm_max_halvings=2"],  # one noise slab per pass
        ["read_noise=0", "ir_drop=0"],  # fed noise pre-scaled by the output-noise sigma
    ],
)
def test_batched_pairs_are_bit_identical_to_one_pair_per_call(tmp_path, mlp_hwa, overrides):
    out = tmp_path / "m.onnx"
    compile_model(mlp_hwa, out, calibration="digits", periphery_overrides=overrides)
    s = AnalogSession(out, chip_seed=None)
    feeds = {"input": load_digits_split()[1].x[:40]}
    chips, times = [0, 1, 2], [1.0, 86400.0]
    reference = _one_by_one(s, chips, times, feeds)
    batch = s.chip_batch()
    together = batch.run(_pairs(s, chips, times), feeds)
    states = _pairs(s, chips, times)
    order = [4, 0, 5, 2]  # another grouping and order: the pairs' outputs do not depend on it
    regrouped = dict(zip(order, batch.run([states[i] for i in order], feeds), strict=True))
    regrouped.update(dict(zip([1, 3], batch.run([states[1], states[3]], feeds), strict=True)))
    for p, ref in enumerate(reference):
        for a, b, c in zip(together[p], regrouped[p], ref, strict=True):
            assert np.array_equal(a, c) and np.array_equal(b, c)
    assert not np.array_equal(reference[0][0], reference[2][0])  # the pairs differ (noise, drift, chip)
    second = batch.run(states[:2], feeds)  # a pair's stream goes on: its second run has fresh noise
    assert not np.array_equal(second[0][0], together[0][0])


def test_evaluate_gives_the_same_json_with_many_pairs_per_call(monkeypatch, compiled_mlp):
    calls = []
    original = ChipBatch.run
    monkeypatch.setattr(
        ChipBatch, "run", lambda self, pairs, *a, **k: calls.append(len(pairs)) or original(self, pairs, *a, **k)
    )
    one = evaluate(compiled_mlp, "digits", "1s,1d,1y", chips=5, batch_memory_mb=0).to_dict()
    assert not calls
    many = evaluate(compiled_mlp, "digits", "1s,1d,1y", chips=5, batch_memory_mb=64).to_dict()
    assert calls and max(calls) > 1  # pairs really shared calls
    assert json.dumps(many) == json.dumps(one)
    calls.clear()  # a bound of 6 pairs: groups of 2 chips (6 pairs per call), then the last chip's 3
    per = pair_bytes(AnalogSession(compiled_mlp, 0), {"input": load_digits_split()[1].x})
    small = evaluate(compiled_mlp, "digits", "1s,1d,1y", chips=5, batch_memory_mb=6.5 * per / 2**20).to_dict()
    assert calls == [6, 6, 3]
    assert json.dumps(small) == json.dumps(one)


def test_evaluate_of_the_digits_cnn_gives_the_same_json_with_many_pairs_per_call(monkeypatch, tmp_path):
    calls = []
    original = ChipBatch.run
    monkeypatch.setattr(
        ChipBatch, "run", lambda self, pairs, *a, **k: calls.append(len(pairs)) or original(self, pairs, *a, **k)
    )
    out = tmp_path / "cnn.onnx"  # abs-max input ranges: the patch path, batched
    compile_model(MODELS / "digits_cnn_hwa.onnx", out, calibration="digits", periphery_overrides=["input_range=absmax"])
    static = AnalogSession(out, 0, periphery_overrides=["input_range=static"])  # convolutions as native Convs
    assert "native Convs" in batch_obstacle(static)  # a Conv kernel cannot vary per sample
    one = evaluate(out, "digits", "1s,1y", chips=2, batch_memory_mb=0).to_dict()
    many = evaluate(out, "digits", "1s,1y", chips=2, batch_memory_mb=4096).to_dict()
    assert calls and max(calls) > 1
    assert json.dumps(many) == json.dumps(one)
    s = AnalogSession(out, 0)
    assert batch_obstacle(s) is None
    s.recalibrate_batchnorm({"input": load_digits_split()[1].x[:16].reshape(16, 1, 8, 8)})
    assert "AdaBS" in batch_obstacle(s)  # per-pair BatchNorm statistics cannot share a call


def test_the_pair_count_follows_the_memory_bound(compiled_mlp):
    s = AnalogSession(compiled_mlp, 0)
    feeds = {"input": load_digits_split()[1].x[:64]}
    per = pair_bytes(s, feeds)
    assert per > 4 * (64 * 64 + 64 * 128)  # at least the first layer's input and output
    assert pairs_per_call(s, feeds, 10 * per / 2**20, 100) == 10
    assert pairs_per_call(s, feeds, 10 * per / 2**20, 3) == 3
    assert pairs_per_call(s, feeds, 0.5 * per / 2**20, 100) == 1
    assert pairs_per_call(s, feeds, 3.5 * per / 2**20, 100) == 1  # under MIN_PAIRS_PER_CALL: one per call
    assert pairs_per_call(s, feeds, 3.5 * per / 2**20, 3) == 3  # unless that is all the pairs
    assert pairs_per_call(s, feeds, 0, 100) == 1
    fits = int(chip_batch.default_batch_memory_mb() * 2**20 // per)  # the default bound: one core's L2 cache
    assert pairs_per_call(s, feeds, None, 100) == (min(100, fits) if fits >= chip_batch.MIN_PAIRS_PER_CALL else 1)
    with pytest.raises(ConfigError, match="batch_memory_mb"):
        pairs_per_call(s, feeds, -1, 100)
    with pytest.raises(ConfigError, match="batch-memory"):
        evaluate(compiled_mlp, "digits", "1s", chips=2, batch_memory_mb=float("nan"))


def _batch_mixing_model(path, width: int = 10):
    """x W (64 x width), minus its mean over the batch: samples are not independent along axis 0."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((64, width)).astype(np.float32), "W")
    nodes = [
        helper.make_node("MatMul", ["input", "W"], ["h"], name="fc"),
        helper.make_node("ReduceMean", ["h"], ["m"], axes=[0], keepdims=1),
        helper.make_node("Sub", ["h", "m"], ["logits"]),
    ]
    g = helper.make_graph(
        nodes,
        "mix",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", width])],
        [w],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_a_model_that_mixes_samples_runs_one_pair_per_call(tmp_path):
    src = tmp_path / "mix.onnx"
    _batch_mixing_model(src)
    out = tmp_path / "mix.analog.onnx"
    compile_model(src, out, calibration="digits")
    s = AnalogSession(out, 0)
    feeds = {"input": load_digits_split()[1].x[:32]}
    with pytest.raises(UnsupportedModelError, match="mixes samples along axis 0"):
        s.chip_batch().run([s.snapshot(), s.snapshot()], feeds)
    assert pairs_per_call(s, feeds, 1024, 8) == 1
    one = evaluate(out, "digits", "1s,1d", chips=2, metric="agreement", batch_memory_mb=0).to_dict()
    assert json.dumps(evaluate(out, "digits", "1s,1d", chips=2, metric="agreement").to_dict()) == json.dumps(one)


def test_recurrent_layers_are_not_batched(tmp_path):
    out = tmp_path / "lstm.onnx"
    compile_model(MODELS / "digits_lstm_hwa.onnx", out, calibration="digits")
    s = AnalogSession(out, 0)
    assert "Loop bodies" in batch_obstacle(s)
    with pytest.raises(UnsupportedModelError, match="cannot share"):
        ChipBatch(s)
    assert pairs_per_call(s, {"input": load_digits_split()[1].x[:8].reshape(8, 8, 8)}, 1024, 8) == 1


def test_placement_configs_score_the_same_with_many_pairs_per_call(monkeypatch, compiled_mlp):
    from anacompile.placement._evaluator import DIGITAL, ConfigEvaluator

    calls = []
    original = ChipBatch.run
    monkeypatch.setattr(
        ChipBatch, "run", lambda self, pairs, *a, **k: calls.append(len(pairs)) or original(self, pairs, *a, **k)
    )
    one = ConfigEvaluator(compiled_mlp, "accuracy", "digits", chips=3, batch_memory_mb=0)
    first, last = one.names[0], one.names[-1]
    configs = [{}, {first: DIGITAL}, {last: "dual"}, {first: DIGITAL, last: "dual"}]
    expected = one.scores(configs, [1.0, 86400.0])
    assert not calls
    many = ConfigEvaluator(compiled_mlp, "accuracy", "digits", chips=3, batch_memory_mb=64)
    got = many.scores(configs, [1.0, 86400.0])
    assert calls and max(calls) > 1
    assert np.array_equal(got, expected)
    assert many.done == one.done == len(configs) * 3 * 2
    assert not np.array_equal(expected[0], expected[1])  # the configs differ


def test_mvm_error_gives_the_same_json_with_many_pairs_per_call(compiled_mlp):
    from anacompile.evaluate.mvm_error import mvm_error

    one = mvm_error(compiled_mlp, times="1s,1d", chips=3, metric="accuracy", batch_memory_mb=0).to_dict()
    many = mvm_error(compiled_mlp, times="1s,1d", chips=3, metric="accuracy", batch_memory_mb=64).to_dict()
    assert json.dumps(many) == json.dumps(one)
