"""FeedNoisePass: main-graph layers read fed noise, subgraph layers bank slices at the documented offsets."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest

from anacompile import contract
from anacompile.crossbar.functions import NoiseSource, overload_name
from anacompile.runtime.passes import FeedNoisePass, StripChipStagePass
from anacompile.runtime.passes.noise_inputs import step_noise_offsets
from tests._support.passes import assert_idempotent, run_truthfully
from tests._support.session_passes import compiled, loaded


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("noise")


def _matmuls(graph: ir.Graph) -> list[tuple[ir.Graph, ir.Node]]:
    return [(g, n) for g in [graph, *graph.subgraphs()] for n in g if n.op_type == contract.ANALOG_MATMUL]


def test_main_graph_layers_are_fed_and_loop_body_layers_read_bank_slices(folder):
    _, model, layers, periphery = loaded(compiled(folder, "digits_lstm_hwa"))
    StripChipStagePass(layers)(model)
    overloads = {n.name: n.overload for _, n in _matmuls(model.graph)}
    assert run_truthfully(FeedNoisePass(layers, periphery), model)
    inputs = {v.name: v for v in model.graph.inputs}
    by_name = {layer.name: layer for layer in layers}
    seen = set()
    for g, node in _matmuls(model.graph):
        layer = by_name[node.name]
        seen.add(node.name)
        assert layer.fed == (g is model.graph)
        if layer.fed:  # the noise tensor itself: one input, the fed overload
            assert node.inputs[6] is inputs[f"{node.name}.{contract.NOISE}"]
            assert node.overload == overload_name(overloads[node.name] == contract.TILED, NoiseSource.FED)
        else:  # bank, start, end, the offsets computed in the body just before the node
            bank, start, end = node.inputs[6:9]
            assert bank is inputs[contract.NOISE_BANK] and node.overload == overloads[node.name]
            assert start.producer().op_type == "Mod" and end.producer().op_type == "Add"
            assert inputs[f"{node.name}.{contract.NOISE_START}"].dtype == ir.DataType.INT64
        gain = node.inputs[contract.OUT_GAIN_INPUT]  # calibrated output range: the gain stays the last input
        assert len(node.inputs) == contract.OUT_GAIN_INPUT + 1 and gain.name == f"{layer.weights}.{contract.OUT_GAIN}"
    assert seen == set(by_name) and {layer.fed for layer in layers} == {True, False}
    assert_idempotent(FeedNoisePass(layers, periphery), model)


def test_no_mvm_noise_changes_nothing(folder):
    _, model, layers, periphery = loaded(compiled(folder, "digits_mlp_hwa"))
    quiet = periphery.replace(read_noise=0.0, out_noise=0.0)
    assert not quiet.has_mvm_noise
    assert not run_truthfully(FeedNoisePass(layers, quiet), model)


@pytest.mark.parametrize("in_loop", [True, False])
def test_step_offsets_are_the_documented_slices(in_loop):
    """s_i = (start + i * step) mod (len(bank) - step + 1), step = vectors * cols; i = 0 outside a Loop."""
    vectors, k, cols, bank_len, start, steps = 3, 5, 4, 100, 57, 6
    f, i64 = ir.DataType.FLOAT, ir.DataType.INT64
    x = ir.Value(name="x", type=ir.TensorType(f), shape=ir.Shape([vectors, k]))
    bank = ir.Value(name="bank", type=ir.TensorType(f), shape=ir.Shape([bank_len]))
    s0 = ir.Value(name="s0", type=ir.TensorType(i64), shape=ir.Shape([1]))
    it = ir.Value(name="i", type=ir.TensorType(i64), shape=ir.Shape([]))
    cond = ir.Value(name="cond", type=ir.TensorType(ir.DataType.BOOL), shape=ir.Shape([]))
    probe = ir.node("Identity", [x], name="L")
    nodes, s_i, end = step_noise_offsets(probe, it if in_loop else None, cols, bank, s0)
    cond_out = ir.node("Identity", [cond])
    outs = [cond_out.outputs[0], ir.node("Identity", [s_i]).outputs[0], ir.node("Identity", [end]).outputs[0]]
    body_nodes = [*nodes, cond_out, *(o.producer() for o in outs[1:])]
    for v, dtype in zip(outs, (ir.DataType.BOOL, i64, i64), strict=True):
        v.type, v.shape = ir.TensorType(dtype), ir.Shape([] if dtype == ir.DataType.BOOL else [1])
    body = ir.Graph([it, cond], outs, nodes=body_nodes, name="body")
    trip = ir.node("Constant", [], attributes={"value": ir.tensor(np.array(steps, np.int64))})
    loop = ir.node("Loop", [trip.outputs[0], None], attributes={"body": ir.AttrGraph("body", body)}, num_outputs=2)
    for v in loop.outputs:
        v.type = ir.TensorType(i64)
    loop.outputs[0].name, loop.outputs[1].name = "starts", "ends"
    for n, node in enumerate([*body_nodes, trip]):  # one namespace for the body and the main graph
        for v in node.outputs:
            v.name = v.name or f"v{n}"
    graph = ir.Graph([x, bank, s0], list(loop.outputs), nodes=[trip, loop], name="g", opset_imports={"": 17})
    sess = ort.InferenceSession(
        ir.serde.serialize_model(ir.Model(graph, ir_version=10)).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    starts, ends = sess.run(
        None,
        {
            "x": np.zeros((vectors, k), np.float32),
            "bank": np.zeros(bank_len, np.float32),
            "s0": np.array([start], np.int64),
        },
    )
    step = vectors * cols
    i = np.arange(steps) if in_loop else np.zeros(steps, np.int64)
    np.testing.assert_array_equal(starts.ravel(), (start + i * step) % (bank_len - step + 1))
    np.testing.assert_array_equal(ends.ravel() - starts.ravel(), step)
