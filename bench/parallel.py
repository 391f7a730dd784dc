"""Throughput of `evaluate` with 1 and 2 worker processes, same chips, same run.

Usage: python bench/parallel.py [--model models/digits_cnn_hwa.onnx] [--chips 24]

Prints (chip, time) evaluations per second for 1 worker x 1 onnxruntime thread, 2 workers x 1 thread (both
cores busy) and 1 worker x 2 threads, their ratios (target: >= 1.7x the single worker on 2 cores), and
checks that all give identical accuracies (every chip depends only on its seed).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anacompile.compiler import compile_model  # noqa: E402
from anacompile.evaluate.monte_carlo import evaluate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models/digits_cnn_hwa.onnx"))
    ap.add_argument("--chips", type=int, default=24)
    ap.add_argument("--times", default="1s,1h,1d,1y")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "m.analog.onnx"
        compile_model(args.model, out, calibration="digits")
        n_times = len(args.times.split(","))
        rates, results = {}, {}
        for workers, threads in ((1, 1), (2, 1), (1, 2)):
            t0 = time.perf_counter()
            results[workers, threads] = evaluate(
                out, times=args.times, chips=args.chips, workers=workers, threads=threads
            )
            elapsed = time.perf_counter() - t0
            rates[workers, threads] = args.chips * n_times / elapsed
            print(
                f"{Path(args.model).name}: {args.chips} chips x {n_times} times, {workers} worker(s) x {threads} "
                f"onnxruntime thread(s): {elapsed:.2f} s, {rates[workers, threads]:.1f} (chip, t)/s",
                flush=True,
            )
        same = results[1, 1].accuracy == results[2, 1].accuracy == results[1, 2].accuracy
        print(
            f"2 workers x 1 thread / 1 worker x 1 thread: {rates[2, 1] / rates[1, 1]:.2f}x; "
            f"2 workers x 1 thread / 1 worker x 2 threads: {rates[2, 1] / rates[1, 2]:.2f}x; "
            f"identical results: {same}"
        )


if __name__ == "__main__":
    main()
