"""Every periphery option in every op family: the compiled model in onnxruntime against the numpy reference.

One matrix, family x option. A family is a tiny source model (MatMul + Gemm, Conv, ConvTranspose, grouped
Conv, LSTM/GRU/RNN loops forward, reverse and bidirectional, an attention block whose weights reach their
MatMuls through Transpose, DequantizeLinear and Mul(Cast(int8)) and are folded), built once per session,
with symbolic batch (and time / sequence) dims, calibrated from an iterable of batch-1 feeds of varying
length. Every family but the one-tile LSTM has layers over several row tiles (K > tile rows). An option is
a set of periphery keys given to ``compile_model`` as a user would (``--set``):

* ``static`` (the base: static DAC input ranges from the calibration data, the fixed ADC bound),
  ``absmax``, ``bm`` (iterative bound management, with an ADC bound low enough that outputs saturate),
  ``calibrated`` (``output_range: calibrated``), ``ir_drop`` (on, with a g_wire/g_max small enough that the
  drop is far above float32 rounding on these 16-row tiles), ``column`` (per-column drift compensation,
  evaluated at t = 1 h), ``read_noise`` (only the PCM read noise on in the noisy run), ``combined``
  (abs-max, bound management, calibrated ranges, IR drop and column compensation at once).

Each cell checks:

1. exact: with every per-MVM noise source off (the session's ``read_noise = out_noise = 0``), the analog
   session's outputs in onnxruntime equal a numpy implementation of the source op's equations in which
   every weight product is :func:`anacompile.crossbar.reference.tile_forward` on the chip's state (the
   programmed weights are whatever the chip holds: the tile arithmetic is deterministic given them), to
   float32 rounding; and the same reference with the option taken away does not (the option matters);
2. noisy: with the compiled noise on, the outputs are finite, differ from run to run on one chip (fresh
   per-MVM noise) and between chips.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from anacompile.compiler import compile_model
from anacompile.crossbar.periphery import InputRange
from anacompile.crossbar.reference import tile_forward
from anacompile.runtime.session import AnalogSession

F32 = np.float32
OPSET = 17
TILE_ROWS = 16  # every family's layers but the one-tile LSTM's span two or more row tiles
NOISE_OFF = {"read_noise": 0.0, "out_noise": 0.0}

# option -> (compile overrides, evaluation time in s, noisy-run overrides of the session)
OPTIONS: dict[str, tuple[dict, float, dict]] = {
    "static": ({}, 0.0, {}),
    "absmax": ({"input_range": "absmax"}, 0.0, {}),
    "bm": ({"bound_management": "iterative", "adc_bound": 1.5}, 0.0, {}),
    "calibrated": ({"output_range": "calibrated"}, 0.0, {}),
    "ir_drop": ({"ir_drop": 1.0, "ir_drop_g_ratio": 200.0}, 0.0, {}),
    "column": ({"drift_compensation": "column"}, 3600.0, {}),
    "read_noise": ({}, 0.0, {"out_noise": 0.0}),
    "combined": (
        {
            "input_range": "absmax",
            "bound_management": "iterative",
            "adc_bound": 1.5,
            "output_range": "calibrated",
            "ir_drop": 1.0,
            "ir_drop_g_ratio": 200.0,
            "drift_compensation": "column",
        },
        3600.0,
        {},
    ),
}


# --- the numpy reference ---------------------------------------------------------------------------------
class Ref:
    """The analog layers of one session as numpy functions (:func:`tile_forward` on the chip's state)."""

    def __init__(self, session: AnalogSession, **periphery_changes) -> None:
        self.s = session
        self.p = session.periphery.replace(**periphery_changes) if periphery_changes else session.periphery
        self.layers = {layer.name: layer for layer in session.layers}
        self.drop_gain = False

    def __call__(self, name: str, x: np.ndarray) -> np.ndarray:
        """Layer ``name``'s output for input x (..., K), without its bias."""
        layer = self.layers[name]
        w, in_scale, scale = self.s.layer_state(layer)
        gain = None if self.drop_gain else layer.out_gain
        return tile_forward(np.asarray(x, F32), w, in_scale, scale, np.zeros(layer.n_out, F32), self.p, None, gain)


def _sigmoid(x):
    return (1.0 / (1.0 + np.exp(-x))).astype(F32)


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(F32)


def _im2col(x: np.ndarray, k: tuple[int, int], stride: int, pad: int) -> np.ndarray:
    """(N, C, H, W) -> patches (N, H', W', C*kh*kw), rows channel-major (c, i, j)."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - k[0]) // stride + 1, (w + 2 * pad - k[1]) // stride + 1
    cols = np.empty((n, ho, wo, c, k[0], k[1]), F32)
    for i in range(k[0]):
        for j in range(k[1]):
            cols[..., i, j] = xp[:, :, i : i + stride * ho : stride, j : j + stride * wo : stride].transpose(0, 2, 3, 1)
    return cols.reshape(n, ho, wo, -1)


def _transpose_patches(x: np.ndarray, k: int, stride: int, pad: int, out_pad: int) -> np.ndarray:
    """ConvTranspose as patches: P[n, y, x, (c, i, j)] = x[n, c, a, b] for y = s a - pad + i (if any)."""
    n, c, h, w = x.shape
    ho, wo = (h - 1) * stride - 2 * pad + k + out_pad, (w - 1) * stride - 2 * pad + k + out_pad
    cols = np.zeros((n, ho, wo, c, k, k), F32)
    for i in range(k):
        for j in range(k):
            for a in range(h):
                for b in range(w):
                    oy, ox = stride * a - pad + i, stride * b - pad + j
                    if 0 <= oy < ho and 0 <= ox < wo:
                        cols[:, oy, ox, :, i, j] = x[:, :, a, b]
    return cols.reshape(n, ho, wo, -1)


# --- the families ----------------------------------------------------------------------------------------
@dataclass
class Family:
    """A tiny source model, its feeds and the numpy reference of its outputs."""

    model: onnx.ModelProto
    feeds: dict[str, np.ndarray]
    calibration: list[dict[str, np.ndarray]]
    reference: Callable[[Ref, dict[str, np.ndarray]], list[np.ndarray]]
    tile_rows: int = TILE_ROWS


def _model(nodes, inputs, outputs, inits) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(a, n) for n, a in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model, full_check=True)
    return model


def _info(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _gemm() -> Family:
    rng = np.random.default_rng(10)
    w1 = rng.uniform(-0.5, 0.5, (20, 12)).astype(F32)
    w2t = rng.uniform(-0.5, 0.5, (6, 12)).astype(F32)  # Gemm transB=1
    b2 = rng.uniform(-0.3, 0.3, 6).astype(F32)
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("Gemm", ["hr", "W2", "b2"], ["y"], name="fc2", transB=1),
    ]
    model = _model(nodes, [_info("x", ["B", 20])], [_info("y", ["B", 6])], {"W1": w1, "W2": w2t, "b2": b2})

    def ref(r: Ref, feeds):
        h = np.maximum(r("fc1", feeds["x"]), 0)
        return [r("fc2", h) + b2]

    return Family(
        model,
        {"x": rng.uniform(-1, 1, (7, 20)).astype(F32)},
        [{"x": rng.uniform(-1, 1, (1, 20)).astype(F32)} for _ in range(8)],
        ref,
    )


def _conv(kind: str) -> Family:
    rng = np.random.default_rng({"conv": 11, "conv_transpose": 12, "grouped_conv": 13}[kind])
    if kind == "conv":  # K = 3 * 9 = 27 rows: two tiles
        w = rng.uniform(-0.4, 0.4, (4, 3, 3, 3)).astype(F32)
        attrs, c_in, hw, c_out = {"pads": [1, 1, 1, 1], "strides": [2, 2]}, 3, 6, 4
    elif kind == "conv_transpose":  # (C_in, C_out, k, k), K = 27
        w = rng.uniform(-0.4, 0.4, (3, 4, 3, 3)).astype(F32)
        attrs, c_in, hw, c_out = {"pads": [1, 1, 1, 1], "strides": [2, 2], "output_padding": [1, 1]}, 3, 4, 4
    else:  # 2 groups of 2 input channels: K = 18 per group, two tiles each
        w = rng.uniform(-0.4, 0.4, (6, 2, 3, 3)).astype(F32)
        attrs, c_in, hw, c_out = {"pads": [1, 1, 1, 1], "group": 2}, 4, 5, 6
    b = rng.uniform(-0.3, 0.3, c_out).astype(F32)
    op = "ConvTranspose" if kind == "conv_transpose" else "Conv"
    nodes = [helper.make_node(op, ["x", "W", "b"], ["c"], name="conv", **attrs), helper.make_node("Relu", ["c"], ["y"])]
    model = _model(nodes, [_info("x", ["N", c_in, hw, hw])], [_info("y", ["N", c_out, None, None])], {"W": w, "b": b})

    def ref(r: Ref, feeds):
        x = feeds["x"]
        if kind == "conv":
            z = r("conv", _im2col(x, (3, 3), 2, 1))
        elif kind == "conv_transpose":
            z = r("conv", _transpose_patches(x, 3, 2, 1, 1))
        else:
            z = np.concatenate([r(f"conv_g{g}", _im2col(x[:, 2 * g : 2 * g + 2], (3, 3), 1, 1)) for g in range(2)], -1)
        return [np.maximum(z.transpose(0, 3, 1, 2) + b.reshape(1, -1, 1, 1), 0)]

    return Family(
        model,
        {"x": rng.uniform(-1, 1, (2, c_in, hw, hw)).astype(F32)},
        [{"x": rng.uniform(-1, 1, (1, c_in, hw, hw)).astype(F32)} for _ in range(6)],
        ref,
    )


GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
HID = 6


def _seed(*key) -> int:
    """A seed of its own per family, the same in every process (``hash`` of a str changes with each one)."""
    return zlib.crc32(repr(key).encode())


def _recurrent(op: str, direction: str, inputs: int, lbr: int = 0, tile_rows: int = TILE_ROWS) -> Family:
    rng = np.random.default_rng(_seed(op, direction, inputs, lbr))
    n_dir, g = (2 if direction == "bidirectional" else 1), GATES[op]
    w = rng.uniform(-0.5, 0.5, (n_dir, g * HID, inputs)).astype(F32)
    rr = rng.uniform(-0.5, 0.5, (n_dir, g * HID, HID)).astype(F32)
    bb = rng.uniform(-0.3, 0.3, (n_dir, 2 * g * HID)).astype(F32)
    outs = ["Y", "Y_h", "Y_c"] if op == "LSTM" else ["Y", "Y_h"]
    attrs = {"hidden_size": HID, "direction": direction}
    if op == "GRU":
        attrs["linear_before_reset"] = lbr
    nodes = [helper.make_node(op, ["X", "W", "R", "B"], outs, name="rnn", **attrs)]
    model = _model(
        nodes,
        [_info("X", ["T", "B", inputs])],
        [_info("Y", ["T", n_dir, "B", HID])] + [_info(n, [n_dir, "B", HID]) for n in outs[1:]],
        {"W": w, "R": rr, "B": bb},
    )
    h = HID

    def ref(r: Ref, feeds):
        x = feeds["X"]
        t_len, batch = x.shape[:2]
        ys, hs, cs = [], [], []
        for d in range(n_dir):
            name = "rnn" if n_dir == 1 else ("rnn_fwd", "rnn_bwd")[d]
            wb, rb = bb[d, : g * h], bb[d, g * h :]
            hp = np.zeros((batch, h), F32)
            cp = np.zeros((batch, h), F32)
            y = np.zeros((t_len, batch, h), F32)
            steps = range(t_len - 1, -1, -1) if (direction == "reverse" or d == 1) else range(t_len)
            for t in steps:
                xt = x[t]
                if op == "LSTM":
                    z = r(name, np.concatenate([xt, hp], -1)) + (wb + rb)
                    i, o, f, c = (z[:, k * h : (k + 1) * h] for k in range(4))
                    cp = _sigmoid(f) * cp + _sigmoid(i) * np.tanh(c)
                    hp = (_sigmoid(o) * np.tanh(cp)).astype(F32)
                elif op == "RNN":
                    hp = np.tanh(r(name, np.concatenate([xt, hp], -1)) + (wb + rb)).astype(F32)
                elif lbr:
                    z = r(name, np.concatenate([xt, hp], -1))
                    bias = np.concatenate([wb[: 2 * h] + rb[: 2 * h], wb[2 * h :], rb[2 * h :]])
                    z = z + bias
                    zz, rg = _sigmoid(z[:, :h]), _sigmoid(z[:, h : 2 * h])
                    ht = np.tanh(z[:, 2 * h : 3 * h] + rg * z[:, 3 * h :])
                    hp = ((1 - zz) * ht + zz * hp).astype(F32)
                else:
                    zr = r(name + "_zr", np.concatenate([xt, hp], -1)) + (wb[: 2 * h] + rb[: 2 * h])
                    zz, rg = _sigmoid(zr[:, :h]), _sigmoid(zr[:, h:])
                    ht = np.tanh(r(name + "_h", np.concatenate([xt, rg * hp], -1)) + (wb[2 * h :] + rb[2 * h :]))
                    hp = ((1 - zz) * ht + zz * hp).astype(F32)
                y[t] = hp
            ys.append(y)
            hs.append(hp)
            cs.append(cp)
        out = [np.stack(ys, 1), np.stack(hs, 0)]
        return out + [np.stack(cs, 0)] if op == "LSTM" else out

    return Family(
        model,
        {"X": rng.uniform(-1, 1, (5, 3, inputs)).astype(F32)},
        [{"X": rng.uniform(-1, 1, (t, 1, inputs)).astype(F32)} for t in (3, 4, 5, 6)],
        ref,
        tile_rows=tile_rows,
    )


def _transformer() -> Family:
    """Self-attention, symbolic B and T; q/k/v weights behind Transpose, DequantizeLinear, Mul(Cast(int8))."""
    rng = np.random.default_rng(14)
    d, heads = 20, 2
    dh = d // heads
    wq_t = rng.uniform(-0.4, 0.4, (d, d)).astype(F32)  # stored (N, K): Transpose folds
    wk_q = rng.integers(-127, 128, (d, d)).astype(np.int8)
    wv_q = rng.integers(-127, 128, (d, d)).astype(np.int8)
    sk, sv = np.array(0.004, F32), np.array(0.003, F32)
    wo = rng.uniform(-0.4, 0.4, (d, d)).astype(F32)
    bo = rng.uniform(-0.3, 0.3, d).astype(F32)
    inits = {
        "WqT": wq_t,
        "Wk_q": wk_q,
        "sk": sk,
        "Wv_q": wv_q,
        "sv": sv,
        "Wo": wo,
        "bo": bo,
        "split": np.array([0, 0, heads, dh], np.int64),
        "merge": np.array([0, 0, d], np.int64),
        "scale": np.array(1 / np.sqrt(dh), F32),
    }
    nodes = [
        helper.make_node("Transpose", ["WqT"], ["Wq"], perm=[1, 0]),
        helper.make_node("DequantizeLinear", ["Wk_q", "sk"], ["Wk"]),
        helper.make_node("Cast", ["Wv_q"], ["Wv_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["Wv_f", "sv"], ["Wv"]),
        helper.make_node("MatMul", ["x", "Wq"], ["q"], name="q_proj"),
        helper.make_node("MatMul", ["x", "Wk"], ["k"], name="k_proj"),
        helper.make_node("MatMul", ["x", "Wv"], ["v"], name="v_proj"),
        helper.make_node("Reshape", ["q", "split"], ["q4"]),
        helper.make_node("Reshape", ["k", "split"], ["k4"]),
        helper.make_node("Reshape", ["v", "split"], ["v4"]),
        helper.make_node("Transpose", ["q4"], ["qh"], perm=[0, 2, 1, 3]),
        helper.make_node("Transpose", ["k4"], ["khT"], perm=[0, 2, 3, 1]),
        helper.make_node("Transpose", ["v4"], ["vh"], perm=[0, 2, 1, 3]),
        helper.make_node("MatMul", ["qh", "khT"], ["s"], name="scores"),
        helper.make_node("Mul", ["s", "scale"], ["s2"]),
        helper.make_node("Softmax", ["s2"], ["a"], axis=-1),
        helper.make_node("MatMul", ["a", "vh"], ["ctx"], name="context"),
        helper.make_node("Transpose", ["ctx"], ["ctx_t"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["ctx_t", "merge"], ["merged"]),
        helper.make_node("MatMul", ["merged", "Wo"], ["o"], name="out_proj"),
        helper.make_node("Add", ["o", "bo"], ["y"]),
    ]
    model = _model(nodes, [_info("x", ["B", "T", d])], [_info("y", ["B", "T", d])], inits)

    def ref(r: Ref, feeds):
        x = feeds["x"]
        b, t = x.shape[:2]

        def heads_of(v):
            return v.reshape(b, t, heads, dh).transpose(0, 2, 1, 3)

        q, k, v = (heads_of(r(n, x)) for n in ("q_proj", "k_proj", "v_proj"))
        a = _softmax((q @ k.transpose(0, 1, 3, 2)) * inits["scale"])
        ctx = (a @ v).transpose(0, 2, 1, 3).reshape(b, t, d)
        return [r("out_proj", ctx) + bo]

    return Family(
        model,
        {"x": rng.uniform(-1, 1, (2, 5, d)).astype(F32)},
        [{"x": rng.uniform(-1, 1, (1, t, d)).astype(F32)} for t in (3, 4, 6, 7)],
        ref,
    )


FAMILIES: dict[str, Callable[[], Family]] = {
    "gemm": _gemm,
    "conv": lambda: _conv("conv"),
    "conv_transpose": lambda: _conv("conv_transpose"),
    "grouped_conv": lambda: _conv("grouped_conv"),
    "lstm_one_tile": lambda: _recurrent("LSTM", "forward", 4, tile_rows=512),
    "lstm_forward": lambda: _recurrent("LSTM", "forward", 20),
    "lstm_reverse": lambda: _recurrent("LSTM", "reverse", 20),
    "lstm_bidirectional": lambda: _recurrent("LSTM", "bidirectional", 20),
    "gru_bidirectional": lambda: _recurrent("GRU", "bidirectional", 20),
    "gru_lbr_reverse": lambda: _recurrent("GRU", "reverse", 20, lbr=1),
    "rnn_bidirectional": lambda: _recurrent("RNN", "bidirectional", 20),
    "transformer": _transformer,
}


@pytest.fixture(scope="session")
def family_cache():
    return {}


@pytest.fixture
def family(request, family_cache) -> Family:
    name = request.param
    if name not in family_cache:
        family_cache[name] = FAMILIES[name]()
    return family_cache[name]


# --- the checks ------------------------------------------------------------------------------------------
def _mismatch(y: list[np.ndarray], ref: list[np.ndarray]) -> float:
    """Fraction of output elements that differ beyond float32 rounding (1e-4 relative + 1e-5)."""
    bad = total = 0
    for a, b in zip(y, ref, strict=True):
        assert a.shape == b.shape, (a.shape, b.shape)
        bad += int(np.sum(np.abs(a - b) > 1e-5 + 1e-4 * np.abs(b)))
        total += a.size
    return bad / total


TWIN = {
    "static": {"input_range": InputRange.ABSMAX},
    "absmax": {"input_range": InputRange.STATIC},
    "bm": {"bound_management": "none"},
    "ir_drop": {"ir_drop": 0.0},
    "combined": {"bound_management": "none", "ir_drop": 0.0},
}  # the reference with the option taken away (calibrated: without the gains; column: global compensation)


def _small(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Batch 1 (and, for a sequence, 2 time steps): the symbolic dims at their smallest useful values."""
    return {k: v[:2, :1] if k == "X" else v[:1] for k, v in feeds.items()}


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("family", list(FAMILIES), indirect=True)
def test_option_in_family_equals_numpy_reference(family: Family, option: str, tmp_path):
    overrides, t, noisy = OPTIONS[option]
    out = tmp_path / "m.analog.onnx"
    compile_model(
        family.model,
        out,
        periphery="standard",
        periphery_overrides={"tile_rows": family.tile_rows, "ir_drop": 0.0, **overrides},
        calibration=family.calibration,
    )
    # 1. exact with the per-MVM noise off, and the option matters (read_noise: the same file as static)
    if option != "read_noise":
        s = AnalogSession(out, chip_seed=1, t_inference=t, periphery_overrides=NOISE_OFF)
        y = s.run(family.feeds)
        assert _mismatch(y, family.reference(Ref(s), family.feeds)) <= 0.002
        if option in TWIN:
            twin = Ref(s, **TWIN[option])
        elif option == "calibrated":
            twin = Ref(s)
            twin.drop_gain = True
        else:  # column: the same chip with global compensation
            twin = Ref(
                AnalogSession(out, chip_seed=1, t_inference=t, compensation="global", periphery_overrides=NOISE_OFF)
            )
        assert _mismatch(y, family.reference(twin, family.feeds)) > 0.02, "the option changes nothing here"
    # 2. noise on: runs, finite, fresh noise every run and every chip; batch 1 and the stock onnxruntime too
    n1 = AnalogSession(out, chip_seed=1, t_inference=t, periphery_overrides=noisy or None)
    a, b = n1.run(family.feeds), n1.run(family.feeds)
    small = n1.run(_small(family.feeds))
    n1.program(2)
    c = n1.run(family.feeds)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    stock = ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"])
    plain = stock.run(None, family.feeds) + stock.run(None, _small(family.feeds))
    for y in (*a, *c, *small, *plain):
        assert np.all(np.isfinite(y))
    assert [y.shape for y in plain] == [y.shape for y in a + small]
    assert any(np.abs(ya - yb).max() > 0 for ya, yb in zip(a, b, strict=True))
    assert any(np.abs(ya - yc).max() > 0 for ya, yc in zip(a, c, strict=True))
