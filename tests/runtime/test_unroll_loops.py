"""Recurrent Loops unrolled in the session's model (anacompile/runtime/unroll_loops.py): bit for bit the Loop.

The unrolled session feeds every step the bank slice the Loop body would have cut for it, so with every
noise source on its outputs equal the Loop session's (``unroll_steps=0``) exactly, run after run (the
offset streams advance alike), for every recurrent form: directions, GRU/RNN, sequence_lens, initial
states, several row tiles, bound management, calibrated output ranges, switchable sessions and extra
outputs; sequence lengths change between runs, lengths above ``unroll_steps`` keep the Loop, and so do
shapes seen once and shapes beyond the session's unrolled models. With the noise off, the unrolled
session equals the numpy reference of tests/test_periphery_matrix.py.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from anacompile.compiler import compile_model
from anacompile.runtime.session import AnalogSession
from anacompile.runtime.unroll_loops import MAX_UNROLLED_SESSIONS, UNROLL_AFTER_RUNS, loop_sites
from tests.passes.test_recurrent import CASES, feeds_for, source_model
from tests.test_periphery_matrix import FAMILIES, NOISE_OFF, OPTIONS, Ref, _mismatch

FORMS = {  # case of tests/passes/test_recurrent.py, compile overrides of the standard periphery
    "lstm_bidirectional_tiles": ("lstm_bidirectional", {"tile_rows": 4}),
    "lstm_seq_lens_bm": ("lstm_seq_lens", {"bound_management": "iterative", "adc_bound": 1.5}),
    "lstm_layout1_initial_seq_lens": ("lstm_layout1", {}),
    "gru_lbr0_tiles_bm": ("gru_lbr0", {"tile_rows": 4, "bound_management": "iterative", "adc_bound": 1.5}),
    "gru_lbr1_calibrated": ("gru_lbr1", {"output_range": "calibrated"}),
    "rnn_bidirectional_initial_seq_lens": ("rnn_bidirectional", {}),
}


def _compiled(tmp_path, case: str, overrides: dict, symbolic: bool = False):
    op, kwargs = CASES[case]
    src = source_model(op, **kwargs)
    if symbolic:  # time and batch as symbolic dims
        for value in list(src.graph.input) + list(src.graph.output):
            for k, dim in enumerate(value.type.tensor_type.shape.dim):
                if k < 2 or value.name == "Y":
                    dim.dim_param = f"d{k}"
    out = tmp_path / f"{case}.analog.onnx"
    calibration = [feeds_for(src, seed) for seed in (5, 6)] if overrides.get("output_range") else None
    compile_model(src, out, periphery="standard", periphery_overrides=overrides, calibration=calibration)
    return src, out


def _assert_same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape and np.array_equal(x, y)


def _unrolled(session: AnalogSession, feeds: dict) -> bool:
    """Whether the session runs ``feeds``' shapes unrolled (after its runs so far)."""
    key = tuple((k, np.shape(v)) for k, v in feeds.items() if k in session.input_names)
    return session._unroller._by_shapes.get((key, False)) is not None  # (shapes, one-thread parts session)


@pytest.mark.parametrize("form", sorted(FORMS))
def test_unrolled_noise_on_equals_the_loop_bit_for_bit(tmp_path, form):
    case, overrides = FORMS[form]
    src, out = _compiled(tmp_path, case, overrides)
    feeds = feeds_for(src)
    fast = AnalogSession(out, chip_seed=3, t_inference=3600.0)
    loop = AnalogSession(out, chip_seed=3, t_inference=3600.0, unroll_steps=0)
    runs = [(fast.run(feeds), loop.run(feeds)) for _ in range(3)]  # the first (one-off shapes) runs the Loop
    assert UNROLL_AFTER_RUNS == 2 and _unrolled(fast, feeds) and not loop._unroller
    for a, b in runs:
        _assert_same(a, b)
    assert any(np.abs(x - y).max() > 0 for x, y in zip(runs[0][0], runs[1][0], strict=True))  # fresh noise
    fast.program(4)
    loop.program(4)
    _assert_same(fast.run(feeds), loop.run(feeds))
    # the unrolled model reads no noise bank: every step is fed its own noise
    names = {i.name for i in list(fast._unroller._by_shapes.values())[-1][0].get_inputs()}
    assert "anacompile.noise_bank" not in names and any(".noise_step0" in n for n in names)


def test_sequence_lengths_change_and_long_ones_keep_the_loop(tmp_path):
    src, out = _compiled(tmp_path, "lstm_bidirectional", {"tile_rows": 4}, symbolic=True)
    rng = np.random.default_rng(0)
    fast = AnalogSession(out, chip_seed=1, t_inference=60.0, unroll_steps=6)
    loop = AnalogSession(out, chip_seed=1, t_inference=60.0, unroll_steps=0)
    assert MAX_UNROLLED_SESSIONS == 4
    # 7 steps > unroll_steps; 5 steps: the session has built its 4 unrolled models (3, 1, 6, 2 steps)
    for steps, unrolled in ((3, True), (7, False), (1, True), (6, True), (3, True), (2, True), (5, False)):
        feeds = {"X": rng.uniform(-1, 1, (steps, 2, 4)).astype(np.float32)}
        for _ in range(2):
            _assert_same(fast.run(feeds), loop.run(feeds))
        assert _unrolled(fast, feeds) == unrolled, steps
    built = [e for e in fast._unroller._by_shapes.values() if e is not None]
    assert len(built) == MAX_UNROLLED_SESSIONS


def test_unrolled_noise_off_equals_the_numpy_reference(tmp_path):
    family = FAMILIES["lstm_bidirectional"]()
    overrides = OPTIONS["combined"][0]  # abs-max, bound management, calibrated, IR drop, column compensation
    out = tmp_path / "m.analog.onnx"
    compile_model(
        family.model,
        out,
        periphery="standard",
        periphery_overrides={"tile_rows": family.tile_rows, **overrides},
        calibration=family.calibration,
    )
    s = AnalogSession(out, chip_seed=1, t_inference=3600.0, periphery_overrides=NOISE_OFF)
    first = s.run(family.feeds)
    y = s.run(family.feeds)
    assert _unrolled(s, family.feeds)
    _assert_same(y, first)  # the Loop's run and the unrolled one
    assert _mismatch(y, family.reference(Ref(s), family.feeds)) <= 0.002


def test_switchable_and_extra_outputs_equal_the_loop(tmp_path):
    src, out = _compiled(tmp_path, "gru_lbr0", {"tile_rows": 4})
    proto = onnx.load(str(out))
    loop_node = next(n for n in proto.graph.node if n.op_type == "Loop")
    extra = [loop_node.output[0]]  # a Loop output that is no graph output: the final state of direction 0
    feeds = feeds_for(src)
    fast = AnalogSession(out, chip_seed=2, switchable=True, extra_outputs=extra)
    loop = AnalogSession(out, chip_seed=2, switchable=True, extra_outputs=extra, unroll_steps=0)
    names = fast.output_names + extra
    _assert_same(fast.run(feeds, names), loop.run(feeds, names))  # the first run of these shapes: the Loop
    for digital in ([], ["rnn_fwd_h"], ["rnn_fwd_zr", "rnn_bwd_zr", "rnn_fwd_h", "rnn_bwd_h"]):
        fast.set_digital(digital)
        loop.set_digital(digital)
        _assert_same(fast.run(feeds, names), loop.run(feeds, names))
        assert _unrolled(fast, feeds)
    np.testing.assert_allclose(fast.run(feeds)[0], fast.run_digital(feeds)[0], rtol=1e-5, atol=1e-5)


def test_loops_that_are_not_unrolled(tmp_path):
    _, out = _compiled(tmp_path, "lstm", {})
    s = AnalogSession(out, chip_seed=None)
    proto = s._session_proto
    names = [layer.name for layer in s.layers]
    assert [site.layers for site in loop_sites(proto, names)] == [("rnn",)]

    def variant(edit) -> onnx.ModelProto:
        m = onnx.ModelProto()
        m.CopyFrom(proto)
        edit(m.graph, next(n for n in m.graph.node if n.op_type == "Loop"))
        return m

    def trip_from_data(g, loop):  # the trip count is an input's value, not a shape
        g.input.append(onnx.helper.make_tensor_value_info("steps", onnx.TensorProto.INT64, []))
        loop.input[0] = "steps"

    def with_condition(g, loop):  # the loop condition decides when to stop
        g.input.append(onnx.helper.make_tensor_value_info("go", onnx.TensorProto.BOOL, []))
        loop.input[1] = "go"

    def condition_in_body(g, loop):
        body = loop.attribute[0].g
        body.node.append(onnx.helper.make_node("Not", [body.input[1].name], ["stop"]))
        body.output[0].name = "stop"

    for edit in (trip_from_data, with_condition, condition_in_body):
        assert loop_sites(variant(edit), names) == [], edit.__name__


def _bytes_equal(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    """Equal to the bit, the sign of zero included (np.array_equal takes -0 for +0)."""
    pairs = zip(a, b, strict=True) if len(a) == len(b) else None
    return pairs is not None and all(x.shape == y.shape and x.tobytes() == y.tobytes() for x, y in pairs)


def _zero_row_steps(session: AnalogSession) -> int:
    """Step-0 MVMs of the session's unrolled models that multiply only the x rows of their weights."""
    return sum(e[3] for e in session._unroller._by_shapes.values() if e is not None)


@pytest.mark.parametrize(
    ("case", "overrides", "zero_rows"),
    [
        ("lstm", {}, 1),  # no initial state: step 0 runs [x_0, 0] as x_0 on W's x rows
        ("lstm_bidirectional", {"read_noise": 0, "ir_drop": 0}, 2),  # lean, both directions
        ("gru_lbr0_seq_lens", {"input_range": "absmax"}, 1),  # abs-max DAC: max |X| over the row; r h_0 stays
        ("rnn", {"bound_management": "iterative", "adc_bound": 1.5}, 1),  # bound management's passes
        ("lstm_bidirectional", {"tile_rows": 4}, 0),  # row tiles pad X: not changed
        ("lstm_initial_states", {}, 0),  # given initial states: not changed
    ],
)
def test_zero_initial_state_step_equals_the_loop_to_the_bit(tmp_path, case, overrides, zero_rows):
    src, out = _compiled(tmp_path, case, overrides)
    feeds = feeds_for(src)
    fast = AnalogSession(out, chip_seed=3, t_inference=3600.0)
    loop = AnalogSession(out, chip_seed=3, t_inference=3600.0, unroll_steps=0)
    for _ in range(4):
        assert _bytes_equal(fast.run(feeds), loop.run(feeds))
    assert _unrolled(fast, feeds) and _zero_row_steps(fast) == zero_rows


def test_zero_initial_state_under_the_digital_switch(tmp_path):
    """A switchable session's layers sit in If branches: their step 0 keeps [x_0, 0] (it once referenced
    weight slices the branch could not see: onnxruntime refused the unrolled model)."""
    src, out = _compiled(tmp_path, "lstm", {})
    feeds = feeds_for(src)
    fast = AnalogSession(out, chip_seed=2, switchable=True)
    loop = AnalogSession(out, chip_seed=2, switchable=True, unroll_steps=0)
    for digital in ([], ["rnn"], []):
        fast.set_digital(digital)
        loop.set_digital(digital)
        for _ in range(2):
            assert _bytes_equal(fast.run(feeds), loop.run(feeds))
    assert _unrolled(fast, feeds) and _zero_row_steps(fast) == 0


@pytest.mark.parametrize("periphery", ["standard", "lean"])
def test_digits_lstm_unrolled_equals_the_loop_to_the_bit(tmp_path, periphery):
    """The real digits LSTM at batch 64 and 128, every noise source on. Lean once differed (logits by up to
    0.3 in 2 of 6 runs): with the steps' noise shapes declared, onnxruntime fused each step's MatMul and noise
    Add into a Gemm, which rounds once where the Loop body's FusedMatMul + Add round twice."""
    from anacompile.evaluate.datasets import load_digits_split
    from tests.conftest import MODELS

    out = tmp_path / "lstm.onnx"
    overrides = ["ir_drop=0", "read_noise=0"] if periphery == "lean" else []
    compile_model(MODELS / "digits_lstm_hwa.onnx", out, calibration="digits", periphery_overrides=overrides)
    x = load_digits_split()[1].x
    fast = AnalogSession(out, chip_seed=3, t_inference=86400.0)
    loop = AnalogSession(out, chip_seed=3, t_inference=86400.0, unroll_steps=0)
    for batch in (64, 128):
        feeds = {"input": x[:batch].reshape(-1, 8, 8)}
        for _ in range(4):
            assert _bytes_equal(fast.run(feeds), loop.run(feeds)), batch
        assert _unrolled(fast, feeds)
    assert _zero_row_steps(fast) == 2  # one per input shapes: step 0 multiplies the 8 x rows of 72
