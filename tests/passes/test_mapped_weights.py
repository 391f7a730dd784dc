"""optimize scores the matrices compile maps: mapped_weight_matrices == the matrices decoded from the compiled file."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from anacompile import contract, devices
from anacompile.cli import app
from anacompile.compiler import compile_model, read_report
from anacompile.errors import ModelLoadError
from anacompile.mapping import decode_pairs, get_mapping
from anacompile.passes.mapped_weights import mapped_weight_matrices
from anacompile.programming.weights import load_weight_matrices


def _model() -> onnx.ModelProto:
    """A MatMul behind a Transpose, a Gemm (transB, alpha) and a grouped Conv, each with a BatchNorm folded into
    its weight as ``Mul(W, s)``, a plain MatMul, and an activation x activation MatMul (digital)."""
    rng = np.random.default_rng(3)
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    inits = {
        "W1t": f(8, 16),  # stored transposed (PyTorch Linear)
        "B2": f(6, 8),
        "s2": (1 + rng.random((6, 1))).astype(np.float32),  # a BatchNorm's per-output scale
        "c2": f(6),
        "Wc": f(4, 2, 3, 3),  # group=2: (C_out, C_in/group, k, k)
        "sc": (1 + rng.random((4, 1, 1, 1))).astype(np.float32),
        "W4": f(6, 5),
    }
    nodes = [
        helper.make_node("Transpose", ["W1t"], ["W1"], perm=[1, 0]),
        helper.make_node("MatMul", ["x", "W1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Mul", ["B2", "s2"], ["B2s"]),
        helper.make_node("Gemm", ["r", "B2s", "c2"], ["y"], transB=1, alpha=0.5, name="fc2"),
        helper.make_node("MatMul", ["y", "W4"], ["z"], name="fc4"),
        helper.make_node("Transpose", ["y"], ["yt"]),
        helper.make_node("MatMul", ["y", "yt"], ["gram"], name="gram"),
        helper.make_node("Mul", ["Wc", "sc"], ["Wcs"]),
        helper.make_node("Conv", ["img", "Wcs"], ["feat"], group=2, name="conv", pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16]),
            helper.make_tensor_value_info("img", TensorProto.FLOAT, ["N", 4, 5, 5]),
        ],
        [
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 5]),
            helper.make_tensor_value_info("gram", TensorProto.FLOAT, ["N", "N"]),
            helper.make_tensor_value_info("feat", TensorProto.FLOAT, ["N", 4, 5, 5]),
        ],
        [numpy_helper.from_array(a, k) for k, a in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), inits


def _compiled_matrices(path) -> list[np.ndarray]:
    """Each analog layer's W = decoded target conductances x column scales, from the compiled file alone."""
    proto = onnx.load(str(path))
    report = read_report(proto)
    mapping = get_mapping("single")
    dev = devices.get(report.device["name"]) if "name" in report.device else devices.get("pcm")
    gain = mapping.gain_us(dev.g_min_us, dev.g_max_us)
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    out = []
    for layer in (row for row in report.layers if row.analog):
        k, n = layer.weight_shape
        u = np.asarray(decode_pairs(inits[f"{layer.name}.{contract.G_TARGET}"], mapping.significance, gain))
        u = u.reshape(-1, u.shape[-2], n)
        gamma = inits[f"{layer.name}.{contract.COL_SCALE}"].reshape(u.shape[0], 1, n)
        out.append((u * gamma).reshape(-1, n)[:k])
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mapped")
    proto, inits = _model()
    src, out = folder / "m.onnx", folder / "m.analog.onnx"
    onnx.save(proto, src)
    compile_model(src, out, periphery_overrides=["tile_rows=8"], seed=0)  # fc1 (K = 16) on two row tiles
    return src, out, inits


def test_optimize_scores_the_matrices_compile_maps(files):
    src, out, inits = files
    mapped = mapped_weight_matrices(src)
    compiled = _compiled_matrices(out)
    assert [m.shape for m in mapped] == [(16, 8), (8, 6), (6, 5), (18, 2), (18, 2)]  # fc1, fc2, fc4, 2 conv groups
    assert len(mapped) == len(compiled)
    for m, c in zip(mapped, compiled, strict=True):
        np.testing.assert_allclose(c, m, rtol=1e-5, atol=1e-6 * np.abs(m).max())
    # and the formulas the compiler applied: transpose folded; BatchNorm scale, transB and alpha in W
    np.testing.assert_allclose(mapped[0], inits["W1t"].T, rtol=1e-6)
    np.testing.assert_allclose(mapped[1], 0.5 * (inits["B2"] * inits["s2"]).T, rtol=1e-6)
    wcs = inits["Wc"] * inits["sc"]
    np.testing.assert_allclose(mapped[3], wcs[:2].reshape(2, -1).T, rtol=1e-6)


def test_the_raw_initializers_are_not_what_compile_maps(files):
    """The old reading (raw initializers) misses every folded weight: what optimize used to score."""
    src, _, _ = files
    raw = load_weight_matrices(src)
    assert [m.shape for m in raw] == [(6, 5)]  # only the plain MatMul
    assert len(mapped_weight_matrices(src)) == 5


def test_the_cli_optimises_on_the_mapped_matrices(files, tmp_path, monkeypatch):
    import anacompile.programming.optimizer as optimizer

    seen = {}

    def spy(weights, *args, **kwargs):
        seen["shapes"] = [np.shape(w) for w in weights]
        raise ModelLoadError("stopped after reading the weights")

    monkeypatch.setattr(optimizer, "optimize_strategy", spy)
    src, _, _ = files
    r = CliRunner().invoke(app, ["optimize", "--weights", str(src), "-o", str(tmp_path / "s.json")])
    assert r.exit_code == 1
    assert seen["shapes"] == [(16, 8), (8, 6), (6, 5), (18, 2), (18, 2)]


def test_a_model_with_nothing_mapped_is_one_clear_error(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 2]) for n in ("a", "b")],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [2, 2])],
    )
    path = tmp_path / "none.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(ModelLoadError, match="no layer that compile maps"):
        mapped_weight_matrices(path)
