"""The deployment form (compile --target deploy): plain onnxruntime loads it with no warning, same outputs."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest

from anacompile import ops
from anacompile.cli import main
from anacompile.compiler import read_report
from anacompile.errors import UnsupportedModelError
from anacompile.passes.deploy_form import DEPLOY, META_TARGET, MakeDeployFormPass
from anacompile.runtime.session import AnalogSession
from tests.conftest import MODELS

T_DAY = 86400.0

# Runs in a fresh interpreter that imports only onnx and onnxruntime: what a device toolchain sees.
_PLAIN_ORT = textwrap.dedent("""
    import sys
    import numpy as np, onnx, onnxruntime as ort
    path, out, shape = sys.argv[1], sys.argv[2], [int(d) for d in sys.argv[3].split(",")]
    onnx.checker.check_model(path, full_check=True)
    so = ort.SessionOptions()
    so.log_severity_level = 0  # verbose: every info, warning and error is printed
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    name = sess.get_inputs()[0].name
    ys = [sess.run(None, {name: x, "t_inference": np.array(t, np.float32)})[0] for t in (0.0, 86400.0)]
    np.savez(out, x=x, y0=ys[0], y1=ys[1], inputs=[i.name for i in sess.get_inputs()])
""")


def _compile(tmp_path, source, name, *args):
    out = tmp_path / name
    assert main(["compile", str(source), "-o", str(out), "--seed", "7", *args]) == 0
    return out


@pytest.mark.parametrize(
    ("model", "shape", "args"),
    [
        ("digits_mlp_hwa.onnx", "32,64", ["--calibration", "digits"]),
        ("digits_mlp_fp.onnx", "16,64", ["--set", "tile_rows=48", "--strategy", "dual"]),  # tiled layers
        ("digits_lstm_hwa.onnx", "8,8,8", []),  # analog MVMs inside a Loop body
    ],
)
def test_deploy_form_loads_without_warning_and_matches_simulation(tmp_path, model, shape, args):
    sim = _compile(tmp_path, MODELS / model, "sim.onnx", *args)
    dep = _compile(tmp_path, MODELS / model, "dep.onnx", *args, "--target", "deploy")
    result = tmp_path / "plain.npz"
    run = subprocess.run(
        [sys.executable, "-c", _PLAIN_ORT, str(dep), str(result), shape], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "[I:onnxruntime" in run.stderr  # the log was on at verbose level
    problems = [line for line in run.stderr.splitlines() if "[W:onnxruntime" in line or "[E:onnxruntime" in line]
    assert problems == []
    got = np.load(result)
    assert list(got["inputs"]) == [onnx.load(str(sim)).graph.input[0].name, ops.T_INFERENCE]
    # the simulation form, run in onnxruntime with t_inference fed as its overridable initializer
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(sim), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    for key, t in (("y0", 0.0), ("y1", T_DAY)):
        want = sess.run(None, {name: got["x"], ops.T_INFERENCE: np.array(t, np.float32)})[0]
        np.testing.assert_array_equal(got[key], want)
    assert not np.array_equal(got["y0"], got["y1"])  # the time fed matters (drift)


def test_deploy_form_contents(tmp_path, mlp_hwa):
    sim = onnx.load(str(_compile(tmp_path, mlp_hwa, "sim.onnx")))
    dep = onnx.load(str(_compile(tmp_path, mlp_hwa, "dep.onnx", "--target", "deploy")))
    sim_inits = {t.name for t in sim.graph.initializer}
    dep_inits = {t.name for t in dep.graph.initializer}
    removed = sim_inits - dep_inits
    layers = [layer.name for layer in read_report(sim).layers if layer.analog]
    suffixes = (ops.G_TARGET, ops.COL_SCALE, ops.IN_RANGE)
    assert removed == {ops.T_INFERENCE} | {f"{name}.{s}" for name in layers for s in suffixes}
    assert dep_inits < sim_inits
    t_input = next(i for i in dep.graph.input if i.name == ops.T_INFERENCE)
    assert t_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT and "Feed 0.0" in t_input.doc_string
    assert {f.name for f in dep.functions} == {f.name for f in sim.functions}  # analog ops still functions
    assert {p.key: p.value for p in dep.metadata_props}[META_TARGET] == DEPLOY
    assert any("deployment form" in note for note in read_report(dep).notes)
    assert [n.op_type for n in dep.graph.node] == [n.op_type for n in sim.graph.node]


def test_deploy_pass_is_idempotent(tmp_path, mlp_hwa):
    model = ir.load(str(_compile(tmp_path, mlp_hwa, "dep.onnx", "--target", "deploy")))
    assert MakeDeployFormPass()(model).modified is False


def test_session_refuses_deploy_form(tmp_path, mlp_hwa, capsys):
    dep = _compile(tmp_path, mlp_hwa, "dep.onnx", "--target", "deploy")
    with pytest.raises(UnsupportedModelError, match="deployment form"):
        AnalogSession(dep)
    assert main(["compile", str(mlp_hwa), "-o", str(tmp_path / "x.onnx"), "--target", "device"]) == 1
    assert "target 'device'" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
