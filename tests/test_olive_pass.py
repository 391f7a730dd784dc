"""The Olive example workflow (examples/olive/digits_mlp_workflow.json) runs from its file.

Olive (extra ``olive``, in the test extra: olive-ai 0.13.0 with the CPU torch 2.13.0) runs the workflow in a
copy of the repository layout under a temporary folder, so its cache and outputs stay out of the checkout.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx

from anacompile.compiler import compile_model, read_report

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "olive" / "digits_mlp_workflow.json"


def test_olive_example_workflow_runs_from_its_file(tmp_path):
    from anacompile.olive_pass import run_workflow

    workflow = tmp_path / "examples" / "olive" / EXAMPLE.name
    workflow.parent.mkdir(parents=True)
    shutil.copy(EXAMPLE, workflow)  # the file as shipped, beside the model at the same relative path
    (tmp_path / "models").mkdir()
    shutil.copy(ROOT / "models" / "digits_mlp_hwa.onnx", tmp_path / "models")
    run_workflow(workflow)
    out = workflow.parent / "out" / "model.onnx"
    assert out.is_file()
    config = json.loads(EXAMPLE.read_text())["passes"]["analog"]
    expected, _ = compile_model(
        onnx.load(str(ROOT / "models" / "digits_mlp_hwa.onnx")), calibration=config["calibration"], seed=config["seed"]
    )
    assert out.read_bytes() == expected.SerializeToString()  # the Olive step is anacompile's compile
    assert read_report(onnx.load(str(out))).totals["analog_layers"] == 2
