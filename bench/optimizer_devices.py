"""The weight-programming optimiser on every device preset and a non-monotone table device, scored by accuracy.

For each device: ``optimize_strategy`` on the whole network's weights and on each layer alone (TNMSE on fresh
draws vs the best naive dual pair of the F scan); then task accuracy of the network compiled for the device,
re-mapped with the optimised strategy and with the best naive dual pair, at 1 d and 1 y over ``--chips``
chips (the same chip seeds for both: the difference is paired); and the "limit of achievable accuracy"
(Mackin et al. 2022): programming noise only (no drift, relaxation or read noise), t = 0, so a perfect
compensator has nothing to correct, with the standard periphery and with the ideal one.

    .venv/bin/python bench/optimizer_devices.py                 # ~15 min on 2 shared cores
    .venv/bin/python bench/optimizer_devices.py --quick         # smoke run

Writes ``bench/out/optimizer_devices.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anacompile import devices  # noqa: E402
from anacompile.compiler import compile_model  # noqa: E402
from anacompile.devices import PCMDevice, TableDevice  # noqa: E402
from anacompile.evaluate.monte_carlo import evaluate  # noqa: E402
from anacompile.programming.optimizer import OptimizeSettings, optimize_strategy  # noqa: E402
from anacompile.programming.weight_error import load_weight_matrices  # noqa: E402

DEVICES = ["pcm", "rram_wan2022", str(ROOT / "bench" / "devices" / "nonmonotone_table.yaml")]
MODEL = ROOT / "models" / "digits_mlp_fp.onnx"


def programming_only(dev):
    """The device with every time-dependent and read noise off: what is left is programming noise."""
    if isinstance(dev, PCMDevice):
        return dev.replace(name=dev.name + "-prog-only", read_noise={"q_coefficient": 0.0}, drift={"drift_scale": 0.0})
    assert isinstance(dev, TableDevice)
    return dev.replace(
        name=dev.name + "-prog-only",
        read_q=0.0,
        drift_mu=0.0,
        drift_sigma=0.0,
        relaxation_times_s=[],
        relaxation_sigma=[],
    )


def write_device(dev, path: Path) -> Path:
    data = dev.to_dict()
    if isinstance(dev, PCMDevice):
        data = {"base": "pcm", **data}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def acc_stats(res, i: int) -> dict:
    a = np.asarray(res.accuracy)[:, i]
    return {
        "mean": float(a.mean()),
        "sem": float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else 0.0,
        "per_chip": a.tolist(),
    }


def paired(a: list[float], b: list[float]) -> dict:
    d = np.asarray(a) - np.asarray(b)
    return {"mean": float(d.mean()), "sem": float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-budget", type=float, default=40.0, help="search seconds per optimisation")
    ap.add_argument("--chips", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=30, help="fresh-draw chips of the TNMSE comparison")
    ap.add_argument("--quick", action="store_true", help="5 s searches, 3 chips (smoke run)")
    ap.add_argument("--devices", nargs="*", default=DEVICES)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "optimizer_devices.json")
    args = ap.parse_args()
    if args.quick:
        args.time_budget, args.chips, args.repeats = 5.0, 3, 5
    logging.basicConfig(level=logging.WARNING)
    mats = load_weight_matrices(MODEL)
    settings = OptimizeSettings(time_budget_s=args.time_budget, n_repeats_final=args.repeats)
    results: dict = {
        "model": str(MODEL.relative_to(ROOT)),
        "chips": args.chips,
        "time_budget_s": args.time_budget,
        "devices": {},
    }
    work = Path(tempfile.mkdtemp(prefix="optdev_"))
    for spec in args.devices:
        t0 = time.perf_counter()
        dev = devices.get(spec)
        entry: dict = {"device": dev.name}
        rep = optimize_strategy(mats, dev, settings, seed=0, show_progress=False)
        entry["network"] = rep.to_dict()
        entry["layers"] = []
        for i, m in enumerate(mats):
            lrep = optimize_strategy([m], dev, settings, seed=1 + i, show_progress=False)
            entry["layers"].append(
                {
                    "shape": list(np.shape(m)),
                    **{
                        k: lrep.to_dict()[k]
                        for k in ("best_naive_f", "reduction_vs_best_naive", "verdict_vs_best_naive", "optimised")
                    },
                    "optimised_F": lrep.optimised_f,
                }
            )
        strat = work / f"{dev.name}.strategy.json"
        rep.mapping.save(strat, force=True)
        naive = f"dual:F={rep.best_naive_f:g}"
        compiled = work / f"{dev.name}.onnx"
        compile_model(MODEL, compiled, device=spec, calibration="digits", force=True)
        acc = {}
        for name, strategy in (("best_naive", naive), ("optimised", str(strat))):
            res = evaluate(compiled, times="1d,1y", chips=args.chips, strategy=strategy)
            acc[name] = {"1d": acc_stats(res, 0), "1y": acc_stats(res, 1)}
            acc["baseline"] = res.baseline
        acc["optimised_minus_naive"] = {
            t: paired(acc["optimised"][t]["per_chip"], acc["best_naive"][t]["per_chip"]) for t in ("1d", "1y")
        }
        prog_dev = write_device(programming_only(dev), work / f"{dev.name}-prog-only.json")
        limit = {}
        for periphery in ("standard", "ideal"):
            lim_model = work / f"{dev.name}-limit-{periphery}.onnx"
            compile_model(MODEL, lim_model, device=prog_dev, periphery=periphery, calibration="digits", force=True)
            for name, strategy in (("best_naive", naive), ("optimised", str(strat))):
                res = evaluate(lim_model, times="0", chips=args.chips, strategy=strategy, compensation="none")
                limit[f"{periphery}/{name}"] = acc_stats(res, 0)
        acc["limit_t0_programming_only"] = limit
        entry["accuracy"] = acc
        entry["elapsed_s"] = time.perf_counter() - t0
        results["devices"][dev.name] = entry
        print(f"done {dev.name} in {entry['elapsed_s']:.0f} s", file=sys.stderr, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1), encoding="utf-8")

    def pct(s: dict) -> str:
        return f"{100 * s['mean']:.2f} ± {100 * s['sem']:.2f}"

    print(f"\nTNMSE (x1e4, fresh draws, {args.repeats} chips) and accuracy ({args.chips} chips), {MODEL.name}\n")
    print("| device | scope | best naive F | TNMSE naive | TNMSE optimised | reduction | verdict |")
    print("|---|---|---|---|---|---|---|")
    for name, e in results["devices"].items():
        n = e["network"]
        best = n["naive_scan"][str(n["best_naive_f"])]
        print(
            f"| {name} | network | {n['best_naive_f']:g} | {best['tnmse'] * 1e4:.3f} ± {best['tnmse_sem'] * 1e4:.3f} "
            f"| {n['optimised']['tnmse'] * 1e4:.3f} ± {n['optimised']['tnmse_sem'] * 1e4:.3f} "
            f"| {n['reduction_vs_best_naive']:+.1%} | {n['verdict_vs_best_naive']} |"
        )
        for i, lay in enumerate(e["layers"]):
            print(
                f"| {name} | layer {i} {lay['shape']} | {lay['best_naive_f']:g} | | "
                f"{lay['optimised']['tnmse'] * 1e4:.3f} ± {lay['optimised']['tnmse_sem'] * 1e4:.3f} "
                f"| {lay['reduction_vs_best_naive']:+.1%} | {lay['verdict_vs_best_naive']} |"
            )
    print(
        "\n| device | FP32 | naive 1d | optimised 1d | Δ 1d (paired) | naive 1y | optimised 1y | Δ 1y (paired) "
        "| limit std naive | limit std opt | limit ideal naive | limit ideal opt |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, e in results["devices"].items():
        a = e["accuracy"]
        d = a["optimised_minus_naive"]
        lim = a["limit_t0_programming_only"]
        print(
            f"| {name} | {100 * a['baseline']:.2f} | {pct(a['best_naive']['1d'])} | {pct(a['optimised']['1d'])} "
            f"| {pct(d['1d'])} | {pct(a['best_naive']['1y'])} | {pct(a['optimised']['1y'])} | {pct(d['1y'])} "
            f"| {pct(lim['standard/best_naive'])} | {pct(lim['standard/optimised'])} "
            f"| {pct(lim['ideal/best_naive'])} | {pct(lim['ideal/optimised'])} |"
        )


if __name__ == "__main__":
    main()
