"""``compile --chip-state full|none``: a file with the programmed chip, or with the plan and seed only.

A ``none`` file has no chip tensors and no chip stage; the analog session programs the chip on load, and
gives exactly the outputs it gives for a ``full`` file of the same seed (both program from the same plan
with the same streams). Older files (domain version 1, no ``chip_state`` in the report) read as full.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import anacompile
from anacompile import contract
from anacompile.errors import ConfigError
from anacompile.feeds import load_feeds
from anacompile.runtime.session import AnalogSession

MODELS = Path(__file__).resolve().parents[1] / "models"
DAY = 86400.0


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> dict[str, dict[str, Path]]:
    """MLP (one-tile layers), CNN (a conv, a tiled Gemm) and LSTM (a Loop), each compiled full and none."""
    folder = tmp_path_factory.mktemp("chip_state")
    out: dict[str, dict[str, Path]] = {}
    for name in ("mlp", "cnn", "lstm"):
        out[name] = {}
        for state in contract.CHIP_STATES:
            path = folder / f"{name}.{state}.onnx"
            anacompile.compile_model(
                MODELS / f"digits_{name}_hwa.onnx", path, calibration="digits", seed=11, chip_state=state
            )
            out[name][state] = path
    return out


def _inits(path: Path) -> set[str]:
    return {t.name for t in onnx.load(str(path)).graph.initializer}


def test_a_none_file_carries_the_plan_and_seed_but_no_chip(pair) -> None:
    full, none = pair["cnn"]["full"], pair["cnn"]["none"]
    m = onnx.load(str(none))
    onnx.checker.check_model(m, full_check=True)
    report = anacompile.read_report(m)
    assert report.chip_state == contract.CHIP_STATE_NONE and report.seed == 11
    assert anacompile.read_report(onnx.load(str(full))).chip_state == contract.CHIP_STATE_FULL
    assert {o.domain: o.version for o in m.opset_import}[contract.DOMAIN] == contract.DOMAIN_VERSION == 2
    assert not any(n.op_type == contract.CHIP_WEIGHTS for n in m.graph.node)
    names = _inits(none)
    analog = [layer.name for layer in report.layers if layer.analog]
    for layer in analog:
        for suffix in (contract.G_PROG, contract.NU, contract.GDC_REF):
            assert contract.layer_tensor(layer, suffix) not in names
        assert contract.layer_tensor(layer, contract.G_TARGET) in names
    inputs = {i.name for i in m.graph.input}
    assert {contract.layer_tensor(layer, contract.W_EFF) for layer in analog} <= inputs
    assert contract.T_INFERENCE not in inputs
    assert none.stat().st_size < 0.5 * full.stat().st_size  # 2 of 6 float32 per device pair and weight


@pytest.mark.parametrize("model", ["mlp", "cnn", "lstm"])
def test_the_session_gives_the_same_outputs_for_full_and_none(pair, model) -> None:
    feeds, _ = load_feeds("digits", onnx.load(str(pair[model]["full"])), limit=16)
    for chip, t in ((0, 0.0), (4, DAY)):
        outs = [
            AnalogSession(pair[model][s], chip_seed=chip, t_inference=t).run(feeds)[0] for s in contract.CHIP_STATES
        ]
        np.testing.assert_array_equal(outs[0], outs[1])
    other = AnalogSession(pair[model]["none"], chip_seed=5, t_inference=DAY).run(feeds)[0]
    assert not np.array_equal(other, outs[1])  # another chip: the check can fail


def test_evaluate_gives_the_same_json_for_full_and_none(pair) -> None:
    results = [anacompile.evaluate(pair["mlp"][s], times="1s,1d", chips=3).to_dict() for s in contract.CHIP_STATES]
    for r in results:
        r.pop("model")
    assert json.dumps(results[0]) == json.dumps(results[1])


def test_a_version_1_full_file_still_reads(pair, tmp_path) -> None:
    """A file written before chip states: domain version 1, no chip_state in the report."""
    m = onnx.load(str(pair["mlp"]["full"]))
    for o in m.opset_import:
        if o.domain == contract.DOMAIN:
            o.version = 1
    for p in m.metadata_props:
        if p.key == contract.META_REPORT:
            d = json.loads(p.value)
            del d["chip_state"]
            p.value = json.dumps(d)
    old = tmp_path / "v1.onnx"
    onnx.save(m, str(old))
    assert anacompile.read_report(onnx.load(str(old))).chip_state == contract.CHIP_STATE_FULL
    feeds = {"input": np.random.default_rng(0).random((4, 64), np.float32)}
    np.testing.assert_array_equal(
        AnalogSession(old, chip_seed=2, t_inference=DAY).run(feeds)[0],
        AnalogSession(pair["mlp"]["full"], chip_seed=2, t_inference=DAY).run(feeds)[0],
    )


def test_bad_chip_state_and_deploy_without_a_chip_are_one_line_errors(tmp_path) -> None:
    src = MODELS / "digits_mlp_hwa.onnx"
    with pytest.raises(ConfigError, match="--chip-state 'some': use one of full, none"):
        anacompile.compile_model(src, tmp_path / "a.onnx", chip_state="some")
    with pytest.raises(ConfigError, match="--target deploy needs; use --chip-state full"):
        anacompile.compile_model(src, tmp_path / "b.onnx", chip_state="none", target="deploy")
    assert not list(tmp_path.iterdir())


def test_a_corrupt_chip_state_in_the_report_is_refused(pair, tmp_path) -> None:
    m = onnx.load(str(pair["mlp"]["none"]))
    for p in m.metadata_props:
        if p.key == contract.META_REPORT:
            p.value = p.value.replace('"chip_state": "none"', '"chip_state": "half"')
    bad = tmp_path / "bad.onnx"
    onnx.save(m, str(bad))
    with pytest.raises(anacompile.AnacompileError, match="'chip_state' = 'half' is none of full, none"):
        AnalogSession(bad)


def test_cli_compile_chip_state_none_and_inspect_show_it(tmp_path) -> None:
    out = tmp_path / "m.onnx"
    cmd = [sys.executable, "-m", "anacompile.cli"]
    r = subprocess.run(
        [*cmd, "compile", str(MODELS / "digits_mlp_hwa.onnx"), "-o", str(out), "--chip-state", "none"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "chip state: none (chip 0 of seed 0, programmed by the session on load)" in r.stdout
    r = subprocess.run([*cmd, "inspect", str(out), "--json", "-"], capture_output=True, text=True, timeout=300)
    assert json.loads(r.stdout)["chip_state"] == "none"
    r = subprocess.run([*cmd, "inspect", str(out)], capture_output=True, text=True, timeout=300)
    assert "chip state: none" in r.stdout
    r = subprocess.run(
        [*cmd, "compile", str(MODELS / "digits_mlp_hwa.onnx"), "-o", str(tmp_path / "x.onnx"), "--chip-state", "x"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "--chip-state 'x'" in r.stderr
