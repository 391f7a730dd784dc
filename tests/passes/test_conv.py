"""Conv and ConvTranspose on crossbar tiles: exact with noise off, op counts, patches, groups, tiling, the CNN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from anacompile import ops
from anacompile.compiler import compile_model, read_report
from anacompile.crossbar.periphery import PERIPHERY_PRESETS
from anacompile.evaluate.datasets import load_digits_split
from anacompile.evaluate.monte_carlo import evaluate
from anacompile.passes import (
    CalibrateInputRangesPass,
    MarkAnalogOpsPass,
    PartitionWeightsPass,
    SplitGroupedConvsPass,
)
from anacompile.passes._layer import DIGITAL_KEY, LAYER_KEY, analog_layers
from anacompile.passes.conv import ConvGeometry
from anacompile.runtime.digital_reference import digital_reference_model, without_patches
from anacompile.runtime.session import AnalogSession
from tests._support.devices import NOISELESS_DEVICE

OPSET = 17
MODELS = Path(__file__).resolve().parents[2] / "models"


def conv_model(
    op: str, x_shape: list[int], w_shape: list[int], bias: bool = True, seed: int = 0, opset: int = OPSET, **attrs
) -> onnx.ModelProto:
    """x -op(W, b)-> Relu -> y: one conv with random weights, batch dimension symbolic."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(w_shape).astype(np.float32)
    group = attrs.get("group", 1)
    c_out = w_shape[0] if op == "Conv" else w_shape[1] * group
    inits = [numpy_helper.from_array(w, "W")]
    inputs = ["x", "W"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(c_out).astype(np.float32), "B"))
        inputs.append("B")
    nodes = [helper.make_node(op, inputs, ["c"], name="conv", **attrs), helper.make_node("Relu", ["c"], ["y"])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *x_shape[1:]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *[None] * (len(x_shape) - 1)])
    graph = helper.make_graph(nodes, "g", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


# name: (op, x shape, w shape, attributes)
CASES = {
    "conv1d": ("Conv", [2, 3, 10], [4, 3, 3], {"pads": [1, 1]}),
    "conv1d_stride_dilation": ("Conv", [2, 2, 17], [3, 2, 4], {"strides": [3], "dilations": [2], "pads": [2, 0]}),
    "conv2d": ("Conv", [2, 3, 7, 7], [5, 3, 3, 3], {"pads": [1, 1, 1, 1]}),
    "stride": ("Conv", [2, 3, 9, 8], [4, 3, 3, 3], {"strides": [2, 3], "pads": [1, 1, 1, 1]}),
    "dilation": ("Conv", [2, 2, 9, 9], [4, 2, 3, 3], {"dilations": [2, 2], "pads": [2, 2, 2, 2]}),
    "asymmetric_pads": ("Conv", [2, 3, 6, 7], [4, 3, 2, 3], {"pads": [0, 1, 2, 0]}),
    "same_upper": ("Conv", [2, 3, 7, 6], [4, 3, 4, 3], {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    "same_lower": ("Conv", [2, 3, 7, 6], [4, 3, 4, 3], {"auto_pad": "SAME_LOWER", "strides": [2, 1]}),
    "valid": ("Conv", [2, 3, 7, 6], [4, 3, 3, 2], {"auto_pad": "VALID"}),
    "pointwise": ("Conv", [2, 6, 5, 5], [4, 6, 1, 1], {}),
    "pointwise_stride": ("Conv", [2, 6, 5, 5], [4, 6, 1, 1], {"strides": [2, 2]}),
    "conv3d": ("Conv", [2, 2, 4, 5, 5], [3, 2, 2, 3, 3], {"pads": [0, 1, 1, 1, 1, 0]}),
    "groups": ("Conv", [2, 4, 6, 6], [6, 2, 3, 3], {"group": 2, "pads": [1, 1, 1, 1]}),
    "groups_conv1d": ("Conv", [2, 6, 9], [6, 2, 3], {"group": 3, "strides": [2]}),
    "transpose": (
        "ConvTranspose",
        [2, 3, 4, 5],
        [3, 4, 3, 3],
        {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 0]},
    ),
    "transpose1d_dilation": ("ConvTranspose", [2, 2, 6], [2, 3, 3], {"strides": [3], "dilations": [2], "pads": [2, 1]}),
    "transpose_same_upper": (
        "ConvTranspose",
        [2, 3, 4, 5],
        [3, 2, 3, 4],
        {"strides": [2, 2], "auto_pad": "SAME_UPPER"},
    ),
    "transpose_output_shape": (
        "ConvTranspose",
        [2, 3, 4, 5],
        [3, 2, 3, 3],
        {"strides": [2, 2], "output_shape": [8, 10]},
    ),
    "transpose_groups": ("ConvTranspose", [2, 4, 4, 4], [4, 3, 2, 2], {"strides": [2, 2], "group": 2}),
    "no_bias": ("Conv", [2, 3, 6, 6], [4, 3, 3, 3], {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    "transpose_no_bias": ("ConvTranspose", [2, 3, 4, 4], [3, 2, 3, 3], {"strides": [2, 2]}),
    "groups_no_bias": ("Conv", [2, 4, 6, 6], [6, 2, 3, 3], {"group": 2}),
}
GROUPS = {"groups": 2, "groups_conv1d": 3, "transpose_groups": 2, "groups_no_bias": 2}


def case_model(case: str, **kwargs) -> onnx.ModelProto:
    """The source model of a named case (``*no_bias`` cases have no bias input)."""
    op, x_shape, w_shape, attrs = CASES[case]
    return conv_model(op, x_shape, w_shape, bias=not case.endswith("no_bias"), **kwargs, **attrs)


@pytest.fixture(scope="module")
def noiseless(tmp_path_factory):
    path = tmp_path_factory.mktemp("device") / "noiseless.yaml"
    path.write_text(NOISELESS_DEVICE)
    return path


def _run(model, x: np.ndarray) -> np.ndarray:
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _count(proto: onnx.ModelProto, op_type: str, domain: str = "") -> int:
    return sum(1 for n in proto.graph.node if n.op_type == op_type and n.domain == domain)


def _compile_ideal(tmp_path, device, model: onnx.ModelProto, name: str, **kwargs):
    src, out = tmp_path / f"{name}.onnx", tmp_path / f"{name}.analog.onnx"
    onnx.save(model, src)
    report = compile_model(src, out, device=device, periphery="ideal", **kwargs)
    return out, report


@pytest.mark.parametrize("case", sorted(CASES))
def test_noise_off_reproduces_the_source_conv(tmp_path, noiseless, case):
    op, x_shape, w_shape, _ = CASES[case]
    model = case_model(case)
    x = np.random.default_rng(1).standard_normal(x_shape).astype(np.float32)
    out, report = _compile_ideal(tmp_path, noiseless, model, case)
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    y_src = _run(model, x)
    np.testing.assert_allclose(_run(out, x), y_src, rtol=1e-5, atol=1e-5)  # stock onnxruntime, in-graph chip
    sess = AnalogSession(out)
    np.testing.assert_allclose(sess.run({"x": x})[0], y_src, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sess.run_digital({"x": x})[0], y_src, rtol=1e-5, atol=1e-5)
    groups = GROUPS.get(case, 1)
    pointwise = case == "pointwise"
    # each group is one analog layer: its patch op (none for a plain 1x1 conv), AnalogMatMul, two transposes
    assert _count(proto, ops.ANALOG_MATMUL, ops.DOMAIN) == groups
    assert _count(proto, op) == (0 if pointwise else groups)
    assert _count(proto, "Transpose") == 2 * groups
    assert (_count(proto, "Split"), _count(proto, "Concat")) == ((1, 1) if groups > 1 else (0, 0))
    k = w_shape[1] * int(np.prod(w_shape[2:])) if op == "Conv" else w_shape[0] // groups * int(np.prod(w_shape[2:]))
    n = w_shape[0] // groups if op == "Conv" else w_shape[1]
    assert [(layer.op, layer.analog, layer.weight_shape, layer.tiles) for layer in report.layers] == [
        (op, True, [k, n], [1, 1])
    ] * groups
    assert report.totals["weights_mapped"] == int(np.prod(w_shape))


@pytest.mark.parametrize("case", sorted(CASES))
def test_digital_model_runs_convs_without_patches(tmp_path, noiseless, case):
    """``run_digital`` runs a Conv layer as one Conv (no patch op, no Transposes); ConvTranspose and a switchable
    session keep the patch path (the switch's digital branch reads the patches: bit for bit all layers off)."""
    op, x_shape, _, _ = CASES[case]
    model = case_model(case)
    x = np.random.default_rng(4).standard_normal(x_shape).astype(np.float32)
    out, _ = _compile_ideal(tmp_path, noiseless, model, case)
    patch_path = digital_reference_model(onnx.load(str(out)))
    fast = without_patches(patch_path)
    onnx.checker.check_model(fast, full_check=True)
    groups = GROUPS.get(case, 1)
    if op == "Conv":
        assert (_count(fast, "Conv"), _count(fast, "Transpose"), _count(fast, "MatMul")) == (groups, 0, 0)
    else:
        assert [n.op_type for n in fast.graph.node] == [n.op_type for n in patch_path.graph.node]
    y_src = _run(model, x)
    np.testing.assert_allclose(_run(fast, x), y_src, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_run(fast, x), _run(patch_path, x), rtol=1e-5, atol=1e-5)
    switchable = AnalogSession(out, switchable=True, chip_seed=1)
    switchable.set_digital([layer.name for layer in switchable.layers])
    np.testing.assert_array_equal(switchable.run({"x": x})[0], switchable.run_digital({"x": x})[0])


def test_digital_model_keeps_a_patch_path_it_cannot_prove():
    """A patch kernel that is not the one-hot kernel of its window, or a tile input read elsewhere, keeps the
    patch path (the rewrite is exact only for the compiler's own patch op)."""
    rng = np.random.default_rng(0)
    e = np.zeros((4, 1, 2, 2), np.float32)
    e.reshape(4, 4)[np.arange(4), np.arange(4)] = 1.0
    w, b = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "E"], ["L.patches"], name="L.patches", kernel_shape=[2, 2], group=1),
        helper.make_node("Transpose", ["L.patches"], ["L.tile_input"], name="L.channels_last", perm=[0, 2, 3, 1]),
        helper.make_node("MatMul", ["L.tile_input", "L.weight"], ["L.digital_mm"]),
        helper.make_node("Add", ["L.digital_mm", "L.bias"], ["L.tile_output"]),
        helper.make_node("Transpose", ["L.tile_output"], ["y"], name="L.channels_first", perm=[0, 3, 1, 2]),
    ]

    def model(kernel: np.ndarray, extra_output: bool = False) -> onnx.ModelProto:
        inits = [
            numpy_helper.from_array(kernel, "E"),
            numpy_helper.from_array(w, "L.weight"),
            numpy_helper.from_array(b, "L.bias"),
        ]
        outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
        if extra_output:
            outs.append(helper.make_tensor_value_info("L.tile_input", TensorProto.FLOAT, None))
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 5, 5])
        return helper.make_model(helper.make_graph(nodes, "g", [x], outs, inits))

    assert _count(without_patches(model(e)), "Transpose") == 0  # the compiler's patch op: rewritten
    x = rng.standard_normal((2, 1, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(_run(without_patches(model(e)), x), _run(model(e), x), rtol=1e-5, atol=1e-5)
    shuffled = e[[1, 0, 2, 3]]
    assert _count(without_patches(model(shuffled)), "Transpose") == 2
    assert _count(without_patches(model(e, extra_output=True)), "Transpose") == 2


@pytest.mark.parametrize("opset", [13, 21])
@pytest.mark.parametrize("case", ["groups", "transpose_groups"])
def test_grouped_convs_split_at_every_opset(tmp_path, noiseless, case, opset):
    """Split takes its sizes as an input from opset 13 on, beside opset 18's optional ``num_outputs``."""
    x_shape = CASES[case][1]
    model = case_model(case, opset=opset)
    out, _ = _compile_ideal(tmp_path, noiseless, model, f"{case}_{opset}")
    x = np.random.default_rng(8).standard_normal(x_shape).astype(np.float32)
    np.testing.assert_allclose(_run(out, x), _run(model, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", sorted(set(CASES) - set(GROUPS)))
def test_numpy_patches_equal_the_graph_patches(case):
    """The calibration's numpy im2col (``ConvLayer.tile_input``) sees exactly what the tiles see."""
    op, x_shape, _, _ = CASES[case]
    source = case_model(case)
    model = ir.serde.deserialize_model(source)
    MarkAnalogOpsPass()(model)
    ((node, plan),) = analog_layers(model)
    geometry: ConvGeometry = plan.op.geometry
    x = np.random.default_rng(2).standard_normal(x_shape).astype(np.float32)
    patch = helper.make_node(op, ["x", "E"], ["p"], **geometry.patch_attributes())
    graph = helper.make_graph(
        [patch],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(geometry.one_hot_kernel(), "E")],
    )
    p = np.moveaxis(_run_patch(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), x), 1, -1)
    np.testing.assert_array_equal(plan.op.tile_input(x), p)  # bit-exact: one-hot copies
    assert p.shape[-1] == plan.k == geometry.k
    # and the patches times the weight matrix are the source conv (bias and Relu added here)
    bias = plan.bias if plan.bias is not None else 0.0
    ref = np.maximum(np.moveaxis(p.astype(np.float64) @ plan.weight + bias, -1, 1), 0)
    np.testing.assert_allclose(ref, _run(source, x), rtol=1e-5, atol=1e-5)


def _run_patch(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_conv_weight_rows_are_channel_major_and_bias_is_digital():
    model = ir.serde.deserialize_model(conv_model("Conv", [1, 3, 5, 5], [4, 3, 2, 3]))
    w = model.graph.initializers["W"].const_value.numpy()
    b = model.graph.initializers["B"].const_value.numpy()
    assert MarkAnalogOpsPass()(model).modified
    ((_, plan),) = analog_layers(model)
    assert plan.weight.shape == (18, 4) and plan.op.row_group == 6
    for c, i, j, co in [(0, 0, 0, 0), (1, 1, 2, 3), (2, 0, 1, 2)]:  # row (c, i, j) = c*6 + i*3 + j
        assert plan.weight[c * 6 + i * 3 + j, co] == w[co, c, i, j]
    np.testing.assert_array_equal(plan.bias, b)
    transposed = ir.serde.deserialize_model(conv_model("ConvTranspose", [1, 3, 5, 5], [3, 4, 2, 3]))
    wt = transposed.graph.initializers["W"].const_value.numpy()
    MarkAnalogOpsPass()(transposed)
    ((_, plan_t),) = analog_layers(transposed)
    assert plan_t.weight.shape == (18, 4)
    assert plan_t.weight[1 * 6 + 1 * 3 + 2, 3] == wt[1, 3, 1, 2]  # row (ci, i, j), column co: W[ci, co, i, j]


def test_split_grouped_convs_before_expected_and_idempotent():
    model = ir.serde.deserialize_model(conv_model("Conv", [1, 6, 5, 5], [9, 2, 3, 3], group=3))
    assert SplitGroupedConvsPass()(model).modified
    ops_after = [n.op_type for n in model.graph]
    assert ops_after == ["Split", "Conv", "Conv", "Conv", "Concat", "Relu"]
    assert all(n.attributes.get("group") is None for n in model.graph if n.op_type == "Conv")
    assert "W" not in model.graph.initializers and "B" not in model.graph.initializers
    assert not SplitGroupedConvsPass()(model).modified
    MarkAnalogOpsPass()(model)
    assert [plan.weight.shape for _, plan in analog_layers(model)] == [(18, 3)] * 3


@pytest.mark.parametrize(
    ("op", "x_shape", "w_shape"), [("Conv", [1, 4, 6, 6], [8, 1, 3, 3]), ("ConvTranspose", [1, 4, 6, 6], [4, 1, 3, 3])]
)
def test_depthwise_stays_digital_with_reason(tmp_path, noiseless, op, x_shape, w_shape):
    model = conv_model(op, x_shape, w_shape, group=4)
    irm = ir.serde.deserialize_model(model)
    assert not SplitGroupedConvsPass()(irm).modified
    MarkAnalogOpsPass()(irm)
    conv = next(n for n in irm.graph if n.op_type == op)
    assert LAYER_KEY not in conv.meta and "depthwise" in conv.meta[DIGITAL_KEY]
    # in a network it stays the source op, and the rest is compiled
    fc = helper.make_node("Conv", ["y", "W2"], ["z"], name="pointwise")
    model.graph.node.append(fc)
    c_mid = w_shape[0] if op == "Conv" else w_shape[1] * 4
    model.graph.initializer.append(numpy_helper.from_array(np.ones((2, c_mid, 1, 1), np.float32), "W2"))
    model.graph.output[0].name = "z"
    out, report = _compile_ideal(tmp_path, noiseless, model, "depthwise")
    assert [(layer.analog, layer.weight_shape) for layer in report.layers] == [(False, w_shape), (True, [c_mid, 2])]
    assert "one input channel per group" in report.layers[0].reason
    x = np.random.default_rng(3).standard_normal(x_shape).astype(np.float32)
    np.testing.assert_allclose(_run(out, x), _run(model, x), rtol=1e-5, atol=1e-5)


def test_non_constant_weight_stays_digital_and_runtime_bias_is_added_digitally(tmp_path, noiseless):
    model = conv_model("Conv", [2, 3, 5, 5], [4, 3, 3, 3], pads=[1, 1, 1, 1])
    model.graph.node.insert(0, helper.make_node("Identity", ["B"], ["B_run"]))  # bias computed at run time
    model.graph.node[1].input[2] = "B_run"
    irm = ir.serde.deserialize_model(model)
    MarkAnalogOpsPass()(irm)
    ((_, plan),) = analog_layers(irm)
    assert plan.bias is None and plan.digital_bias is not None and plan.digital_bias.scale == 1.0
    out, _ = _compile_ideal(tmp_path, noiseless, model, "runtime_bias")
    x = np.random.default_rng(4).standard_normal([2, 3, 5, 5]).astype(np.float32)
    np.testing.assert_allclose(_run(out, x), _run(model, x), rtol=1e-5, atol=1e-5)
    dyn = conv_model("Conv", [2, 3, 5, 5], [4, 3, 3, 3])
    dyn.graph.node.insert(0, helper.make_node("Identity", ["W"], ["W_run"]))
    dyn.graph.node[1].input[1] = "W_run"
    irm = ir.serde.deserialize_model(dyn)
    MarkAnalogOpsPass()(irm)
    conv = next(n for n in irm.graph if n.op_type == "Conv")
    assert "not a constant" in conv.meta[DIGITAL_KEY]


@pytest.mark.parametrize(
    ("channels", "tile_rows", "n_tiles", "rows"),
    [
        (8, 32, 3, 27),  # 72 rows: 3 channels (27 rows) per tile, boundaries between channels
        (7, 32, 2, 32),  # 63 rows: aligning would cost a third tile, so full tiles
        (8, 512, 1, 72),
    ],
)  # one tile
def test_tiles_hold_whole_channels_where_free(channels, tile_rows, n_tiles, rows):
    model = ir.serde.deserialize_model(conv_model("Conv", [1, channels, 5, 5], [4, channels, 3, 3]))
    MarkAnalogOpsPass()(model)
    PartitionWeightsPass(PERIPHERY_PRESETS["standard"].replace(tile_rows=tile_rows))(model)
    ((_, plan),) = analog_layers(model)
    assert (plan.n_tiles, plan.tile_rows) == (n_tiles, rows)


def test_conv_over_several_tiles_adds_partial_sums(tmp_path, noiseless):
    """K = 16 * 9 = 144 rows on tiles of 64 rows: 7 channels (63 rows) per tile, 3 tiles, sums added digitally."""
    model = conv_model("Conv", [2, 16, 6, 6], [5, 16, 3, 3], pads=[1, 1, 1, 1], strides=[2, 1])
    out, report = _compile_ideal(tmp_path, noiseless, model, "tiled", periphery_overrides=["tile_rows=64"])
    assert [(layer.weight_shape, layer.tiles) for layer in report.layers] == [([144, 5], [3, 1])]
    proto = onnx.load(str(out))
    mm = next(n for n in proto.graph.node if n.op_type == ops.ANALOG_MATMUL)
    assert mm.overload == "tiled"
    g_target = next(t for t in proto.graph.initializer if t.name == f"{mm.name}.{ops.G_TARGET}")
    assert list(g_target.dims[-3:]) == [3, 63, 5]
    x = np.random.default_rng(5).standard_normal([2, 16, 6, 6]).astype(np.float32)
    y_src = _run(model, x)
    np.testing.assert_allclose(_run(out, x), y_src, rtol=1e-5, atol=1e-5)
    sess = AnalogSession(out)
    np.testing.assert_allclose(sess.run({"x": x})[0], y_src, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sess.run_digital({"x": x})[0], y_src, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def digits_x() -> np.ndarray:
    return load_digits_split()[1].x.reshape(-1, 1, 8, 8).astype(np.float32)


def _run_input(path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def test_digits_cnn_noise_off_reproduces_source(tmp_path, noiseless, digits_x):
    src = MODELS / "digits_cnn_fp.onnx"
    out = tmp_path / "cnn.analog.onnx"
    report = compile_model(src, out, device=noiseless, periphery="ideal")
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    assert [(layer.op, layer.weight_shape, layer.tiles) for layer in report.layers] == [
        ("Conv", [9, 16], [1, 1]),
        ("Conv", [144, 32], [1, 1]),
        ("Gemm", [512, 10], [1, 1]),
    ]
    assert _count(proto, ops.ANALOG_MATMUL, ops.DOMAIN) == 3 and _count(proto, "Conv") == 2  # the patch convs
    assert _count(proto, "BatchNormalization") == 2  # BN stays digital and unfolded
    y_src = _run_input(src, digits_x)
    np.testing.assert_allclose(_run_input(out, digits_x), y_src, rtol=1e-5, atol=1e-5)
    sess = AnalogSession(out, chip_seed=3)
    np.testing.assert_allclose(sess.run({"input": digits_x})[0], y_src, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sess.run_digital({"input": digits_x})[0], y_src, rtol=1e-5, atol=1e-5)


def test_digits_cnn_hwa_accuracy_on_the_standard_chip(tmp_path):
    out = tmp_path / "cnn_hwa.analog.onnx"
    compile_model(MODELS / "digits_cnn_hwa.onnx", out, calibration="digits")
    assert read_report(onnx.load(str(out))).periphery["input_range"] == "static"
    result = evaluate(out, data="digits", times="1s,1d", chips=3)
    assert result.baseline > 0.97
    acc_1s, acc_1d = result.accuracy_mean
    assert acc_1s > result.baseline - 0.03 and acc_1d > result.baseline - 0.05


def test_static_input_ranges_are_calibrated_on_the_patches():
    """Tiles of 27 rows hold channels 0-2, 3-5, 6-7: each tile's range is the max |x| of its own channels."""
    model = ir.serde.deserialize_model(conv_model("Conv", [4, 8, 5, 5], [4, 8, 3, 3], pads=[1, 1, 1, 1]))
    scale = np.array([1, 1, 5, 1, 1, 1, 0.5, 0.25], np.float32).reshape(1, 8, 1, 1)
    x = np.random.default_rng(6).uniform(-1, 1, (16, 8, 5, 5)).astype(np.float32) * scale
    periphery = PERIPHERY_PRESETS["standard"].replace(tile_rows=32)
    MarkAnalogOpsPass()(model)
    PartitionWeightsPass(periphery)(model)
    assert CalibrateInputRangesPass(periphery, {"x": x})(model).modified
    ((_, plan),) = analog_layers(model)
    expected = [np.abs(x[:, channels]).max() for channels in (slice(0, 3), slice(3, 6), slice(6, 8))]
    np.testing.assert_allclose(plan.in_range.reshape(-1), expected, rtol=1e-6)


def test_tiled_conv_runs_with_every_noise_source_on(tmp_path):
    """Standard periphery and PCM device: stock onnxruntime (in-graph noise) and the session (noise bank)."""
    model = conv_model("Conv", [3, 16, 6, 6], [5, 16, 3, 3], pads=[1, 1, 1, 1], strides=[2, 1])
    src, out = tmp_path / "noisy.onnx", tmp_path / "noisy.analog.onnx"
    onnx.save(model, src)
    compile_model(src, out, periphery_overrides=["tile_rows=64"])
    x = np.random.default_rng(7).uniform(0, 1, [3, 16, 6, 6]).astype(np.float32)
    y_src = _run(model, x)
    sess = AnalogSession(out, t_inference=3600.0)
    for y in (_run(out, x), sess.run({"x": x})[0], sess.run({"x": x[:1]})[0]):
        err = np.linalg.norm(y - y_src[: len(y)]) / np.linalg.norm(y_src[: len(y)])
        assert 0.005 < err < 0.3  # an analog chip, not the FP model, but close to it
