"""LSTM/GRU/RNN on crossbar tiles (anacompile/passes/recurrent.py): exact with noise off, fresh noise per step."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from anacompile import devices, ops
from anacompile.compiler import compile_model
from anacompile.crossbar.periphery import PERIPHERY_PRESETS
from anacompile.evaluate.datasets import load_digits_split
from anacompile.mapping import SinglePairMapping
from anacompile.passes import (
    AddAnalogFunctionsPass,
    MapConductancesPass,
    MarkAnalogOpsPass,
    PartitionWeightsPass,
    ProgramChipPass,
    RewriteToAnalogOpsPass,
    VerifyAnalogModelPass,
)
from anacompile.passes._layer import DIGITAL_KEY, analog_layers
from anacompile.runtime.session import AnalogSession
from tests._support.devices import NOISELESS_DEVICE

T, BATCH, IN, HID = 5, 3, 4, 6
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def source_model(
    op: str,
    *,
    direction: str = "forward",
    layout: int = 0,
    initial: bool = False,
    seq_lens: bool = False,
    peepholes: bool = False,
    seed: int = 0,
    **attrs,
) -> onnx.ModelProto:
    """One LSTM/GRU/RNN node with random constant weights; every output (Y, Y_h[, Y_c]) is a graph output."""
    rng = np.random.default_rng(seed)
    n_dir, g = (2 if direction == "bidirectional" else 1), GATES[op]
    inits = [
        numpy_helper.from_array(rng.uniform(-0.6, 0.6, shape).astype(np.float32), name)
        for name, shape in (("W", (n_dir, g * HID, IN)), ("R", (n_dir, g * HID, HID)), ("B", (n_dir, 2 * g * HID)))
    ]
    batch_first = layout == 1
    x_shape = [BATCH, T, IN] if batch_first else [T, BATCH, IN]
    state_shape = [BATCH, n_dir, HID] if batch_first else [n_dir, BATCH, HID]
    graph_inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape)]
    names = ["X", "W", "R", "B", "", "", "", ""]
    if seq_lens:
        inits.append(numpy_helper.from_array(np.array([T, 2, 4][:BATCH], np.int32), "seq"))
        names[4] = "seq"
    if initial:  # initial states as graph inputs: not constants, fed at run time
        for k, name in ((5, "h0"), (6, "c0")) if op == "LSTM" else ((5, "h0"),):
            graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, state_shape))
            names[k] = name
    if peepholes:
        inits.append(numpy_helper.from_array(rng.uniform(-0.5, 0.5, (n_dir, 3 * HID)).astype(np.float32), "P"))
        names[7] = "P"
    while names[-1] == "":
        names.pop()
    outs = ["Y", "Y_h", "Y_c"] if op == "LSTM" else ["Y", "Y_h"]
    node = helper.make_node(op, names, outs, hidden_size=HID, direction=direction, layout=layout, name="rnn", **attrs)
    y_shape = [BATCH, T, n_dir, HID] if batch_first else [T, n_dir, BATCH, HID]
    graph = helper.make_graph(
        [node],
        "g",
        graph_inputs,
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, y_shape)]
        + [helper.make_tensor_value_info(n, TensorProto.FLOAT, state_shape) for n in outs[1:]],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    return model


def feeds_for(model: onnx.ModelProto, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for vi in model.graph.input:
        shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        out[vi.name] = rng.uniform(-1, 1, shape).astype(np.float32)
    return out


def expected_outputs(op: str, kwargs: dict, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The source op's outputs in onnxruntime; it runs layout 0 only, so layout 1 runs transposed."""
    if not kwargs.get("layout"):
        return _run(source_model(op, **kwargs), feeds)
    twin = source_model(op, **{**kwargs, "layout": 0})
    swapped = {k: v.transpose(1, 0, 2) for k, v in feeds.items()}  # (B, T, I) -> (T, B, I); states alike
    y, *states = _run(twin, swapped)
    return [y.transpose(2, 0, 1, 3)] + [s.transpose(1, 0, 2) for s in states]


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    path = tmp_path_factory.mktemp("device") / "noiseless.yaml"
    path.write_text(NOISELESS_DEVICE)
    return path


def _run(path_or_model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    data = path_or_model.SerializeToString() if isinstance(path_or_model, onnx.ModelProto) else str(path_or_model)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"]).run(None, feeds)


CASES = {
    "lstm": ("LSTM", {}),
    "lstm_reverse": ("LSTM", {"direction": "reverse"}),
    "lstm_bidirectional": ("LSTM", {"direction": "bidirectional"}),
    "lstm_initial_states": ("LSTM", {"initial": True, "direction": "bidirectional"}),
    "lstm_seq_lens": ("LSTM", {"seq_lens": True, "direction": "bidirectional"}),
    "lstm_peepholes": ("LSTM", {"peepholes": True, "direction": "bidirectional", "initial": True}),
    "lstm_layout1": ("LSTM", {"layout": 1, "direction": "bidirectional", "initial": True, "seq_lens": True}),
    "lstm_clip_input_forget": ("LSTM", {"clip": 0.7, "input_forget": 1}),
    "lstm_activations": (
        "LSTM",
        {
            "activations": ["HardSigmoid", "Softsign", "ScaledTanh"],
            "activation_alpha": [0.3, 0.8],
            "activation_beta": [0.4, 1.2],
        },
    ),
    "gru_lbr0": ("GRU", {"direction": "bidirectional", "initial": True}),
    "gru_lbr1": ("GRU", {"direction": "bidirectional", "linear_before_reset": 1, "initial": True}),
    "gru_lbr0_seq_lens": ("GRU", {"direction": "reverse", "seq_lens": True}),
    "gru_lbr1_layout1_seq_lens": ("GRU", {"linear_before_reset": 1, "layout": 1, "seq_lens": True}),
    "gru_activations": (
        "GRU",
        {"activations": ["LeakyRelu", "Affine"], "activation_alpha": [0.1, 0.5], "activation_beta": [0.2], "clip": 2.0},
    ),
    "rnn": ("RNN", {}),
    "rnn_bidirectional": ("RNN", {"direction": "bidirectional", "initial": True, "seq_lens": True}),
    "rnn_relu_layout1": ("RNN", {"activations": ["Relu"], "layout": 1}),
    "rnn_elu": ("RNN", {"activations": ["Elu"], "activation_alpha": [0.5], "direction": "reverse"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_noise_off_reproduces_source_op(tmp_path, device, case):
    op, kwargs = CASES[case]
    src = source_model(op, **kwargs)
    src_path, out = tmp_path / "src.onnx", tmp_path / "analog.onnx"
    onnx.save(src, src_path)
    report = compile_model(src_path, out, device=device, periphery="ideal")
    n_dir = 2 if kwargs.get("direction") == "bidirectional" else 1
    per_dir = 2 if op == "GRU" and not kwargs.get("linear_before_reset") else 1
    assert sum(layer.analog for layer in report.layers) == n_dir * per_dir
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    assert [n.op_type for n in proto.graph.node].count("Loop") == 1
    assert not any(n.op_type == op for n in proto.graph.node)
    feeds = feeds_for(src)
    expected = expected_outputs(op, kwargs, feeds)
    for got in (_run(out, feeds), AnalogSession(out).run(feeds)):
        for e, g in zip(expected, got, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


def identity_rnn(batch: int, steps: int, hidden: int, inputs: int = 8, seed: int = 3):
    """RNN with R = 0 and the identity activation (Affine 1, 0): Y_t = x_t W' + b + noise_t, exactly."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(-1, 1, (1, hidden, inputs)).astype(np.float32)
    b = rng.uniform(-1, 1, (1, 2 * hidden)).astype(np.float32)
    inits = [
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(np.zeros((1, hidden, hidden), np.float32), "R"),
        numpy_helper.from_array(b, "B"),
    ]
    node = helper.make_node(
        "RNN",
        ["X", "W", "R", "B"],
        ["Y"],
        hidden_size=hidden,
        activations=["Affine"],
        activation_alpha=[1.0],
        activation_beta=[0.0],
        name="rnn",
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [steps, batch, inputs])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [steps, 1, batch, hidden])],
        inits,
    )
    x_row = rng.uniform(-1, 1, (batch, inputs)).astype(np.float32)
    x = np.broadcast_to(x_row, (steps, batch, inputs)).copy()  # the same input at every step
    ideal = x_row @ w[0].T + b[0, :hidden] + b[0, hidden:]
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), x, ideal


SIGMA_OUT = 0.05


@pytest.mark.parametrize("path", ["session_bank", "stock_onnxruntime"])
def test_every_time_step_gets_fresh_noise(tmp_path, device, path):
    """Output noise only (sigma 0.05, no DAC/ADC): e_t = (Y_t - ideal) / gamma ~ N(0, sigma^2), independent over t.

    The same noise at every step (a fixed bank slice) would make e_t identical over t: correlation 1.
    """
    steps, batch, hidden = 6, 512, 32
    model, x, ideal = identity_rnn(batch, steps, hidden)
    src, out = tmp_path / "rnn.onnx", tmp_path / "rnn.analog.onnx"
    onnx.save(model, src)
    compile_model(src, out, device=device, periphery="ideal", periphery_overrides=[f"out_noise={SIGMA_OUT}"])
    proto = onnx.load(str(out))
    gamma = numpy_helper.to_array(next(t for t in proto.graph.initializer if t.name == "rnn.col_scale")).reshape(-1)
    if path == "session_bank":
        y = AnalogSession(out, chip_seed=2).run({"X": x})[0]
    else:
        y = _run(out, {"X": x})[0]
    e = ((y[:, 0] - ideal) / gamma).reshape(steps, -1).astype(np.float64)  # (steps, batch * hidden)
    n = e.size
    assert abs(e.std() - SIGMA_OUT) < 5 * SIGMA_OUT / np.sqrt(2 * n)  # 5 standard errors
    assert not abs(1.05 * e.std() - SIGMA_OUT) < 5 * SIGMA_OUT / np.sqrt(2 * n)  # a 5 % error would be caught
    corr = np.corrcoef(e)[np.triu_indices(steps, 1)]
    assert np.all(np.abs(corr) < 5 / np.sqrt(e.shape[1])), corr


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@pytest.mark.parametrize(
    ("op", "kwargs"),
    [
        ("RNN", {"direction": "bidirectional"}),
        ("GRU", {"direction": "reverse", "seq_lens": True}),
        ("LSTM", {"layout": 1}),
    ],
)
def test_calibration_tile_inputs_are_each_steps_x_and_previous_h(op, kwargs):
    """``RecurrentLayer.tile_input`` rebuilds [x_t, h_{t-1}] (GRU _h: [x_t, r_t h_{t-1}]); the planned MVMs on
    it give Y again."""
    model = ir.serde.deserialize_model(source_model(op, **kwargs))
    MarkAnalogOpsPass()(model)
    plans = [plan for _, plan in analog_layers(model)]
    x = feeds_for(source_model(op, **kwargs))["X"]
    y = expected_outputs(op, kwargs, {"X": x})[0]
    if kwargs.get("layout"):
        y = y.transpose(1, 2, 0, 3)  # (B, T, D, H) -> (T, D, B, H)
    tiles = [plan.op.tile_input(x) for plan in plans]
    pre = [t @ plan.weight + plan.bias for t, plan in zip(tiles, plans, strict=True)]
    if op == "RNN":
        for d in range(2):
            np.testing.assert_allclose(np.tanh(pre[d]), y[:, d], rtol=1e-5, atol=1e-5)
    elif op == "GRU":  # lbr=0: layers _zr and _h
        z, h_prev = _sigmoid(pre[0][..., :HID]), tiles[0][..., IN:]
        h = (1 - z) * np.tanh(pre[1]) + z * h_prev
        valid = np.arange(T)[:, None] < np.array([T, 2, 4])[None, :]  # sequence_lens: Y is 0 past the end
        np.testing.assert_allclose(np.where(valid[..., None], h, 0), y[:, 0], rtol=1e-5, atol=1e-5)
    else:  # LSTM forward: h_t = o * tanh(c_t); the tile input's h part is h_{t-1}
        i, o, f, c = np.split(pre[0], 4, axis=-1)
        np.testing.assert_allclose(tiles[0][1:, :, IN:], y[:-1, 0], rtol=1e-6)
        assert np.all(tiles[0][0, :, IN:] == 0)  # no initial state: h_{-1} = 0
        c_t = _sigmoid(f[0]) * 0 + _sigmoid(i[0]) * np.tanh(c[0])
        np.testing.assert_allclose(_sigmoid(o[0]) * np.tanh(c_t), y[0, 0], rtol=1e-5, atol=1e-6)


PCM = devices.get("pcm")
STANDARD = PERIPHERY_PRESETS["standard"].replace(input_range="absmax")


def test_passes_give_one_loop_with_the_analog_layers_in_its_body():
    """Bidirectional GRU, linear_before_reset=0: 4 layers (fwd/bwd x zr/h), chip stage in the main graph."""
    model = ir.serde.deserialize_model(source_model("GRU", direction="bidirectional"))
    m = SinglePairMapping()
    passes = [
        MarkAnalogOpsPass(),
        PartitionWeightsPass(STANDARD),
        MapConductancesPass(PCM, m),
        ProgramChipPass(PCM, m, STANDARD.drift_compensation),
        RewriteToAnalogOpsPass(PCM, m, STANDARD),
        AddAnalogFunctionsPass(STANDARD, STANDARD.drift_compensation),
        VerifyAnalogModelPass(),
    ]
    for p in passes:
        p(model)
    main = [n.op_type for n in model.graph]
    assert main.count(ops.CHIP_WEIGHTS) == 4 and main.count("Loop") == 1 and "GRU" not in main
    assert ops.ANALOG_MATMUL not in main
    loop = next(n for n in model.graph if n.op_type == "Loop")
    body = loop.attributes["body"].value
    names = [n.name for n in body if n.op_type == ops.ANALOG_MATMUL]
    assert names == ["rnn_fwd_zr", "rnn_fwd_h", "rnn_bwd_zr", "rnn_bwd_h"]
    assert main.index("Loop") > max(i for i, t in enumerate(main) if t == ops.CHIP_WEIGHTS)
    assert {"W", "R", "B"}.isdisjoint(model.graph.initializers)
    assert {f.name for f in model.functions.values()} == {ops.ANALOG_MATMUL, ops.CHIP_WEIGHTS}
    for p in passes[:-1]:  # idempotent
        assert not p(model).modified


def test_recurrent_ops_that_cannot_be_mapped_stay_digital_with_a_reason():
    model = source_model("LSTM", activations=["Sigmoid", "Tanh", "Gelu"])
    runtime_w = source_model("RNN")
    w = next(t for t in runtime_w.graph.initializer if t.name == "W")
    runtime_w.graph.initializer.remove(w)
    runtime_w.graph.input.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, list(w.dims)))
    for proto, reason in ((model, "activation 'Gelu'"), (runtime_w, "W (W) is not a constant")):
        irm = ir.serde.deserialize_model(proto)
        MarkAnalogOpsPass()(irm)
        assert reason in next(iter(irm.graph)).meta[DIGITAL_KEY]


@pytest.fixture(scope="module")
def digits_x():
    return load_digits_split()[1].x.reshape(-1, 8, 8).astype(np.float32)


def test_digits_lstm_noise_off_equals_source(tmp_path, device, digits_x):
    src = Path(__file__).resolve().parents[2] / "models" / "digits_lstm_fp.onnx"
    out = tmp_path / "lstm.onnx"
    report = compile_model(src, out, device=device, periphery="ideal")
    assert [(layer.name, layer.weight_shape) for layer in report.layers if layer.analog] == [
        ("lstm_LSTM", [8 + 64, 4 * 64]),
        ("fc_Gemm", [64, 10]),
    ]
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    feeds = {"input": digits_x}
    expected = _run(onnx.load(str(src)), feeds)[0]
    session = AnalogSession(out, chip_seed=3)
    for got in (_run(out, feeds)[0], session.run(feeds)[0], session.run_digital(feeds)[0]):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert session.layer_inputs(feeds)["lstm_LSTM"].shape == (8, len(digits_x), 72)  # T x batch tile inputs


def test_hwa_digits_lstm_keeps_its_accuracy_on_chips(tmp_path):
    from anacompile.evaluate.monte_carlo import evaluate

    src = Path(__file__).resolve().parents[2] / "models" / "digits_lstm_hwa.onnx"
    out = tmp_path / "lstm.analog.onnx"
    compile_model(src, out, calibration="digits")  # standard periphery, static input ranges
    result = evaluate(out, data="digits", times="1s,1d", chips=3)
    assert result.baseline > 0.95
    assert all(acc > result.baseline - 0.02 for acc in result.accuracy_mean), (result.baseline, result.accuracy_mean)


G2P_WORDS = ["anacompile", "crossbar", "phase", "change", "memory", "drift", "tile", "a"]
G2P_GRAPHEMES = ["<pad>", "<unk>", "</s>"] + list("abcdefghijklmnopqrstuvwxyz")


@pytest.fixture(scope="module")
def g2p_checkpoint():
    """The GRU encoder-decoder weights that the PyPI package g2p-en 2.1.0 ships (read, never imported)."""
    spec = importlib.util.find_spec("g2p_en")  # locates the package without running it
    path = Path(spec.origin).parent / "checkpoint20.npz" if spec is not None and spec.origin else None
    if path is None or not path.is_file():
        pytest.skip("g2p-en is not installed (pip install --no-deps g2p-en==2.1.0)")
    return dict(np.load(path))


def g2p_encoder(ckpt: dict[str, np.ndarray]) -> onnx.ModelProto:
    """tokens (B, T) -> Gather(embedding) -> GRU(256 -> 256) with sequence_lens -> Y, Y_h.

    PyTorch's GRU is ONNX's GRU with linear_before_reset=1, gates reordered from (r, z, n) to (z, r, h).
    """

    def onnx_gates(a: np.ndarray) -> np.ndarray:
        r, z, n = np.split(a, 3, axis=0)
        return np.concatenate([z, r, n], axis=0)

    inits = [
        numpy_helper.from_array(ckpt["enc_emb"], "emb"),
        numpy_helper.from_array(onnx_gates(ckpt["enc_w_ih"])[None], "W"),
        numpy_helper.from_array(onnx_gates(ckpt["enc_w_hh"])[None], "R"),
        numpy_helper.from_array(
            np.concatenate([onnx_gates(ckpt["enc_b_ih"]), onnx_gates(ckpt["enc_b_hh"])])[None], "B"
        ),
    ]
    nodes = [
        helper.make_node("Gather", ["emb", "tokens"], ["x_bt"]),
        helper.make_node("Transpose", ["x_bt"], ["x"], perm=[1, 0, 2]),
        helper.make_node(
            "GRU", ["x", "W", "R", "B", "lens"], ["Y", "Y_h"], hidden_size=256, linear_before_reset=1, name="encoder"
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "g2p_encoder",
        [
            helper.make_tensor_value_info("tokens", TensorProto.INT64, ["B", "T"]),
            helper.make_tensor_value_info("lens", TensorProto.INT32, ["B"]),
        ],
        [
            helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["T", 1, "B", 256]),
            helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [1, "B", 256]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    return model


def _g2p_feeds() -> dict[str, np.ndarray]:
    ids = [[G2P_GRAPHEMES.index(c) for c in w] + [G2P_GRAPHEMES.index("</s>")] for w in G2P_WORDS]
    tokens = np.zeros((len(ids), max(map(len, ids))), np.int64)  # padded with <pad> = 0
    for b, row in enumerate(ids):
        tokens[b, : len(row)] = row
    return {"tokens": tokens, "lens": np.array([len(row) for row in ids], np.int32)}


@pytest.mark.parametrize("tile_rows", [512, 200])  # K = 256 + 256: exactly one tile; three row tiles
def test_g2p_en_gru_encoder_on_tiles_equals_source(tmp_path, device, g2p_checkpoint, tile_rows):
    """A real GRU (g2p-en's grapheme encoder, H = 256, N = 4H = 1024 columns) with padded words."""
    src, out = tmp_path / "g2p.onnx", tmp_path / "g2p.analog.onnx"
    onnx.save(g2p_encoder(g2p_checkpoint), src)
    feeds = _g2p_feeds()
    expected = _run(onnx.load(str(src)), feeds)
    ck = g2p_checkpoint  # the ONNX conversion is g2p-en's own GRU cell (numpy, as in g2p_en/g2p.py)
    for b, n in enumerate(feeds["lens"]):
        h = np.zeros(256, np.float32)
        for t in range(n):
            gi = ck["enc_emb"][feeds["tokens"][b, t]] @ ck["enc_w_ih"].T + ck["enc_b_ih"]
            gh = h @ ck["enc_w_hh"].T + ck["enc_b_hh"]
            r, z = np.split(_sigmoid(gi[:512] + gh[:512]), 2)
            h = (1 - z) * np.tanh(gi[512:] + r * gh[512:]) + z * h
        np.testing.assert_allclose(expected[1][0, b], h, rtol=1e-4, atol=1e-5)
    report = compile_model(src, out, device=device, periphery="ideal", periphery_overrides=[f"tile_rows={tile_rows}"])
    assert [(layer.weight_shape, layer.tiles) for layer in report.layers if layer.analog] == [
        ([512, 1024], [-(-512 // tile_rows), 2])
    ]
    for got in (_run(out, feeds), AnalogSession(out).run(feeds)):
        for e, g in zip(expected, got, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
