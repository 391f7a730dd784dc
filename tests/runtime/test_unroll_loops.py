"""Recurrent Loops unrolled in the session's model (anacompile/runtime/unroll_loops.py): bit for bit the Loop.

The unrolled session feeds every step the bank slice the Loop body would have cut for it, so with every
noise source on its outputs equal the Loop session's (``unroll_steps=0``) exactly, run after run (the
offset streams advance alike), for every recurrent form: directions, GRU/RNN, sequence_lens, initial
states, several row tiles, bound management, calibrated output ranges, switchable sessions and extra
outputs; sequence lengths change between runs, and lengths above ``unroll_steps`` keep the Loop.
The noise-off equality with the numpy reference runs through the unrolled path in
tests/test_periphery_matrix.py (its sessions unroll by default; asserted here).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from anacompile.compiler import compile_model
from anacompile.runtime.session import AnalogSession
from anacompile.runtime.unroll_loops import loop_sites
from tests.passes.test_recurrent import CASES, feeds_for, source_model

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


def _unrolled(session: AnalogSession) -> bool:
    entries = list(session._unroller._by_shapes.values())
    return bool(entries) and entries[-1] is not None


@pytest.mark.parametrize("form", sorted(FORMS))
def test_unrolled_noise_on_equals_the_loop_bit_for_bit(tmp_path, form):
    case, overrides = FORMS[form]
    src, out = _compiled(tmp_path, case, overrides)
    feeds = feeds_for(src)
    fast = AnalogSession(out, chip_seed=3, t_inference=3600.0)
    loop = AnalogSession(out, chip_seed=3, t_inference=3600.0, unroll_steps=0)
    runs = [(fast.run(feeds), loop.run(feeds)) for _ in range(3)]
    assert _unrolled(fast) and not loop._unroller
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
    for steps, unrolled in ((3, True), (7, False), (1, True), (6, True), (3, True)):
        feeds = {"X": rng.uniform(-1, 1, (steps, 2, 4)).astype(np.float32)}
        _assert_same(fast.run(feeds), loop.run(feeds))
        assert _unrolled(fast) == unrolled, steps
    assert len(fast._unroller._by_shapes) == 4  # one entry per input shapes, the 7-step one without a model
    # the periphery matrix's sessions (default unroll_steps) run its sequences unrolled
    default = AnalogSession(out, chip_seed=1)
    default.run({"X": rng.uniform(-1, 1, (5, 3, 4)).astype(np.float32)})
    assert _unrolled(default)


def test_switchable_and_extra_outputs_equal_the_loop(tmp_path):
    src, out = _compiled(tmp_path, "gru_lbr0", {"tile_rows": 4})
    proto = onnx.load(str(out))
    loop_node = next(n for n in proto.graph.node if n.op_type == "Loop")
    extra = [loop_node.output[0]]  # a Loop output that is no graph output: the final state of direction 0
    feeds = feeds_for(src)
    fast = AnalogSession(out, chip_seed=2, switchable=True, extra_outputs=extra)
    loop = AnalogSession(out, chip_seed=2, switchable=True, extra_outputs=extra, unroll_steps=0)
    names = fast.output_names + extra
    for digital in ([], ["rnn_fwd_h"], ["rnn_fwd_zr", "rnn_bwd_zr", "rnn_fwd_h", "rnn_bwd_h"]):
        fast.set_digital(digital)
        loop.set_digital(digital)
        _assert_same(fast.run(feeds, names), loop.run(feeds, names))
        assert _unrolled(fast)
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
