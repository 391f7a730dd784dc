"""P_fail of closed-loop program-and-verify vs pulse budget, for three weight distributions.

Usage: python bench/program_verify.py [--strategy dual] [--seed 0] [--out bench/out]

Distributions (column-normalised, u = W / max|W| per column): N(0, 1) and U(-1, 1) matrices of 256 x 128, and
the digits MLP (models/digits_mlp_fp.onnx; a clipped Laplace stand-in if it is missing). For each pulse budget
prints P_fail (|u_prog - u_target| > tol), mean pulses per weight, RMS weight error and the row-by-row
programming time; then, for comparison, the same numbers for the Gaussian programming-noise model of the
device (one shot, no budget). Saves the P_fail curve as a PNG under --out. Acceptance (reference/papers.md,
numbers §4, [I]): P_fail <= 2 % at the default budget for every distribution.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anacompile import devices  # noqa: E402
from anacompile.mapping import decode_pairs, get_mapping  # noqa: E402
from anacompile.programming.program_verify import (  # noqa: E402
    DEFAULT_BUDGETS,
    ProgramVerifyParams,
    p_fail_curve,
    plot_p_fail_curve,
    reference_weight_sets,
)


def main() -> None:
    """Run the benchmark and print its tables."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--strategy", default="dual")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    dev = devices.get("pcm")
    mapping = get_mapping(args.strategy)
    prm = ProgramVerifyParams()
    ss = np.random.SeedSequence(args.seed)
    sets = reference_weight_sets(np.random.default_rng(ss.spawn(1)[0]))
    t0 = time.perf_counter()
    curves = {
        name: p_fail_curve(mats, mapping, dev, np.random.default_rng(s), DEFAULT_BUDGETS, prm)
        for (name, mats), s in zip(sets.items(), ss.spawn(len(sets)), strict=True)
    }
    elapsed = time.perf_counter() - t0
    print(f"strategy {mapping.to_dict()}, tol = {prm.tol} (of the column's max |W|), budget {prm.budget}")
    for name, pts in curves.items():
        n = sum(m.size for m in sets[name])
        print(f"\n{name} ({n} weights)")
        print(f"{'budget':>6} {'P_fail':>8} {'pulses':>7} {'rms err':>8} {'time (rows in turn)':>20}")
        for pt in pts:
            mark = " <- default" if pt.budget == prm.budget else ""
            print(
                f"{pt.budget:>6} {pt.p_fail:>8.2%} {pt.mean_pulses:>7.2f} {pt.rms_error:>8.4f} "
                f"{pt.time_s * 1e3:>17.2f} ms{mark}"
            )
    print(f"\n(simulation time for all curves: {elapsed:.1f} s)")
    print("\nGaussian programming-noise model of the device (one shot), same strategy:")
    g_min, g_max = dev.g_min_us, dev.g_max_us
    gain = mapping.gain_us(g_min, g_max)
    rng = np.random.default_rng(ss.spawn(1)[0])
    for name, mats in sets.items():
        u = np.concatenate([m.ravel() for m in mats])
        err = decode_pairs(dev.program(mapping.encode(u, g_min, g_max), rng), mapping.significance, gain) - u
        print(
            f"  {name:<16} P(|err| > tol) = {np.mean(np.abs(err) > prm.tol):6.2%}, "
            f"rms err = {np.sqrt(np.mean(err**2)):.4f}"
        )
    png = args.out / f"p_fail_{args.strategy.replace(':', '_').replace('=', '')}.png"
    plot_p_fail_curve(curves, png, tol=prm.tol)
    print(f"\nwrote {png}")


if __name__ == "__main__":
    main()
