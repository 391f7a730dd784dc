"""Builders of tiny ONNX models around one analog function, for testing the function bodies directly."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from anacompile import ops
from anacompile.contract import OUT_GAIN_INPUT
from anacompile.crossbar.periphery import DriftCompensation, OutputRange, Periphery
from anacompile.runtime.functions import (
    MATMUL_INPUTS,
    TILED,
    NoiseSource,
    analog_matmul_attributes,
    build_analog_matmul_function,
    build_chip_weights_function,
)

OPSET = 17


def matmul_session(
    periphery: Periphery, seed: int = 1, noise: NoiseSource = NoiseSource.BANK, tiled: bool = False
) -> ort.InferenceSession:
    """A model whose graph is one AnalogMatMul node (plain or ``tiled`` body); every input is a graph input."""
    names = list(MATMUL_INPUTS[:9]) if noise is NoiseSource.BANK else list(MATMUL_INPUTS[:6])
    if periphery.output_range is OutputRange.CALIBRATED:  # the tiles' gains: the last input
        names += [""] * (OUT_GAIN_INPUT - len(names)) + ["out_gain"]
    node = helper.make_node(
        ops.ANALOG_MATMUL, names, ["Y"], domain=ops.DOMAIN, **analog_matmul_attributes(periphery, seed)
    )
    if tiled:
        node.overload = TILED
    r = 3 if tiled else 2
    ranks = {
        "X": 2,
        "W": r,
        "in_scale": r,
        "scale": r,
        "bias": 1,
        "noise_bank": 1,
        "ir_row_weight": 2,
        "noise_start": 1,
        "noise_end": 1,
        "out_gain": r,
    }
    int_inputs = ("noise_start", "noise_end")
    inputs = [
        helper.make_tensor_value_info(
            n, TensorProto.INT64 if n in int_inputs else TensorProto.FLOAT, [f"{n}_{i}" for i in range(ranks[n])]
        )
        for n in names
        if n
    ]
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["B", "N"])])
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(ops.DOMAIN, 1)],
        functions=[build_analog_matmul_function(periphery, OPSET, noise, tiled)],
    )
    model.ir_version = 10
    onnx.checker.check_model(model, full_check=True)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def chip_session(compensation: DriftCompensation, attrs: dict) -> ort.InferenceSession:
    """A model whose graph is one AnalogChipWeights node."""
    names = ["g_prog", "nu", "t_inference", "gdc_ref", "out_scale"]
    node = helper.make_node(ops.CHIP_WEIGHTS, names, ["W", "alpha"], domain=ops.DOMAIN, **attrs)
    ranks = {
        "g_prog": 5,
        "nu": 5,
        "t_inference": 0,
        "gdc_ref": 3 if compensation is DriftCompensation.COLUMN else 0,
        "out_scale": 3,
    }
    inputs = [
        helper.make_tensor_value_info(
            n, TensorProto.FLOAT, None if ranks[n] is None else [f"{n}_{i}" for i in range(ranks[n])]
        )
        for n in names
    ]
    outputs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, [f"{n}_{i}" for i in range(3)]) for n in ("W", "alpha")
    ]
    graph = helper.make_graph([node], "g", inputs, outputs)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(ops.DOMAIN, 1)],
        functions=[build_chip_weights_function(compensation, OPSET)],
    )
    model.ir_version = 10
    onnx.checker.check_model(model, full_check=True)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def layer_inputs(
    rng: np.random.Generator, batch: int, k: int, n: int, tile_rows: int, ir_rows: int, bank: int = 1 << 16
) -> dict[str, np.ndarray]:
    """Random but realistic inputs of one analog layer (weights normalised per column to [-1, 1])."""
    from anacompile.crossbar.reference import ir_row_weights

    n_tiles = -(-k // tile_rows)
    rows = tile_rows if n_tiles > 1 else k
    w = rng.standard_normal((n_tiles, rows, n)) * 0.3
    w[:, k - (n_tiles - 1) * rows :, :] = 0 if n_tiles > 1 else w[:, k:, :]
    w = np.clip(w, -1, 1)
    w /= np.maximum(np.abs(w).max(axis=1, keepdims=True), 1e-9)
    return {
        "X": rng.uniform(-1.5, 1.5, (batch, k)).astype(np.float32),
        "W": w.astype(np.float32),
        "col_scale": rng.uniform(0.5, 2.0, (n_tiles, 1, n)).astype(np.float32),
        "in_range": rng.uniform(0.8, 1.6, (n_tiles, 1, 1)).astype(np.float32),
        "alpha": rng.uniform(0.9, 1.2, (n_tiles, 1, n)).astype(np.float32),
        "bias": rng.standard_normal(n).astype(np.float32),
        "noise_bank": rng.standard_normal(bank).astype(np.float32),
        "ir_row_weight": ir_row_weights(ir_rows)[:rows],
    }


def function_feeds(inputs: dict[str, np.ndarray], periphery: Periphery, start: int = 0) -> dict[str, np.ndarray]:
    """The AnalogMatMul feeds of :func:`layer_inputs`' physical quantities (as the compiler stores them)."""
    from anacompile.crossbar.reference import layer_scales, tile_constants

    gain = inputs.get("out_gain")  # the tiles' gains (output_range: calibrated), (n_tiles, 1, 1)
    in_scale, out_scale = layer_scales(inputs["col_scale"], inputs["in_range"], periphery, gain)
    n_tiles, _, n = inputs["W"].shape
    size = periphery.bm_passes * n_tiles * int(np.prod(inputs["X"].shape[:-1])) * n
    code_gain = np.float32(tile_constants(periphery)["code_gain"])
    feeds = {
        "X": inputs["X"],
        "W": inputs["W"] * code_gain,
        "in_scale": in_scale,
        "scale": out_scale * inputs["alpha"],
        "bias": inputs["bias"],
        "ir_row_weight": inputs["ir_row_weight"],
        "noise_bank": inputs["noise_bank"],
        "noise_start": np.array([start], np.int64),
        "noise_end": np.array([start + size], np.int64),
    }
    if gain is not None:
        feeds["out_gain"] = np.asarray(gain, np.float32).reshape(n_tiles, 1, 1)
    if n_tiles == 1:  # one-tile layers are stored without the tile axis
        for key in ("W", "in_scale", "scale", *(("out_gain",) if gain is not None else ())):
            feeds[key] = feeds[key][0]
    return feeds


def run_layer(periphery: Periphery, inputs: dict[str, np.ndarray], start: int = 0, session=None) -> np.ndarray:
    """Run one AnalogMatMul (plain or tiled body, as the compiler would choose) on :func:`layer_inputs`."""
    tiled = inputs["W"].shape[0] > 1
    sess = session or matmul_session(periphery, tiled=tiled)
    return sess.run(None, function_feeds(inputs, periphery, start))[0]
