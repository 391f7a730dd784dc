"""The command line as a user types it: short form, errors as one line, JSON outputs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "anacompile.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_short_form_compiles_beside_the_input(tmp_path, mlp_hwa):
    src = tmp_path / "mlp.onnx"
    src.write_bytes(mlp_hwa.read_bytes())
    r = _run(str(src), "--device", "pcm")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "mlp.analog.onnx").is_file()
    assert "wrote" in r.stdout


def test_compile_json_and_inspect(tmp_path, mlp_hwa):
    out = tmp_path / "out.onnx"
    r = _run("compile", str(mlp_hwa), "-o", str(out), "--calibration", "digits", "--json", "-", "--set", "adc_bits=7")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["periphery"]["adc_bits"] == 7 and report["totals"]["analog_layers"] == 2
    r = _run("inspect", str(out))
    assert r.returncode == 0, r.stderr
    assert "64x128" in r.stdout and "128x10" in r.stdout and "analog" in r.stdout


@pytest.mark.parametrize(
    "case", ["garbage", "truncated", "no_analog", "unknown_device", "missing_folder", "bad_periphery_key"]
)
def test_bad_input_is_one_line_error(tmp_path, mlp_hwa, case):
    import onnx
    from onnx import TensorProto, helper

    src, extra = tmp_path / "m.onnx", []
    out = tmp_path / "out.onnx"
    if case == "garbage":
        src.write_text("hello")
    elif case == "truncated":
        src.write_bytes(mlp_hwa.read_bytes()[:1500])
    elif case == "no_analog":
        g = helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        )
        onnx.save(helper.make_model(g), src)
    else:
        src.write_bytes(mlp_hwa.read_bytes())
        if case == "unknown_device":
            extra = ["--device", "unobtainium"]
        elif case == "missing_folder":
            out = tmp_path / "nope" / "out.onnx"
        else:
            extra = ["--set", "adc_bitz=3"]
    before = sorted(p.name for p in tmp_path.iterdir())
    r = _run("compile", str(src), "-o", str(out), *extra)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no partial output


def test_evaluate_writes_json_and_plot_reproducibly(tmp_path, compiled_mlp):
    args = ["evaluate", str(compiled_mlp), "--times", "1s,1d", "--chips", "2"]
    r1 = _run(*args, "--json", str(tmp_path / "a.json"), "--plot", str(tmp_path / "a.png"))
    assert r1.returncode == 0, r1.stderr
    assert _run(*args, "--json", str(tmp_path / "b.json")).returncode == 0
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert a == b
    assert set(a) >= {"baseline", "times_s", "accuracy_mean", "accuracy_std", "chips"}
    assert a["times_s"] == [1.0, 86400.0] and a["chips"] == 2
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r3 = _run(*args, "--json", str(tmp_path / "a.json"))
    assert r3.returncode == 1 and "exists" in r3.stderr


def _main(capsys, *args: str) -> tuple[int, str, str]:
    """The CLI in this process (no interpreter start-up): exit status, stdout, stderr."""
    from anacompile.cli import main

    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_a_mistyped_command_is_named_with_the_closest_one(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = _main(capsys, "inspekt", "model.analog.onnx")
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "unknown command 'inspekt'" in lines[0] and "did you mean 'inspect'?" in lines[0]
    assert "model file" in lines[0] and "no such file" not in lines[0]
    rc, _, err = _main(capsys, "frobnicate")
    assert rc == 2 and "unknown command 'frobnicate'" in err and "did you mean" not in err
    rc, _, err = _main(capsys, "missing.onnx")  # the short form: still a model path
    assert rc == 1 and "missing.onnx" in err and "unknown command" not in err


def test_json_path_or_stdout_on_every_command(tmp_path, compiled_mlp, capsys):
    # stdout: exactly one JSON document, nothing else
    docs = {}
    for args in (
        ("devices",),
        ("inspect", str(compiled_mlp)),
        ("mvm-error", str(compiled_mlp), "--chips", "1", "--samples", "16"),
        ("evaluate", str(compiled_mlp), "--chips", "1", "--times", "1s"),
    ):
        rc, out, err = _main(capsys, *args, "--json", "-")
        assert rc == 0, err
        docs[args[0]] = json.loads(out)
    assert docs["evaluate"]["chips"] == 1 and docs["mvm-error"]["chips"] == 1 and "pcm" in docs["devices"]
    # a file: the same document, written atomically, never over an existing file without --force
    path = tmp_path / "report.json"
    rc, out, err = _main(capsys, "inspect", str(compiled_mlp), "--json", str(path))
    assert rc == 0, err
    assert json.loads(path.read_text()) == docs["inspect"] and "analog" in out  # and the table
    rc, _, err = _main(capsys, "inspect", str(compiled_mlp), "--json", str(path))
    assert rc == 1 and "exists" in err and "--force" in err
    rc, _, err = _main(capsys, "inspect", str(compiled_mlp), "--json", str(compiled_mlp), "--force")
    assert rc == 1 and "input" in err  # never over the input
