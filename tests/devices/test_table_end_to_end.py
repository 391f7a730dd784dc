"""A device written only as tables compiles, evaluates and runs (session and stock onnxruntime) end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from anacompile import ops
from anacompile.compiler import compile_model, read_report
from anacompile.evaluate.datasets import load_digits_split
from anacompile.evaluate.monte_carlo import evaluate
from anacompile.runtime.session import AnalogSession

BENCH_DEVICE = Path(__file__).resolve().parents[2] / "bench" / "devices" / "nonmonotone_table.yaml"
NOISELESS_TABLE = """\
kind: table
name: table-noiseless
g_max_us: 25
programming_sigma: {g_us: [0, 25], values: [0, 0]}
read_q: {g_us: [0, 25], values: [0, 0]}
"""


@pytest.mark.parametrize("device", ["file", "rram_wan2022"])
def test_table_device_compiles_and_evaluates(tmp_path: Path, mlp_hwa: Path, device: str) -> None:
    dev = str(BENCH_DEVICE) if device == "file" else device
    out = tmp_path / "m.onnx"
    report = compile_model(mlp_hwa, out, device=dev)
    assert report.device["kind"] == "table" and read_report(onnx.load(str(out))).device == report.device
    res = evaluate(out, times="1s,1d,1y", chips=2)
    assert all(a > res.baseline - 0.1 for a in res.accuracy_mean)
    # the file runs alone in a stock onnxruntime: the table device's chip stage is in its functions
    x, labels = load_digits_split()[1].x, load_digits_split()[1].y
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"input": x, ops.T_INFERENCE: np.array(86400.0, np.float32)})[0]
    assert np.mean(np.argmax(y, 1) == labels) > res.baseline - 0.1


def test_noiseless_table_device_reproduces_the_source(tmp_path: Path, mlp_fp: Path) -> None:
    path = tmp_path / "noiseless.yaml"
    path.write_text(NOISELESS_TABLE, encoding="utf-8")
    out = tmp_path / "ideal.onnx"
    compile_model(mlp_fp, out, device=path, periphery="ideal")
    x = load_digits_split()[1].x
    y_src = ort.InferenceSession(str(mlp_fp), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    y_file = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(y_file, y_src, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(AnalogSession(out, chip_seed=3).run({"input": x})[0], y_src, rtol=1e-5, atol=1e-5)
