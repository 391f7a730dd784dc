"""A small model built like silero-vad 5.x (``silero_vad.onnx``), whose weights live inside If branches.

silero-vad's own package needs torch (``silero-vad==5.1.2`` requires torch and torchaudio), so it is not a
test dependency; this model has its structure, and ``bench/vad_control_flow.py`` checks the real files:

* ``If(sr == 16000)`` at the top; each branch holds its own weights as ``Constant`` nodes;
* per branch: ``Conv`` (stride 2) -> ``Relu`` -> a nested ``If`` on the carried state choosing between two
  ``LSTM`` nodes (with / without initial states, each with its own copy of the weights), whose ``W``, ``R``
  and ``B`` are PyTorch's gate order (i, f, g, o) rebuilt into ONNX's (i, o, f, c) by ``Slice`` + ``Concat``
  + ``Unsqueeze`` chains -> 1x1 ``Conv`` -> ``Sigmoid`` -> ``ReduceMean``;
* the LSTM state (h, c) is an input and an output, carried across calls; the batch is fixed to 1.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from anacompile.compiler import compile_model
from anacompile.runtime.session import AnalogSession
from tests._support.devices import NOISELESS_DEVICE

F, I64 = TensorProto.FLOAT, TensorProto.INT64
C, H, KERNEL = 6, 8, 4
SAMPLES = {16000: 64, 8000: 32}


def _branch(tag: str, seed: int) -> onnx.GraphProto:
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    count = [0]

    def const(array: np.ndarray, name: str | None = None) -> str:
        count[0] += 1
        name = name or f"{tag}/Constant_{count[0]}"
        nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name), name=name))
        return name

    def node(op: str, inputs: list[str], name: str, n_out: int = 1, **attrs) -> list[str]:
        outs = [f"{tag}/{name}_output_{i}" for i in range(n_out)]
        nodes.append(helper.make_node(op, inputs, outs, name=f"{tag}/{name}", **attrs))
        return outs

    def reorder(w: str, rows: int, what: str) -> str:  # PyTorch (i, f, g, o) -> ONNX (i, o, f, c) along axis 0
        parts = []
        for k, gate in enumerate((0, 3, 1, 2)):
            (part,) = node(
                "Slice",
                [w, const(np.array([gate * rows], np.int64)), const(np.array([(gate + 1) * rows], np.int64)),
                 const(np.array([0], np.int64))],
                f"{what}/Slice_{k}",
            )  # fmt: skip
            parts.append(part)
        return node("Concat", parts, f"{what}/Concat", axis=0)[0]

    def lstm_branch(name: str, with_state: bool) -> onnx.GraphProto:
        outer = nodes[:]
        nodes.clear()
        w_ih = const(rng.uniform(-0.5, 0.5, (4 * H, C)).astype(np.float32), f"{tag}/{name}.weight_ih")
        w_hh = const(rng.uniform(-0.5, 0.5, (4 * H, H)).astype(np.float32), f"{tag}/{name}.weight_hh")
        b_ih = const(rng.uniform(-0.5, 0.5, 4 * H).astype(np.float32), f"{tag}/{name}.bias_ih")
        b_hh = const(rng.uniform(-0.5, 0.5, 4 * H).astype(np.float32), f"{tag}/{name}.bias_hh")
        axes = const(np.array([0], np.int64))
        w = node("Unsqueeze", [reorder(w_ih, H, f"{name}/W"), axes], f"{name}/Unsqueeze_W")[0]
        r = node("Unsqueeze", [reorder(w_hh, H, f"{name}/R"), axes], f"{name}/Unsqueeze_R")[0]
        bias = node("Concat", [reorder(b_ih, H, f"{name}/Bi"), reorder(b_hh, H, f"{name}/Bh")], f"{name}/B", axis=0)[0]
        b = node("Unsqueeze", [bias, axes], f"{name}/Unsqueeze_B")[0]
        states = ["", "", ""]
        if with_state:
            h0 = node("Gather", ["state", const(np.array([0], np.int64))], f"{name}/h0", axis=0)[0]
            c0 = node("Gather", ["state", const(np.array([1], np.int64))], f"{name}/c0", axis=0)[0]
            states = ["", h0, c0]
        _, y_h, y_c = node("LSTM", [f"{tag}/x_seq", w, r, b, *states], f"{name}/LSTM", n_out=3, hidden_size=H)
        hc = node("Concat", [y_h, y_c], f"{name}/stateN", axis=0)[0]
        last = node("Squeeze", [y_h, axes], f"{name}/h_last")[0]
        body = helper.make_graph(
            nodes[:],
            f"{tag}/{name}",
            [],
            [helper.make_tensor_value_info(last, F, None), helper.make_tensor_value_info(hc, F, None)],
        )
        nodes[:] = outer
        return body

    x = node("Unsqueeze", ["input", const(np.array([1], np.int64))], "stft/Unsqueeze")[0]
    conv_w = const(rng.uniform(-0.5, 0.5, (C, 1, KERNEL)).astype(np.float32), f"{tag}/encoder.weight")
    conv_b = const(rng.uniform(-0.1, 0.1, C).astype(np.float32), f"{tag}/encoder.bias")
    y = node("Conv", [x, conv_w, conv_b], "encoder/Conv", strides=[2])[0]
    y = node("Relu", [y], "encoder/Relu")[0]
    nodes.append(helper.make_node("Transpose", [y], [f"{tag}/x_seq"], perm=[2, 0, 1], name=f"{tag}/to_seq"))
    peak = node("ReduceMax", [node("Abs", ["state"], "decoder/Abs")[0]], "decoder/ReduceMax", keepdims=0)[0]
    has_state = node("Greater", [peak, const(np.array(0, np.float32))], "decoder/has_state")[0]
    last, state_n = node(
        "If",
        [has_state],
        "decoder/If",
        n_out=2,
        then_branch=lstm_branch("rnn", True),
        else_branch=lstm_branch("rnn_1", False),
    )
    z = node(
        "Relu", [node("Unsqueeze", [last, const(np.array([2], np.int64))], "decoder/Unsqueeze")[0]], "decoder/Relu"
    )
    head_w = const(rng.uniform(-0.5, 0.5, (1, H, 1)).astype(np.float32), f"{tag}/decoder.weight")
    head_b = const(rng.uniform(-0.1, 0.1, 1).astype(np.float32), f"{tag}/decoder.bias")
    p = node("Sigmoid", [node("Conv", [z[0], head_w, head_b], "decoder/Conv")[0]], "decoder/Sigmoid")[0]
    out = node("ReduceMean", [p], "decoder/ReduceMean", axes=[1, 2], keepdims=0)[0]
    return helper.make_graph(
        nodes, tag, [], [helper.make_tensor_value_info(out, F, None), helper.make_tensor_value_info(state_n, F, None)]
    )


def vad_like_model() -> onnx.ModelProto:
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["sr16k"], value=numpy_helper.from_array(np.array(16000, np.int64))),
            helper.make_node("Equal", ["sr", "sr16k"], ["is16k"]),
            helper.make_node(
                "If",
                ["is16k"],
                ["output", "stateN"],
                then_branch=_branch("k16", 1),
                else_branch=_branch("k8", 2),
                name="If_0",
            ),
        ],
        "vad_like",
        [
            helper.make_tensor_value_info("input", F, [1, None]),
            helper.make_tensor_value_info("state", F, [2, 1, H]),
            helper.make_tensor_value_info("sr", I64, []),
        ],
        [helper.make_tensor_value_info("output", F, [1]), helper.make_tensor_value_info("stateN", F, [2, 1, H])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])


def _chunks(sr: int, n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, (1, SAMPLES[sr])).astype(np.float32) for _ in range(n)]


def _stream(run, sr: int, n: int = 4) -> list[np.ndarray]:
    """Probabilities of ``n`` consecutive calls, the state carried as silero's iterator does."""
    state, probs = np.zeros((2, 1, H), np.float32), []
    for x in _chunks(sr, n):
        prob, state = run({"input": x, "state": state, "sr": np.array(sr, np.int64)})
        probs.append(prob)
    return probs


def _ort(path_or_model):
    data = path_or_model.SerializeToString() if isinstance(path_or_model, onnx.ModelProto) else str(path_or_model)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return lambda feeds: sess.run(None, {k: v for k, v in feeds.items() if k in names})


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("vad") / "vad_like.onnx"
    onnx.save(vad_like_model(), path)
    return path


def test_every_branch_layer_is_mapped_and_named_by_its_branch(tmp_path, source):
    report = compile_model(source, tmp_path / "out.onnx")
    analog = [row for row in report.layers if row.analog]
    assert not [row for row in report.layers if not row.analog]
    assert len(analog) == 8 and report.totals["tiles"] == 8  # per sr-branch: 2 Conv + 2 LSTM
    assert len({row.name for row in analog}) == 8
    by_graph = {row.graph for row in analog}
    assert by_graph == {
        "If_0.then_branch",
        "If_0.else_branch",
        "If_0.then_branch/k16/decoder/If.then_branch",
        "If_0.then_branch/k16/decoder/If.else_branch",
        "If_0.else_branch/k8/decoder/If.then_branch",
        "If_0.else_branch/k8/decoder/If.else_branch",
    }
    onnx.checker.check_model(str(tmp_path / "out.onnx"), full_check=True)
    again = compile_model(source, tmp_path / "again.onnx")
    assert [row.name for row in again.layers] == [row.name for row in report.layers]  # stable names


def test_exact_with_noise_off_over_a_carried_state(tmp_path, source):
    device = tmp_path / "noiseless.yaml"
    device.write_text(NOISELESS_DEVICE)
    out = tmp_path / "out.onnx"
    compile_model(source, out, device=device, periphery="ideal")
    ref = _ort(source)
    session = AnalogSession(out, 0)
    for sr in SAMPLES:
        want = _stream(ref, sr)
        for run in (_ort(out), session.run, session.run_digital):
            np.testing.assert_allclose(np.concatenate(_stream(run, sr)), np.concatenate(want), rtol=1e-5, atol=1e-6)


CALIBRATION = [
    {"input": x, "state": np.zeros((2, 1, H), np.float32), "sr": np.array(sr, np.int64)}
    for sr in SAMPLES
    for x in _chunks(sr, 3, seed=5)
]


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"periphery_overrides": ["bound_management=iterative"]},
        {"periphery_overrides": ["input_range=absmax"]},
        {"periphery_overrides": ["input_range=static"], "calibration": CALIBRATION},
        {"calibration": CALIBRATION},  # calibrated output ranges (the default periphery)
        {"periphery_overrides": ["bound_management=iterative", "input_range=static"], "calibration": CALIBRATION},
    ],
    ids=["default", "bm_iterative", "absmax", "static", "calibrated_out", "bm_static_calibrated"],
)
def test_every_periphery_option_runs_on_the_branch_lstms(tmp_path, source, options):
    out = tmp_path / "out.onnx"
    report = compile_model(source, out, device="pcm", **options)
    assert all(row.analog for row in report.layers)
    onnx.checker.check_model(str(out), full_check=True)
    session = AnalogSession(out, 1, t_inference=1.0)
    for sr in SAMPLES:
        for run in (_ort(out), session.run):  # the file in stock onnxruntime, and the chip
            probs = np.concatenate(_stream(run, sr))
            assert np.all(np.isfinite(probs)) and np.all((probs > 0) & (probs < 1))
    if "calibration" in options:
        assert not any("no calibration data reached" in note for note in report.notes)  # both sr-branches seen


def test_placement_sees_and_switches_branch_layers(tmp_path, source):
    out = tmp_path / "out.onnx"
    report = compile_model(source, out, device="pcm")
    lstm = [row for row in report.layers if row.op == "LSTM"]
    kept = compile_model(source, tmp_path / "kept.onnx", device="pcm", digital=[lstm[0].name])
    digital = [row for row in kept.layers if not row.analog]
    assert [(row.op, row.graph) for row in digital] == [("LSTM", lstm[0].graph)]  # that branch's LSTM only
    assert "--digital" in digital[0].reason
    assert sum(row.analog for row in kept.layers) == 7
    session = AnalogSession(out, 0, t_inference=1.0, switchable=True)
    names = [layer.name for layer in session.layers]
    assert {row.name for row in lstm} <= set(names)
    session.set_digital(names)  # every layer digital: exactly the FP32 model, on the same programmed chip
    for sr in SAMPLES:
        np.testing.assert_allclose(
            np.concatenate(_stream(session.run, sr)), np.concatenate(_stream(_ort(source), sr)), rtol=1e-5, atol=1e-6
        )
    session.set_digital([])
    analog = np.concatenate(_stream(session.run, 16000))
    assert not np.allclose(analog, np.concatenate(_stream(_ort(source), 16000)), rtol=1e-5, atol=1e-6)


def test_mvm_error_says_a_branch_the_data_never_takes_is_not_reached(tmp_path, source, capsys):
    """The 8 kHz branch never runs on 16 kHz data: its layers are ``null`` with a note, "not reached" in the
    table, never a 0 % error; the layers the data reaches (both decoder branches: some chunks carry a state)
    get a real error. The model's batch of 1 is fed one run per chunk."""
    import json

    from anacompile.cli import main
    from anacompile.evaluate.mvm_error import mvm_error

    n, rng = 8, np.random.default_rng(3)
    state = np.zeros((n, 2, 1, H), np.float32)
    state[n // 2 :] = rng.uniform(-0.5, 0.5, (n - n // 2, 2, 1, H))  # these take decoder/If's then-branch
    data = tmp_path / "16k.npz"
    x = rng.uniform(-1, 1, (n, 1, SAMPLES[16000])).astype(np.float32)
    np.savez(data, input=x, state=state, sr=np.full(n, 16000, np.int64))
    out = tmp_path / "out.onnx"
    compile_model(source, out, calibration=str(data))
    r = mvm_error(out, data=str(data), times="1s,1d", chips=2, samples=n)
    never = sorted(name for name in r.layers if name.startswith("k8_"))
    assert len(never) == 4 and sorted(r.not_reached) == never
    for name, means, stds in zip(r.layers, r.error_mean, r.error_std, strict=True):
        if name in never:
            assert means == [None, None] and stds == [None, None], name
        else:
            assert all(0.005 < m < 0.5 for m in means) and all(s >= 0 for s in stds), (name, means)
    assert len(r.notes) == 1 and all(name in r.notes[0] for name in never)
    assert main(["mvm-error", str(out), "--data", str(data), "--chips", "2", "--json", str(tmp_path / "e.json")]) == 0
    table = capsys.readouterr().out
    assert table.count("not reached") == 4 and "k8_rnn_LSTM" in table
    doc = json.loads((tmp_path / "e.json").read_text())
    assert [doc["error_mean"][doc["layers"].index(name)] for name in never] == [[None]] * 4 and doc["notes"]
