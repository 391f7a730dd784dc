"""StripChipStagePass: the chip stage's outputs become fed inputs; fed the file's own chip stage, the stripped
model computes exactly what the file computes."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest

from anacompile import contract
from anacompile.evaluate.datasets import load_digits_split
from anacompile.runtime.passes import ApplyPeripheryPass, AttachLayerScalesPass, StripChipStagePass
from tests._support.passes import assert_idempotent, run_truthfully
from tests._support.session_passes import compiled, loaded

QUIET = ["read_noise=0", "out_noise=0"]  # no per-MVM noise: the file's and the stripped model's outputs compare


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("strip")


def _ort(proto: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def test_expected_graph_and_idempotent(folder):
    _, model, layers, _ = loaded(compiled(folder, "digits_lstm_hwa"))
    chip_inits = {f"{layer.name}.{s}" for layer in layers for s in (contract.G_PROG, contract.NU, contract.GDC_REF)}
    assert chip_inits <= set(model.graph.initializers)
    assert run_truthfully(StripChipStagePass(layers), model)
    assert not [n for n in model.graph if n.op_type == contract.CHIP_WEIGHTS]
    inputs = {v.name: v for v in model.graph.inputs}
    for layer in layers:
        for suffix, shape in zip((contract.W_EFF, contract.SCALE), layer.state_shapes, strict=True):
            value = inputs[f"{layer.name}.{suffix}"]
            assert list(value.shape) == shape and value.dtype == ir.DataType.FLOAT
    assert contract.T_INFERENCE not in inputs and contract.T_INFERENCE not in model.graph.initializers
    assert not chip_inits & set(model.graph.initializers)  # the chip stage's tensors are not read any more
    assert all(v.uses() for v in model.graph.initializers.values())
    assert model.ir_version >= 10
    assert_idempotent(StripChipStagePass(layers), model)


@pytest.mark.parametrize("name", ["digits_mlp_hwa", "digits_cnn_hwa", "digits_lstm_hwa"])
def test_fed_the_files_chip_stage_the_stripped_model_computes_what_the_file_computes(folder, name):
    path = compiled(folder, name, periphery_overrides=QUIET)
    proto, model, layers, periphery = loaded(path)
    states = [f"{layer.name}.{s}" for layer in layers if layer.owns_tiles for s in (contract.W_EFF, contract.SCALE)]
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    probe.graph.output.extend(
        onnx.helper.make_tensor_value_info(s, onnx.TensorProto.FLOAT, None) for s in states
    )  # the file's own chip stage
    x = load_digits_split()[1].x[:16]
    if name == "digits_cnn_hwa":
        x = x.reshape(-1, 1, 8, 8)
    elif name == "digits_lstm_hwa":
        x = x.reshape(-1, 8, 8)
    feed = {proto.graph.input[0].name: x.astype(np.float32)}
    ref = _ort(probe).run(None, feed)
    n_out = len(proto.graph.output)
    for p in (
        AttachLayerScalesPass(layers, periphery),
        StripChipStagePass(layers),
        ApplyPeripheryPass(layers, periphery),
    ):
        p(model)
    stripped = _ort(ir.serde.serialize_model(model))
    got = stripped.run(None, {**feed, **dict(zip(states, ref[n_out:], strict=True))})
    for a, b in zip(got, ref[:n_out], strict=True):
        np.testing.assert_array_equal(a, b)
