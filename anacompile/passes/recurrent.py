"""LSTM, GRU and RNN on crossbar tiles: every gate MVM of every time step is an analog MVM.

An ONNX ``LSTM``, ``GRU`` or ``RNN`` node (any ``direction``, ``layout`` 0 or 1, optional ``sequence_lens``,
``initial_h``/``initial_c``, LSTM peepholes ``P``, ``clip``, ``input_forget``, GRU ``linear_before_reset``,
any activation of the ONNX list) becomes a ``Loop`` over time steps whose body holds one AnalogMatMul per
analog layer; the gate nonlinearities, peepholes, the cell update and the ``sequence_lens`` masking stay
digital. The weights W (input) and R (recurrent) of a direction are stacked into one matrix, so that one
crossbar MVM computes all gates from the tile input [x_t, h_{t-1}] (K = input_size + hidden_size rows):

* LSTM: one layer per direction, columns [i | o | f | c] (N = 4H); bias Wb + Rb digital.
* RNN: one layer per direction, N = H.
* GRU, ``linear_before_reset=1``: one layer per direction with columns [z | r | h_x | h_h] (N = 4H),
  weight [[Wz' Wr' Wh' 0], [Rz' Rr' 0 Rh']] (' = transposed), bias [Wbz+Rbz, Wbr+Rbr, Wbh, Rbh]: the
  R_h h term keeps its own columns, so h~ = g(h_x + r * h_h) is exact.
* GRU, ``linear_before_reset=0``: two layers per direction, ``_zr`` on [x_t, h_{t-1}] -> [z | r]
  (N = 2H, bias Wb+Rb of z, r) and ``_h`` on [x_t, r * h_{t-1}] -> h~ (N = H, bias Wbh + Rbh), since
  R_h multiplies r * h_{t-1}, which exists only after the first MVM of the step.

Bidirectional ops get one set of layers per direction (names ``<op>_fwd``, ``<op>_bwd``), both run in the
same Loop; the reverse direction reads the sequence reversed within each sequence's length
(``ReverseSequence``) and its outputs are reversed back. Equations: ONNX operator specification of LSTM,
GRU and RNN (opset 14); activation defaults as onnxruntime applies them (LeakyRelu alpha 0.01, HardSigmoid
0.2/0.5, Elu 1.0, others 0).

Per-MVM noise differs between time steps: in the file, each step's RandomNormalLike draws afresh; in the
analog session each AnalogMatMul in a Loop body reads the bank slice that starts at
``noise_start + i * step`` for iteration i (:class:`anacompile.runtime.passes.noise_inputs.FeedNoisePass`); the
session's digital model stacks each body AnalogMatMul's step inputs into a Loop output (T, batch, K), which
counts the layer's MVMs per run (T x batch x N noise values) and gives its ideal inputs.

Static input ranges (calibration): the tile input [x_t, h_{t-1}] is no tensor of the source graph, so
``RecurrentLayer.tile_input`` rebuilds it from the op's input X: the source op alone runs in onnxruntime on the
calibration X (constant initial states and sequence lengths included; non-constant ones are taken as zeros
and full length) and its Y gives h_{t-1} of every step; for GRU's ``_h`` layer, r_t is computed from it in
numpy. So each tile's range comes from the states the FP model really reaches, not from the [-1, 1] bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_ir as ir
from onnx import helper

from anacompile.passes._layer import LayerOp, LayerPlan
from anacompile.passes.lowering import EmitContext, Lowering, StaysDigital, attr_value, const_array

__all__ = ["LOWERINGS", "RecurrentLayer", "RecurrentSpec", "emit_recurrent", "plan_recurrent"]

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
DEFAULT_ACTIVATIONS = {"LSTM": ("Sigmoid", "Tanh", "Tanh"), "GRU": ("Sigmoid", "Tanh"), "RNN": ("Tanh",)}
# activation -> (takes alpha, takes beta, default alpha, default beta), as onnxruntime's rnn_helpers
ACTIVATION_ARGS = {
    "sigmoid": (False, False, 0.0, 0.0),
    "tanh": (False, False, 0.0, 0.0),
    "relu": (False, False, 0.0, 0.0),
    "affine": (True, True, 0.0, 0.0),
    "leakyrelu": (True, False, 0.01, 0.0),
    "thresholdedrelu": (True, False, 0.0, 0.0),
    "scaledtanh": (True, True, 0.0, 0.0),
    "hardsigmoid": (True, True, 0.2, 0.5),
    "elu": (True, False, 1.0, 0.0),
    "softsign": (False, False, 0.0, 0.0),
    "softplus": (False, False, 0.0, 0.0),
}
CALIBRATION_OPSET = 14  # LSTM/GRU/RNN with ``layout``


@dataclass(frozen=True)
class Activation:
    """One activation function of a recurrent op, with its alpha and beta (unused ones are 0)."""

    name: str
    alpha: float = 0.0
    beta: float = 0.0

    def numpy(self, x: np.ndarray) -> np.ndarray:
        """The activation in numpy (calibration)."""
        a, b = np.float32(self.alpha), np.float32(self.beta)
        fn = {
            "sigmoid": lambda: 1.0 / (1.0 + np.exp(-x)),
            "tanh": lambda: np.tanh(x),
            "relu": lambda: np.maximum(x, 0),
            "affine": lambda: a * x + b,
            "leakyrelu": lambda: np.where(x >= 0, x, a * x),
            "thresholdedrelu": lambda: np.where(x > a, x, 0),
            "scaledtanh": lambda: a * np.tanh(b * x),
            "hardsigmoid": lambda: np.clip(a * x + b, 0, 1),
            "elu": lambda: np.where(x >= 0, x, a * (np.exp(x) - 1)),
            "softsign": lambda: x / (1 + np.abs(x)),
            "softplus": lambda: np.log1p(np.exp(x)),
        }[self.name]
        return fn().astype(np.float32)


@dataclass(frozen=True)
class RecurrentSpec:
    """The attributes of one LSTM/GRU/RNN node that shape its Loop body.

    Attributes:
        name: the node's layer name (prefix of the names of everything emitted for it).
        op: ``LSTM``, ``GRU`` or ``RNN``.
        hidden: hidden size H.
        inputs: input size I.
        directions: ``(False,)`` forward, ``(True,)`` reverse, ``(False, True)`` bidirectional (True = reversed).
        activations: per direction, the op's activations (LSTM f, g, h; GRU f, g; RNN f).
        clip: cell clip threshold applied to every gate pre-activation, or None.
        layout: 0 (X is (T, batch, I)) or 1 (X is (batch, T, I)).
        input_forget: LSTM couples the forget gate to the input gate, f = 1 - i.
        linear_before_reset: GRU applies r after the R_h h product.
        peepholes: LSTM P per direction as (P_i, P_o, P_f), or None.
    """

    name: str
    op: str
    hidden: int
    inputs: int
    directions: tuple[bool, ...]
    activations: tuple[tuple[Activation, ...], ...]
    clip: float | None = None
    layout: int = 0
    input_forget: bool = False
    linear_before_reset: bool = False
    peepholes: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...] | None = field(default=None, compare=False)


def _activations(node: ir.Node, op: str, n_dir: int) -> tuple[tuple[Activation, ...], ...]:
    names = [str(a) for a in attr_value(node, "activations", DEFAULT_ACTIVATIONS[op])]
    per_dir = len(DEFAULT_ACTIVATIONS[op])
    if "activations" not in node.attributes:
        names = names * n_dir
    if len(names) != per_dir * n_dir:  # the ONNX spec (and onnxruntime) want one set per direction
        raise StaysDigital(f"{len(names)} activations given, {op} needs {per_dir} per direction ({n_dir})")
    alphas = list(attr_value(node, "activation_alpha", []))
    betas = list(attr_value(node, "activation_beta", []))
    acts = []
    for raw in names:  # alpha and beta values are consumed in order by the activations that take them
        key = raw.lower()
        if key not in ACTIVATION_ARGS:
            raise StaysDigital(f"activation {raw!r} is not one of the ONNX recurrent activations")
        takes_a, takes_b, a, b = ACTIVATION_ARGS[key]
        if takes_a and alphas:
            a = float(alphas.pop(0))
        if takes_b and betas:
            b = float(betas.pop(0))
        acts.append(Activation(key, a, b))
    return tuple(tuple(acts[d * per_dir : (d + 1) * per_dir]) for d in range(n_dir))


def _float_const(node: ir.Node, index: int, what: str, required: bool) -> np.ndarray | None:
    value = node.inputs[index] if len(node.inputs) > index else None
    if value is None:
        if required:
            raise StaysDigital(f"{what} is missing")
        return None
    array = const_array(value)
    if array is None:
        raise StaysDigital(f"{what} ({value.name}) is not a constant initializer, so it cannot be programmed")
    if not np.issubdtype(array.dtype, np.floating):
        raise StaysDigital(f"{what} dtype {array.dtype} is not floating point")
    return array.astype(np.float64)


def plan_recurrent(node: ir.Node, name: str) -> list[LayerPlan]:
    """Plan an LSTM/GRU/RNN node as one analog layer per direction (two for GRU with lbr=0).

    Raises:
        StaysDigital: the op cannot be mapped (non-constant weights, unknown activation or direction).
    """
    op = node.op_type
    gates = GATES[op]
    x_type = node.inputs[0].dtype if node.inputs[0] is not None else None
    if x_type is not None and x_type != ir.DataType.FLOAT:
        raise StaysDigital(f"X has dtype {x_type.name}; the analog Loop runs float32")
    w = _float_const(node, 1, "W", True)
    r = _float_const(node, 2, "R", True)
    b = _float_const(node, 3, "B", False)
    peep = _float_const(node, 7, "P", False) if op == "LSTM" else None
    direction = str(attr_value(node, "direction", "forward"))
    dirs = {"forward": (False,), "reverse": (True,), "bidirectional": (False, True)}.get(direction)
    if dirs is None:
        raise StaysDigital(f"direction {direction!r} is not forward, reverse or bidirectional")
    n_dir, hidden, inputs = len(dirs), int(r.shape[-1]), int(w.shape[-1])
    if w.shape != (n_dir, gates * hidden, inputs) or r.shape != (n_dir, gates * hidden, hidden):
        raise StaysDigital(f"W {list(w.shape)} / R {list(r.shape)} do not fit {n_dir} direction(s) of {op}")
    if int(attr_value(node, "hidden_size", hidden)) != hidden:
        raise StaysDigital(f"hidden_size {attr_value(node, 'hidden_size', 0)} does not match R's {hidden}")
    b = np.zeros((n_dir, 2 * gates * hidden)) if b is None else b.reshape(n_dir, 2 * gates * hidden)
    layout = int(attr_value(node, "layout", 0))
    if layout not in (0, 1):
        raise StaysDigital(f"layout {layout} is not 0 or 1")
    clip = attr_value(node, "clip", None)
    spec = RecurrentSpec(
        name=name,
        op=op,
        hidden=hidden,
        inputs=inputs,
        directions=dirs,
        activations=_activations(node, op, n_dir),
        clip=None if clip is None else float(clip),
        layout=layout,
        input_forget=bool(attr_value(node, "input_forget", 0)) if op == "LSTM" else False,
        linear_before_reset=bool(attr_value(node, "linear_before_reset", 0)) if op == "GRU" else False,
        peepholes=None
        if peep is None
        else tuple(
            tuple(
                peep.reshape(n_dir, 3 * hidden)[d, k * hidden : (k + 1) * hidden].astype(np.float32) for k in range(3)
            )
            for d in range(n_dir)
        ),
    )
    calib = _Calibration(node, spec, w, r, b, peep)
    plans = []
    for d in range(n_dir):
        suffix = "" if n_dir == 1 else ("_fwd", "_bwd")[d]
        for part, weight, bias in _layer_weights(spec, w[d], r[d], b[d, : gates * hidden], b[d, gates * hidden :]):
            plans.append(
                LayerPlan(
                    name=name + suffix + part,
                    source_op=op,
                    weight=weight,
                    bias=bias,
                    input=node.inputs[0],
                    op=RecurrentLayer(spec, d, part, calib),
                )
            )
    return plans


@dataclass(frozen=True)
class RecurrentLayer(LayerOp):
    """The op data of one analog layer of a recurrent op: the op's spec, the direction and the part.

    Attributes:
        spec: the op's attributes (shared by all its layers).
        direction: 0 forward (or the op's only direction), 1 the reverse direction of a bidirectional op.
        part: ``""``, or for GRU with ``linear_before_reset=0`` ``"_zr"`` / ``"_h"``.
        calibration: rebuilds the tile inputs from X (:meth:`tile_input`).
    """

    spec: RecurrentSpec
    direction: int
    part: str
    calibration: _Calibration = field(compare=False, repr=False)

    def tile_input(self, x: np.ndarray) -> np.ndarray:
        """The tile inputs [x_t, h_{t-1}] (GRU ``_h``: [x_t, r_t h_{t-1}]), (T, B, K), for the op's input X:
        the source op runs in onnxruntime on X to give the states (module docstring)."""
        return self.calibration.tile_input(x, self.direction, self.part)


def _layer_weights(spec: RecurrentSpec, w: np.ndarray, r: np.ndarray, wb: np.ndarray, rb: np.ndarray):
    """(part suffix, stacked weight (I + H, N), digital bias (N,)) of one direction's analog layers."""
    h = spec.hidden
    if spec.op != "GRU":
        return [("", np.vstack([w.T, r.T]), wb + rb)]
    if spec.linear_before_reset:
        top = np.hstack([w[: 2 * h].T, w[2 * h :].T, np.zeros((spec.inputs, h))])
        bottom = np.hstack([r[: 2 * h].T, np.zeros((h, h)), r[2 * h :].T])
        bias = np.concatenate([wb[: 2 * h] + rb[: 2 * h], wb[2 * h :], rb[2 * h :]])
        return [("", np.vstack([top, bottom]), bias)]
    return [
        ("_zr", np.vstack([w[: 2 * h].T, r[: 2 * h].T]), wb[: 2 * h] + rb[: 2 * h]),
        ("_h", np.vstack([w[2 * h :].T, r[2 * h :].T]), wb[2 * h :] + rb[2 * h :]),
    ]


class _Calibration:
    """Builds the tile inputs [x_t, h_{t-1}] (GRU ``_h``: [x_t, r_t h_{t-1}]) from X for static input ranges."""

    def __init__(self, node: ir.Node, spec: RecurrentSpec, w, r, b, peep) -> None:
        self.spec = spec
        self.w, self.r, self.b = w.astype(np.float32), r.astype(np.float32), b.astype(np.float32)
        consts = {}
        for index, key in ((4, "sequence_lens"), (5, "initial_h"), (6, "initial_c")):
            value = node.inputs[index] if len(node.inputs) > index else None
            consts[key] = None if value is None else const_array(value)
        if spec.layout:  # onnxruntime runs LSTM/GRU/RNN with layout 0 only: states to (D, B, H)
            consts = {k: a if a is None or k == "sequence_lens" else a.transpose(1, 0, 2) for k, a in consts.items()}
        self.lens, self.h0 = consts["sequence_lens"], consts["initial_h"]
        names = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"]
        arrays = {"W": w, "R": r, "B": b, "P": peep, **consts}
        inits = [
            onnx.numpy_helper.from_array(np.asarray(a, np.int32 if k == "sequence_lens" else np.float32), k)
            for k, a in arrays.items()
            if a is not None
        ]
        have = {t.name for t in inits} | {"X"}
        inputs = [n if n in have else "" for n in names[: 8 if spec.op == "LSTM" else 6]]
        while inputs[-1] == "":
            inputs.pop()
        attrs = {a.name: a.value for a in node.attributes.values() if a.name != "layout"}
        proto = helper.make_node(spec.op, inputs, ["Y"], **attrs)
        graph = helper.make_graph(
            [proto],
            "calibration",
            [helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, None)],
            [helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, None)],
            inits,
        )
        self.model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", CALIBRATION_OPSET)])

    def tile_input(self, x: np.ndarray, d: int, part: str) -> np.ndarray:
        """Tile inputs of direction ``d``'s layer ``part`` for the source op's input ``x``, shape (T, B, K)."""
        import onnxruntime as ort

        spec, h = self.spec, self.spec.hidden
        x = np.asarray(x, np.float32)
        if spec.layout:
            x = x.transpose(1, 0, 2)  # -> (T, B, I)
        sess = ort.InferenceSession(self.model.SerializeToString(), providers=["CPUExecutionProvider"])
        y = sess.run(None, {"X": x})[0][:, d]  # (T, B, H)
        h0 = np.zeros_like(y[0]) if self.h0 is None else self.h0[d].astype(np.float32)
        if spec.directions[d]:  # reversed: step t follows step t + 1
            h_prev = np.concatenate([y[1:], h0[None]], axis=0)
        else:
            h_prev = np.concatenate([h0[None], y[:-1]], axis=0)
        if part == "_h":  # GRU, linear_before_reset=0: the second MVM reads r_t * h_{t-1}
            wr, rr = self.w[d, h : 2 * h], self.r[d, h : 2 * h]
            pre = x @ wr.T + h_prev @ rr.T + self.b[d, h : 2 * h] + self.b[d, 4 * h : 5 * h]
            if spec.clip is not None:
                pre = np.clip(pre, -spec.clip, spec.clip)
            h_prev = spec.activations[d][0].numpy(pre) * h_prev
        return np.concatenate([x, h_prev], axis=-1)


class _Builder:
    """Appends nodes to a list and names every output ``<prefix><n>``.

    A Loop body and the main graph share one namespace (a body value must not shadow an outer one), and
    onnx-ir would name both graphs' values ``val_0, val_1, ...``, so every value here is named explicitly.
    """

    def __init__(self, prefix: str, counter: list[int]) -> None:
        self.prefix, self.counter, self.nodes = prefix, counter, []

    def __call__(self, op_type: str, *inputs: ir.Value | None, n_out: int = 1, **attrs):
        node = ir.node(op_type, list(inputs), attributes=attrs or None, num_outputs=n_out)
        return self.add(node)[0] if n_out == 1 else self.add(node)

    def add(self, node: ir.Node) -> tuple[ir.Value, ...]:
        """Append a node made elsewhere and name its outputs."""
        for out in node.outputs:
            out.name = f"{self.prefix}{self.counter[0]}"
            self.counter[0] += 1
        self.nodes.append(node)
        return tuple(node.outputs)


def _apply(bld: _Builder, act: Activation, x: ir.Value, const) -> ir.Value:
    """One recurrent activation as standard ONNX ops (Affine and ScaledTanh have no op of their own)."""
    simple = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "softsign": "Softsign", "softplus": "Softplus"}
    if act.name in simple:
        return bld(simple[act.name], x)
    if act.name == "affine":
        return bld("Add", bld("Mul", x, const(act.alpha)), const(act.beta))
    if act.name == "scaledtanh":
        return bld("Mul", bld("Tanh", bld("Mul", x, const(act.beta))), const(act.alpha))
    if act.name == "hardsigmoid":
        return bld("HardSigmoid", x, alpha=act.alpha, beta=act.beta)
    op = {"leakyrelu": "LeakyRelu", "thresholdedrelu": "ThresholdedRelu", "elu": "Elu"}[act.name]
    return bld(op, x, alpha=act.alpha)


def emit_recurrent(ctx: EmitContext) -> tuple[list[ir.Node], list[ir.Value | None]]:
    """LSTM/GRU/RNN -> Loop over time steps with the analog layers' AnalogMatMul nodes in its body.

    Main graph: (layout 1: Transpose X to time-major) -> per direction (reversed: ReverseSequence) ->
    AnalogChipWeights of every layer -> Loop(T) -> reverse the reversed outputs back -> Y, Y_h, Y_c in the
    source layout. Loop body, per direction: Gather x_t -> Concat [x_t, h_{t-1}] -> AnalogMatMul (bias
    included) -> gates (digital) -> h_t (and c_t); with ``sequence_lens``, steps t >= len keep the state and
    give Y = 0, as onnxruntime does.
    """
    ops = [p.op for p in ctx.plans]
    assert all(isinstance(op, RecurrentLayer) for op in ops), ctx.plan.name
    node, spec = ctx.node, ops[0].spec
    h_size, n_dir = spec.hidden, len(spec.directions)
    counter = [0]
    main, body = _Builder(f"{spec.name}.rnn_", counter), _Builder(f"{spec.name}.step_", counter)
    chips: list[ir.Node] = []

    consts: dict[tuple, ir.Value] = {}

    def const(value, dtype=np.float32) -> ir.Value:  # main-graph initializers, shared by equal values
        array = np.asarray(value, dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in consts:
            consts[key] = ctx.initializer(f"rnn_c{len(consts)}", array)
        return consts[key]

    def i64(value) -> ir.Value:
        return const(value, np.int64)

    def opt(index: int) -> ir.Value | None:
        return node.inputs[index] if len(node.inputs) > index else None

    # -- main graph, before the loop ---------------------------------------------------------------
    x_tm = opt(0) if spec.layout == 0 else main("Transpose", opt(0), perm=[1, 0, 2])
    shape = main("Shape", x_tm)
    trip = main("Gather", shape, i64(0), axis=0)
    lens = main("Cast", opt(4), to=ir.DataType.INT64) if opt(4) is not None else None

    def reverse(v: ir.Value) -> ir.Value:
        if lens is not None:  # reverse each sequence within its own length; padding stays in place
            return main("ReverseSequence", v, lens, batch_axis=1, time_axis=0)
        return main("Slice", v, i64([-1]), i64([np.iinfo(np.int64).min]), i64([0]), i64([-1]))

    zeros = None
    if opt(5) is None or (spec.op == "LSTM" and opt(6) is None):
        state_shape = main("Concat", main("Slice", shape, i64([1]), i64([2])), i64([h_size]), axis=0)
        zeros = main("ConstantOfShape", state_shape, value=ir.tensor(np.zeros(1, np.float32)))

    def initial(v: ir.Value | None) -> list[ir.Value]:
        if v is None:
            return [zeros] * n_dir
        if spec.layout:
            v = main("Transpose", v, perm=[1, 0, 2])
        return [main("Gather", v, i64(d), axis=0) for d in range(n_dir)]

    xs = [reverse(x_tm) if rev else x_tm for rev in spec.directions]
    h0 = initial(opt(5))
    c0 = initial(opt(6)) if spec.op == "LSTM" else []

    # -- loop body ----------------------------------------------------------------------------------
    def body_input(suffix: str, dtype: ir.DataType, shape: list) -> ir.Value:
        return ir.Value(name=f"{spec.name}.step_{suffix}", type=ir.TensorType(dtype), shape=ir.Shape(shape))

    def typed(value: ir.Value, dtype: ir.DataType, shape: list) -> ir.Value:  # body outputs need a type
        value.type, value.shape = ir.TensorType(dtype), ir.Shape(shape)
        return value

    it = body_input("i", ir.DataType.INT64, [])
    cond = body_input("cond", ir.DataType.BOOL, [])
    h_in = [body_input(f"h{d}", ir.DataType.FLOAT, [None, h_size]) for d in range(n_dir)]
    c_in = [body_input(f"c{d}", ir.DataType.FLOAT, [None, h_size]) for d in range(n_dir)] if c0 else []
    cond_out = body("Identity", cond)
    mask = body("Unsqueeze", body("Less", it, lens), i64([1])) if lens is not None else None
    plans = {(p.op.direction, p.op.part): p for p in ctx.plans}

    def analog(x: ir.Value, d: int, part: str = "") -> ir.Value:
        plan = plans[(d, part)]
        (*chip, mm), _ = ctx.analog(x, plan)  # no chip stage in a file without a chip (chip_state none)
        chips.extend(chip)  # the chip stage stays in the main graph, before the Loop
        return body.add(mm)[0]

    def gate(x: ir.Value, act: Activation) -> ir.Value:
        if spec.clip is not None:
            x = body("Clip", x, const(-spec.clip), const(spec.clip))
        return _apply(body, act, x, const)

    h_out, c_out, y_out = [], [], []
    for d in range(n_dir):
        x_t = body("Gather", xs[d], it, axis=0)
        h_prev = h_in[d]
        two_mvms = spec.op == "GRU" and not spec.linear_before_reset
        z = analog(body("Concat", x_t, h_prev, axis=1), d, "_zr" if two_mvms else "")
        acts = spec.activations[d]
        c_new = None
        if spec.op == "LSTM":
            gi, go, gf, gc = body("Split", z, i64([h_size] * 4), axis=1, n_out=4)
            c_prev = c_in[d]
            if spec.peepholes is not None:
                p_i, p_o, p_f = (const(p) for p in spec.peepholes[d])
                gi, gf = body("Add", gi, body("Mul", c_prev, p_i)), body("Add", gf, body("Mul", c_prev, p_f))
            i_gate = gate(gi, acts[0])
            f_gate = body("Sub", const(1.0), i_gate) if spec.input_forget else gate(gf, acts[0])
            c_new = body("Add", body("Mul", f_gate, c_prev), body("Mul", i_gate, gate(gc, acts[1])))
            if spec.peepholes is not None:
                go = body("Add", go, body("Mul", c_new, p_o))
            h_new = body("Mul", gate(go, acts[0]), _apply(body, acts[2], c_new, const))
        elif spec.op == "GRU":
            if not two_mvms:
                gz, gr, ghx, ghh = body("Split", z, i64([h_size] * 4), axis=1, n_out=4)
                r_gate = gate(gr, acts[0])
                cand = gate(body("Add", ghx, body("Mul", r_gate, ghh)), acts[1])
            else:
                gz, gr = body("Split", z, i64([h_size] * 2), axis=1, n_out=2)
                r_gate = gate(gr, acts[0])
                rh = body("Mul", r_gate, h_prev)
                cand = gate(analog(body("Concat", x_t, rh, axis=1), d, "_h"), acts[1])
            z_gate = gate(gz, acts[0])
            h_new = body("Add", body("Mul", body("Sub", const(1.0), z_gate), cand), body("Mul", z_gate, h_prev))
        else:
            h_new = gate(z, acts[0])
        y_t = body("Identity", h_new)  # a scan output of its own (h_new is also a state output)
        if mask is not None:  # steps past a sequence's length keep its state and output zeros
            y_t = body("Where", mask, h_new, const(0.0))
            h_new = body("Where", mask, h_new, h_prev)
            if c_new is not None:
                c_new = body("Where", mask, c_new, c_in[d])
        h_out.append(h_new)
        if c_new is not None:
            c_out.append(c_new)
        y_out.append(y_t)

    want = [_wanted(v) for v in list(node.outputs) + [None] * 3][:3]
    scans = y_out if want[0] else []
    typed(cond_out, ir.DataType.BOOL, [])
    for v in h_out + c_out + scans:
        typed(v, ir.DataType.FLOAT, [None, h_size])
    graph = ir.Graph(
        [it, cond, *h_in, *c_in], [cond_out, *h_out, *c_out, *scans], nodes=body.nodes, name=f"{spec.name}.loop_body"
    )
    loop = ir.node(
        "Loop",
        [trip, None, *h0, *c0],
        attributes={"body": ir.AttrGraph("body", graph)},
        num_outputs=len(h_out) + len(c_out) + len(scans),
        name=f"{spec.name}.loop",
    )
    outs = main.add(loop)
    pre, main.nodes = main.nodes[:-1], []  # the Loop goes after the chip nodes, which follow ``pre``
    h_fin, c_fin, ys = outs[:n_dir], outs[n_dir : n_dir + len(c_out)], outs[n_dir + len(c_out) :]

    # -- main graph, after the loop -----------------------------------------------------------------
    def stack(values, axis: int) -> ir.Value:
        parts = [main("Unsqueeze", v, i64([axis])) for v in values]
        return parts[0] if len(parts) == 1 else main("Concat", *parts, axis=axis)

    results: list[ir.Value | None] = [None, None, None]
    if want[0]:
        y = stack([reverse(v) if rev else v for v, rev in zip(ys, spec.directions, strict=True)], 1)
        results[0] = main("Transpose", y, perm=[2, 0, 1, 3]) if spec.layout else y
    for k, finals in ((1, h_fin), (2, c_fin)):
        if want[k] and finals:
            s = stack(finals, 0)
            results[k] = main("Transpose", s, perm=[1, 0, 2]) if spec.layout else s
    return pre + chips + [loop] + main.nodes, results


def _wanted(value: ir.Value | None) -> bool:
    return value is not None and bool(value.name) and (bool(value.uses()) or value.is_graph_output())


LOWERINGS = tuple(Lowering(op, plan_recurrent, emit_recurrent) for op in GATES)
"""The lowerings of this module, listed in :data:`anacompile.passes.op_registry.LOWERINGS`."""
