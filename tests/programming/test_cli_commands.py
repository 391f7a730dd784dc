"""``anacompile optimize`` and ``anacompile program-verify`` as a user types them (programming/cli_commands.py)."""

from __future__ import annotations

import json
import subprocess
import sys

from anacompile.mapping import PiecewiseMapping


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "anacompile.cli", *args], capture_output=True, text=True, timeout=300)


def test_program_verify_json_has_one_curve_per_distribution(tmp_path) -> None:
    png = tmp_path / "pf.png"
    r = _run("program-verify", "--budgets", "3,20", "--json", "-", "--plot", str(png))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["strategy"] == {"name": "dual", "F": 2.0} and doc["default_budget"] == 20
    assert len(doc["curves"]) == 3
    for pts in doc["curves"].values():
        assert [p["budget"] for p in pts] == [3, 20]
        assert pts[1]["p_fail"] <= 0.02 < pts[0]["p_fail"]
    assert png.stat().st_size > 1000
    r = _run("program-verify", "--budgets", "3,x")
    assert r.returncode == 1 and "--budgets" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_optimize_writes_a_loadable_strategy_and_refuses_to_overwrite(tmp_path, mlp_fp) -> None:
    out = tmp_path / "pcm.strategy.json"
    r = _run(
        "optimize",
        "--weights",
        str(mlp_fp),
        "-o",
        str(out),
        "--time-budget",
        "1s",
        "--repeats",
        "2",
        "--times",
        "1s,1d",
        "--json",
        "-",
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["strategy"] == str(out) and doc["published_optimal_f"] == 2.0
    assert set(doc["naive_scan"]) == {"1.0", "1.5", "2.0", "2.5", "3.0", "4.0"}
    m = PiecewiseMapping.load(out)
    assert m.device == "pcm" and m.n_pairs == 2
    r = _run("optimize", "--weights", str(mlp_fp), "-o", str(out))
    assert r.returncode == 1 and "--force" in r.stderr
    r = _run("optimize", "--weights", str(tmp_path / "absent.onnx"), "-o", str(tmp_path / "x.json"))
    assert r.returncode == 1 and "does not exist" in r.stderr
