"""captcha-whisperer==0.1.0's CNN + unrolled biLSTM CTC model (a real file of another project, opset 17).

Its exporter unrolled the recurrence into 80 Gemms over four stored weight tensors: they are programmed once
(4.8 M parameters on 54 tiles, not 68.6 M on 396), and the compiled file passes the full checker and runs in a
stock onnxruntime. The file is read from the installed package (test extra), never imported.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from anacompile.compiler import compile_model
from anacompile.passes.count_macs import node_macs

CRNN = Path(sysconfig.get_paths()["purelib"]) / "captcha_whisperer" / "models" / "captcha_crnn.onnx"


def test_unrolled_crnn_maps_its_parameters_once_and_runs_in_stock_onnxruntime(tmp_path):
    out = tmp_path / "crnn.analog.onnx"
    report = compile_model(CRNN, out)  # the short form: no calibration data
    assert report.totals["weights_mapped"] == 4_799_016 and report.totals["tiles"] == 54
    shared = [layer for layer in report.layers if len(layer.uses) > 1]
    assert len(shared) == 4 and sum(len(layer.uses) for layer in shared) == 80
    # MACs: a shared weight's tiles do the MVM of every use (one sample: each use one MVM of the weight)
    assert all(layer.macs == len(layer.uses) * layer.parameters for layer in shared)
    assert report.totals["macs"] == sum(m for m, _ in node_macs(onnx.load(str(CRNN))).values())
    assert any("fixed ADC bound" in note for note in report.notes)  # no data: says what is used and why
    onnx.checker.check_model(str(out), full_check=True)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 60, 160)).astype(np.float32)
    y = ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    y0 = ort.InferenceSession(str(CRNN), so, providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    assert y.shape == y0.shape == (20, 1, 37) and np.isfinite(y).all()
