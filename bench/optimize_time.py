"""Weight-programming optimisation on the digits MLP: search time and error against naive dual pairs.

Usage: python bench/optimize_time.py [--time-budget 40] [--repeats 30] [--seed 0] [--out bench/out]

For models/digits_mlp_fp.onnx and models/digits_mlp_hwa.onnx: runs ``optimize_strategy`` on the PCM device
(default settings except the time budget), prints the wall time, then programs the network's own weights on
fresh draws (``--repeats`` chips) and prints the drift-compensated (GDC) NMSE at 1 s, 1 h, 1 d and 1 y and its
time average, mean +- standard error, for the optimised strategy, every naive dual pair of the F scan and
naive F = 1. "no worse" = within 2 standard errors of the best naive dual pair (reference/papers.md, numbers
§3). Writes the strategies and their G+-(W) plots under --out. Finishes in < 2 min on 2 cores.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anacompile import devices  # noqa: E402
from anacompile.mapping import dual_pair  # noqa: E402
from anacompile.programming.optimizer import OptimizeSettings, optimize_strategy, plot_strategy  # noqa: E402
from anacompile.programming.weight_error import (  # noqa: E402
    evaluate_strategy_error,
    load_weight_matrices,
    normalised_weights,
)

TIMES_S = (1.0, 3600.0, 86400.0, 365 * 86400.0)
LABELS = ("1 s", "1 h", "1 d", "1 y")


def main() -> None:
    """Run the benchmark and print its tables."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--time-budget", type=float, default=40.0, help="search seconds per model")
    p.add_argument("--repeats", type=int, default=30, help="fresh-draw chips per strategy (>= 30)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    dev = devices.get("pcm")
    t_all = time.perf_counter()
    for name in ("digits_mlp_fp", "digits_mlp_hwa"):
        path = ROOT / "models" / f"{name}.onnx"
        if not path.is_file():
            print(f"{path} missing: skipped")
            continue
        mats = load_weight_matrices(path)
        t0 = time.perf_counter()
        rep = optimize_strategy(
            mats, dev, OptimizeSettings(time_budget_s=args.time_budget), seed=args.seed, show_progress=False
        )
        t_opt = time.perf_counter() - t0
        rep.mapping.save(args.out / f"{name}.pcm.strategy.json", force=True)
        plot_strategy(rep.mapping, args.out / f"{name}.pcm.strategy.png", title=f"{name}, PCM")
        print(
            f"\n== {name}: {sum(m.size for m in mats)} weights; optimise {t_opt:.1f} s "
            f"(search {rep.elapsed_s:.1f} s, {rep.generations} generations, {rep.evaluations} candidates, "
            f"stopped: {rep.stop_reason}); search loss seed {rep.search_loss_seed:.4e} -> best "
            f"{rep.search_loss_best:.4e} ({1 - rep.search_loss_best / rep.search_loss_seed:+.2%}); "
            f"best single-coordinate move from the optimum: {rep.coordinate_check:+.3%} of the search loss"
        )
        u = normalised_weights(mats)
        ss = np.random.SeedSequence([args.seed, 7])
        strategies = {f"dual F={f:g}": dual_pair(f) for f in rep.settings.f_scan}
        strategies[f"optimised F={rep.optimised_f:.2f}"] = rep.mapping
        errs = {
            k: evaluate_strategy_error(m, u, dev, np.random.default_rng(s), TIMES_S, args.repeats)
            for (k, m), s in zip(strategies.items(), ss.spawn(len(strategies)), strict=True)
        }
        naive = {k: e for k, e in errs.items() if k.startswith("dual")}
        best = min(naive, key=lambda k: naive[k].tnmse)
        opt_key = next(k for k in errs if k.startswith("optimised"))
        print(f"NMSE x 1e4 with GDC, {args.repeats} fresh chips each (mean ± s.e.)")
        print(f"{'strategy':<18}" + "".join(f"{lab:>15}" for lab in LABELS) + f"{'time avg':>17}{'vs F=1':>9}")
        f1 = errs["dual F=1"].tnmse
        for k, e in errs.items():
            cells = "".join(
                f"{m * 1e4:>8.3f} ± {s * 1e4:<4.3f}" for m, s in zip(e.mean_per_time, e.sem_per_time, strict=True)
            )
            mark = " *" if k == best else ""
            avg = f"{e.tnmse * 1e4:>9.3f} ± {e.tnmse_sem * 1e4:.3f}"
            print(f"{k + mark:<18}{cells}{avg}{1 - e.tnmse / f1:>+9.1%}")
        o, b = errs[opt_key], errs[best]
        diff, se = o.tnmse - b.tnmse, math.hypot(o.tnmse_sem, b.tnmse_sem)
        verdict = "better" if diff < -2 * se else "no worse" if diff <= 2 * se else "worse"
        print(
            f"optimised vs best naive ({best}): {-diff / b.tnmse:+.1%} ({diff / se:+.1f} s.e.: {verdict}); "
            f"vs naive F=1: {1 - o.tnmse / f1:+.1%}; best naive vs F=1: {1 - b.tnmse / f1:+.1%}; "
            f"optimum F = {rep.optimised_f:.2f} (published optimum: 2)"
        )
    print(f"\ntotal {time.perf_counter() - t_all:.1f} s")


if __name__ == "__main__":
    main()
