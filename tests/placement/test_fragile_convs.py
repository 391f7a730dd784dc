"""The budgeted placement on a CNN with deliberately fragile 1x1 convolutions (tests/models/fragile_cnn.py).

Two of its six weight layers alone ruin it on the chip (a recogniser-like fragility: 1x1 convolutions with
one huge input row, as a folded BatchNorm makes them); ``--accuracy-budget 0.02 --at 1d`` must keep exactly
those digital, meet the budget on fresh chips and replay from its JSON to the same bytes.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from anacompile.evaluate.datasets import load_digits_split

HERE = Path(__file__).resolve().parents[1] / "models" / "fragile_cnn.py"
TEST = load_digits_split()[1]
SAMPLES = 270


def _builder():
    spec = importlib.util.spec_from_file_location("fragile_cnn", HERE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def digits_accuracy(run):
    """A user's metric callable (first 270 test digits)."""
    y = run({"input": TEST.x[:SAMPLES].astype(np.float32).reshape(-1, 1, 8, 8)})[0]
    return float(np.mean(np.argmax(y, axis=1) == TEST.y[:SAMPLES]))


@pytest.fixture(scope="module")
def fragile(tmp_path_factory):
    path = tmp_path_factory.mktemp("fragile") / "fragile_cnn.onnx"
    onnx.save(_builder().build(("pw_a", "pw_c")), path)
    return path


def test_fragile_convs_placed_digital_budget_met_and_replayed(tmp_path, fragile):
    import anacompile
    from anacompile.cli import main

    out = tmp_path / "placed.onnx"
    report = anacompile.compile_model(
        fragile,
        out,
        accuracy_budget=0.02,
        at="1d",
        metric=digits_accuracy,
        calibration="digits",
        chips=2,
        verify_chips=4,
    )
    p = report.placement
    assert sorted(p.digital) == ["pw_a", "pw_c"] and set(p.ranking[:2]) == {"pw_a", "pw_c"}
    bad = {n: loss for n, loss in p.layer_loss.items() if n in ("pw_a", "pw_c")}
    assert min(bad.values()) > 5 * 0.02  # each alone costs more than five budgets
    assert all(loss < 0.02 / 4 for n, loss in p.layer_loss.items() if n not in bad)  # the others ~nothing
    assert p.meets_budget and p.verified_lcb >= p.target and p.verified_se > 0
    assert p.rounds[-1].passed and p.rounds[-1].seed != report.seed
    assert 0.5 < p.analog_mac_share == report.totals["analog_mac_share"] < 1
    replay = tmp_path / "replay.onnx"
    doc = tmp_path / "placed.placement.json"
    assert json.loads(doc.read_text())["digital"] == p.digital
    rc = main(["compile", str(fragile), "-o", str(replay), "--calibration", "digits", "--digital", f"@{doc}"])
    assert rc == 0 and replay.read_bytes() == out.read_bytes()  # the same compiled plan, byte for byte
