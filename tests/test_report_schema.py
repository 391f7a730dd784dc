"""The compile report's JSON Schema: a real report validates in a process that never imports anacompile."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import pytest

import anacompile
from anacompile.cli import main
from anacompile.compiler import REPORT_SCHEMA_VERSION, CompileReport, LayerReport

SCHEMA = Path(anacompile.__file__).parent / "schemas" / "compile_report.schema.json"

# A downstream tool: json, onnx and jsonschema only.
_TOOL = textwrap.dedent("""
    import json, sys
    import jsonschema, onnx
    schema = json.load(open(sys.argv[1]))
    report = json.load(open(sys.argv[2]))
    jsonschema.validate(report, schema)
    stored = {p.key: p.value for p in onnx.load(sys.argv[3], load_external_data=False).metadata_props}
    jsonschema.validate(json.loads(stored["anacompile.report"]), schema)
    assert not [m for m in sys.modules if m.split(".")[0] == "anacompile"], "anacompile was imported"
    print(report["schema_version"], len(report["layers"]), report["totals"]["analog_layers"])
""")


@pytest.mark.parametrize("model", ["digits_transformer_hwa.onnx"])  # digital and analog layers, folded weights
def test_real_report_validates_without_anacompile(tmp_path, model):
    compiled = tmp_path / "m.analog.onnx"
    source = Path(anacompile.__file__).parents[1] / "models" / model
    assert main(["compile", str(source), "-o", str(compiled), "--calibration", "digits"]) == 0
    report = tmp_path / "report.json"
    assert main(["inspect", str(compiled), "--json", str(report)]) == 0
    run = subprocess.run(
        [sys.executable, "-c", _TOOL, str(SCHEMA), str(report), str(compiled)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    version, layers, analog = (int(v) for v in run.stdout.split())
    assert version == REPORT_SCHEMA_VERSION and layers >= analog > 0
    assert main(["inspect", str(compiled), "--json", str(report)]) == 1  # exists: not overwritten without --force


def test_schema_describes_every_field_and_rejects_breaks(compiled_mlp, capsys):
    schema = json.loads(SCHEMA.read_text())
    top = {f.name for f in dataclasses.fields(CompileReport)}
    assert top <= set(schema["properties"]), "a report field is missing from the schema: document it"
    layer = {f.name for f in dataclasses.fields(LayerReport)}
    assert layer <= set(schema["$defs"]["layer"]["properties"]), "a layer field is missing from the schema"
    assert schema["properties"]["schema_version"]["const"] == REPORT_SCHEMA_VERSION
    assert main(["inspect", str(compiled_mlp), "--json", "-"]) == 0
    doc = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, schema)
    for broken in (
        {**doc, "schema_version": REPORT_SCHEMA_VERSION + 1},
        {k: v for k, v in doc.items() if k != "layers"},
        {**doc, "layers": [{**doc["layers"][0], "tiles": [1]}]},  # an analog layer needs [rows, columns]
        {**doc, "seed": "0"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)
