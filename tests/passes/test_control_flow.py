"""Weight-bearing ops inside If branches and Loop/Scan bodies (issue 11, item 1).

Weights as Constant nodes inside a branch, as outer-scope initializers, and behind Slice/Concat chains (the
PyTorch LSTM export) are mapped like top-level ones, each op on its own tiles: exact against numpy (or the
source model in onnxruntime) with noise off, calibrated from the values inside the subgraphs, and runnable
with every periphery option in the compiled file (stock onnxruntime) and the analog session.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from anacompile.compiler import compile_model
from anacompile.graph_walk import FLAT, expose_values
from anacompile.runtime.session import AnalogSession
from tests._support.devices import NOISELESS_DEVICE

F = TensorProto.FLOAT
K, N, B = 6, 5, 3
RNG = np.random.default_rng(7)
W_THEN = RNG.uniform(-1, 1, (K, N)).astype(np.float32)
W_ELSE = RNG.uniform(-1, 1, (K, N)).astype(np.float32)
B_ELSE = RNG.uniform(-1, 1, N).astype(np.float32)
W_BODY = RNG.uniform(-1, 1, (K, K)).astype(np.float32)
W_INNER = RNG.uniform(-1, 1, (K, K)).astype(np.float32)


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    path = tmp_path_factory.mktemp("device") / "noiseless.yaml"
    path.write_text(NOISELESS_DEVICE)
    return path


def _const(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name), name=name)


def _run(path_or_model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    data = path_or_model.SerializeToString() if isinstance(path_or_model, onnx.ModelProto) else str(path_or_model)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"]).run(None, feeds)


def if_model() -> onnx.ModelProto:
    """y = If(c): then Relu(x @ W_then) (W a Constant node in the branch), else Gemm(-x, W_else, b) (outer-scope
    initializers)."""
    then = helper.make_graph(
        [_const("w_then", W_THEN), helper.make_node("MatMul", ["x", "w_then"], ["mm"], name="mm_then"),
         helper.make_node("Relu", ["mm"], ["y_then"])],
        "then", [], [helper.make_tensor_value_info("y_then", F, [B, N])],
    )  # fmt: skip
    other = helper.make_graph(
        [
            helper.make_node("Neg", ["x"], ["x_neg"]),
            helper.make_node("Gemm", ["x_neg", "w_else", "b_else"], ["y_else"], name="gemm_else"),
        ],
        "else", [], [helper.make_tensor_value_info("y_else", F, [B, N])],
    )  # fmt: skip
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other, name="branch")],
        "if_model",
        [helper.make_tensor_value_info("x", F, [B, K]), helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", F, [B, N])],
        [numpy_helper.from_array(W_ELSE, "w_else"), numpy_helper.from_array(B_ELSE, "b_else")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def loop_model(steps: int = 4) -> onnx.ModelProto:
    """A Loop carrying h (B, K): h = tanh(h @ W_body) (outer initializer), then an If inside the body on the
    iteration's parity: odd steps h = h @ W_inner (a Constant node two levels deep), even steps keep h. Each
    step's h is also a scan output."""
    inner_then = helper.make_graph(
        [_const("w_inner", W_INNER), helper.make_node("MatMul", ["t", "w_inner"], ["u"], name="mm_inner")],
        "odd", [], [helper.make_tensor_value_info("u", F, None)],
    )  # fmt: skip
    inner_else = helper.make_graph(
        [helper.make_node("Identity", ["t"], ["u_keep"])],
        "even",
        [],
        [helper.make_tensor_value_info("u_keep", F, None)],
    )
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["h_in", "w_body"], ["s"], name="mm_body"),
            helper.make_node("Tanh", ["s"], ["t"]),
            _const("two", np.array(2, np.int64)),
            helper.make_node("Mod", ["i", "two"], ["parity"]),
            _const("one", np.array(1, np.int64)),
            helper.make_node("Equal", ["parity", "one"], ["odd"]),
            helper.make_node(
                "If", ["odd"], ["h_out"], then_branch=inner_then, else_branch=inner_else, name="parity_if"
            ),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Identity", ["h_out"], ["scan_h"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h_in", F, [B, K]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h_out", F, [B, K]),
            helper.make_tensor_value_info("scan_h", F, [B, K]),
        ],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trip", "", "h0"], ["h_final", "hs"], body=body, name="loop")],
        "loop_model",
        [helper.make_tensor_value_info("h0", F, [B, K])],
        [helper.make_tensor_value_info("h_final", F, [B, K]), helper.make_tensor_value_info("hs", F, [steps, B, K])],
        [numpy_helper.from_array(np.array(steps, np.int64), "trip"), numpy_helper.from_array(W_BODY, "w_body")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def loop_reference(h0: np.ndarray, steps: int = 4) -> tuple[np.ndarray, np.ndarray]:
    h, hs = h0.astype(np.float64), []
    for i in range(steps):
        h = np.tanh(h @ W_BODY)
        if i % 2:
            h = h @ W_INNER
        hs.append(h)
    return h, np.stack(hs)


def scan_model(steps: int = 3) -> onnx.ModelProto:
    """Scan over x (T, B, K): y_t = x_t @ W_body with W_body a Constant node in the body, plus a running sum."""
    body = helper.make_graph(
        [
            _const("w_scan", W_BODY),
            helper.make_node("MatMul", ["x_t", "w_scan"], ["y_t"], name="mm_scan"),
            helper.make_node("Add", ["acc_in", "y_t"], ["acc_out"]),
        ],
        "scan_body",
        [helper.make_tensor_value_info("acc_in", F, [B, K]), helper.make_tensor_value_info("x_t", F, [B, K])],
        [helper.make_tensor_value_info("acc_out", F, [B, K]), helper.make_tensor_value_info("y_t", F, [B, K])],
    )
    graph = helper.make_graph(
        [helper.make_node("Scan", ["acc0", "xs"], ["acc", "ys"], body=body, num_scan_inputs=1, name="scan")],
        "scan_model",
        [helper.make_tensor_value_info("xs", F, [steps, B, K])],
        [helper.make_tensor_value_info("acc", F, [B, K]), helper.make_tensor_value_info("ys", F, [steps, B, K])],
        [numpy_helper.from_array(np.zeros((B, K), np.float32), "acc0")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _compile(tmp_path, model, device, **kw):
    src, out = tmp_path / "src.onnx", tmp_path / "src.analog.onnx"
    onnx.save(model, src)
    report = compile_model(src, out, device=device, force=True, **kw)
    onnx.checker.check_model(str(out), full_check=True)
    return out, report


def test_if_branches_each_get_their_own_layers_exact_with_noise_off(tmp_path, device):
    out, report = _compile(tmp_path, if_model(), device, periphery="ideal")
    rows = {layer.name: layer for layer in report.layers}
    assert rows["mm_then"].analog and rows["gemm_else"].analog
    assert rows["mm_then"].graph == "branch.then_branch" and rows["gemm_else"].graph == "branch.else_branch"
    assert report.totals["tiles"] == 2
    x = RNG.uniform(-1, 1, (B, K)).astype(np.float32)
    session = AnalogSession(out, 0)
    for c, ideal in ((True, np.maximum(x @ W_THEN, 0)), (False, -x @ W_ELSE + B_ELSE)):
        feeds = {"x": x, "c": np.array(c)}
        np.testing.assert_allclose(_run(out, feeds)[0], ideal, rtol=1e-5, atol=1e-5)  # the file, stock ORT
        np.testing.assert_allclose(session.run(feeds)[0], ideal, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(session.run_digital(feeds)[0], ideal, rtol=1e-5, atol=1e-5)


def test_loop_body_and_an_if_inside_it_are_mapped_exact_with_noise_off(tmp_path, device):
    out, report = _compile(tmp_path, loop_model(), device, periphery="ideal")
    rows = {layer.name: layer for layer in report.layers}
    assert rows["mm_body"].graph == "loop.body"
    assert rows["mm_inner"].graph == "loop.body/parity_if.then_branch"
    assert all(layer.analog for layer in report.layers)
    h0 = RNG.uniform(-1, 1, (B, K)).astype(np.float32)
    h, hs = loop_reference(h0)
    for got in (_run(out, {"h0": h0}), AnalogSession(out, 0).run({"h0": h0})):
        np.testing.assert_allclose(got[0], h, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got[1], hs, rtol=1e-4, atol=1e-5)
    noisy, _ = _compile(tmp_path, loop_model(), "pcm", periphery_overrides=["bound_management=iterative"])
    session = AnalogSession(noisy, 0, t_inference=1.0)  # bank slices inside the Loop and the If in its body
    first, second = session.run({"h0": h0})[1], session.run({"h0": h0})[1]
    assert np.all(np.isfinite(first)) and not np.array_equal(first, second)  # fresh noise per run
    assert np.all(np.isfinite(_run(noisy, {"h0": h0})[1]))


def test_scan_body_is_mapped_exact_with_noise_off(tmp_path, device):
    out, report = _compile(tmp_path, scan_model(), device, periphery="ideal")
    assert [(layer.name, layer.graph, layer.analog) for layer in report.layers] == [("mm_scan", "scan.body", True)]
    xs = RNG.uniform(-1, 1, (3, B, K)).astype(np.float32)
    for got in (_run(out, {"xs": xs}), AnalogSession(out, 0).run({"xs": xs})):
        np.testing.assert_allclose(got[1], xs @ W_BODY, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got[0], (xs @ W_BODY).sum(0), rtol=1e-5, atol=1e-5)


def test_expose_values_stacks_loop_iterations_and_empties_the_branch_not_taken():
    model = loop_model()
    depths = expose_values(model.graph, {"t": "t.seen", "u": "u.seen"})
    assert depths == {"t.seen": 1, "u.seen": FLAT}  # u: in an If inside the Loop body (odd steps only)
    model.graph.output.extend([onnx.ValueInfoProto(name="t.seen"), onnx.ValueInfoProto(name="u.seen")])
    h0 = RNG.uniform(-1, 1, (B, K)).astype(np.float32)
    h, hs, t_seen, u_seen = _run(model, {"h0": h0})
    _, ref = loop_reference(h0)
    t_ref = np.tanh(np.concatenate([h0[None], ref[:-1]]) @ W_BODY)  # every step's t, stacked
    np.testing.assert_allclose(t_seen, t_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(u_seen, (t_ref[1::2] @ W_INNER).reshape(-1), rtol=1e-5, atol=1e-5)  # steps 1, 3
    np.testing.assert_allclose(hs, ref, rtol=1e-5, atol=1e-6)  # the model's own outputs are unchanged
    model = if_model()
    expose_values(model.graph, {"mm": "mm.seen"})
    model.graph.output.append(onnx.ValueInfoProto(name="mm.seen"))
    x = RNG.uniform(-1, 1, (B, K)).astype(np.float32)
    np.testing.assert_allclose(_run(model, {"x": x, "c": np.array(True)})[1], x @ W_THEN, rtol=1e-5)
    assert _run(model, {"x": x, "c": np.array(False)})[1].shape == (0,)


def test_calibration_sees_the_values_inside_branches_and_bodies(tmp_path):
    """Static input ranges are the max |x| of each layer's tile inputs, observed inside the subgraphs; a branch
    the data never takes keeps the full-scale default (and the fixed ADC bound) and is reported."""
    x = RNG.uniform(-2, 2, (B, K)).astype(np.float32)
    feeds = [{"x": x, "c": np.array(True)}]
    out, report = _compile(
        tmp_path,
        if_model(),
        "pcm",
        periphery="calibrated",
        calibration=feeds,
        periphery_overrides=["input_range=static"],
    )
    proto = onnx.load(str(out))
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    assert float(inits["mm_then.in_range"].reshape(-1)[0]) == pytest.approx(float(np.abs(x).max()), rel=1e-6)
    assert float(inits["gemm_else.in_range"].reshape(-1)[0]) == 1.0  # never taken on the calibration data
    assert np.all(inits["gemm_else.out_gain"] == 1.0) and not np.all(inits["mm_then.out_gain"] == 1.0)
    assert any("gemm_else" in note and "no calibration" in note for note in report.notes)
    h0 = RNG.uniform(-1, 1, (B, K)).astype(np.float32)
    out, _ = _compile(
        tmp_path, loop_model(), "pcm", periphery="calibrated", calibration=[{"h0": h0}],
        periphery_overrides=["input_range=static"],
    )  # fmt: skip
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer}
    _, hs = loop_reference(h0)
    t_odd = np.tanh(np.concatenate([h0[None], hs[:-1]])[1::2] @ W_BODY)  # mm_inner reads t on odd steps
    assert float(inits["mm_body.in_range"].reshape(-1)[0]) == pytest.approx(
        float(np.abs(np.concatenate([h0[None], hs[:-1]])).max()), rel=1e-5
    )
    assert float(inits["mm_inner.in_range"].reshape(-1)[0]) == pytest.approx(float(np.abs(t_odd).max()), rel=1e-5)


def test_a_stored_weight_read_in_both_branches_is_programmed_once(tmp_path, device):
    """One outer-scope initializer read by a MatMul in each branch: one stored weight, two uses (issue 11,
    item 5's rule); copies of a weight (Constant nodes in each branch) get their own tiles instead."""
    branches = {
        key: helper.make_graph(
            [helper.make_node("MatMul", [x, "w_else"], [f"y_{key}"], name=f"mm_{key}")],
            key,
            [],
            [helper.make_tensor_value_info(f"y_{key}", F, [B, N])],
        )
        for key, x in (("then", "x"), ("else", "x_neg"))
    }
    graph = helper.make_graph(
        [
            helper.make_node("Neg", ["x"], ["x_neg"]),
            helper.make_node(
                "If", ["c"], ["y"], then_branch=branches["then"], else_branch=branches["else"], name="branch"
            ),
        ],
        "shared",
        [helper.make_tensor_value_info("x", F, [B, K]), helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", F, [B, N])],
        [numpy_helper.from_array(W_ELSE, "w_else")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    out, report = _compile(tmp_path, model, device, periphery="ideal")
    analog = [layer for layer in report.layers if layer.analog]
    assert len(analog) == 1 and analog[0].uses == ["mm_else", "mm_then"] and report.totals["tiles"] == 1
    x = RNG.uniform(-1, 1, (B, K)).astype(np.float32)
    session = AnalogSession(out, 0)
    for c, sign in ((True, 1.0), (False, -1.0)):
        np.testing.assert_allclose(session.run({"x": x, "c": np.array(c)})[0], sign * x @ W_ELSE, rtol=1e-5, atol=1e-5)


def test_a_weight_stored_as_an_initializer_of_the_branch_itself(tmp_path, device):
    """A subgraph's own initializer (GraphProto.initializer of the branch) is mapped, and removed from the
    branch once programmed."""
    model = if_model()
    then = next(a.g for a in model.graph.node[0].attribute if a.name == "then_branch")
    del then.node[0]  # the Constant node w_then ...
    then.initializer.append(numpy_helper.from_array(W_THEN, "w_then"))  # ... as the branch's initializer
    out, report = _compile(tmp_path, model, device, periphery="ideal")
    assert {(layer.name, layer.graph) for layer in report.layers if layer.analog} == {
        ("mm_then", "branch.then_branch"),
        ("gemm_else", "branch.else_branch"),
    }
    compiled = onnx.load(str(out))
    then = next(a.g for a in compiled.graph.node[-1].attribute if a.name == "then_branch")
    assert not then.initializer
    x = RNG.uniform(-1, 1, (B, K)).astype(np.float32)
    np.testing.assert_allclose(_run(out, {"x": x, "c": np.array(True)})[0], np.maximum(x @ W_THEN, 0), atol=1e-5)
