"""Recurrent Loops unrolled in the analog session vs the Loop, side by side (issue 14, item 2).

Usage: python bench/unroll_loops.py [--rounds N] [--threads N] [--sweep]

For the digits LSTM at batch 256 (and 1), standard and lean periphery, every noise source on, t = 1 day: the
source model in onnxruntime (plain), the AnalogSession with ``unroll_steps=0`` (the Loop) and the default
session (unrolled), timed in alternating rounds in one process; ratios are medians of the per-round ratios.
``--sweep`` adds, on a synthetic LSTM (I = 8, H = 64, batch 32) with symbolic T, the unrolled session's build
time (first run at a new length) and the unrolled / Loop run time for T = 8 ... 128.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anacompile.compiler import compile_model  # noqa: E402
from anacompile.evaluate.datasets import load_digits_split  # noqa: E402
from anacompile.runtime.session import AnalogSession  # noqa: E402
from bench._timing import per_call_s  # noqa: E402

PERIPHERIES = {"standard": [], "lean": ["ir_drop=0", "read_noise=0"]}


def three_way(fns: dict, rounds: int) -> dict[str, float]:
    """Median seconds per call of each function, timed in alternating rounds."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            times[k].append(per_call_s(fn))
    return {k: statistics.median(v) for k, v in times.items()} | {
        f"{k}/plain": statistics.median(a / b for a, b in zip(v, times["plain"], strict=True))
        for k, v in times.items()
        if k != "plain"
    }


def digits(work: Path, rounds: int, threads: int | None) -> None:
    x = load_digits_split()[1].x[:256].reshape(-1, 8, 8).astype(np.float32)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    source = ROOT / "models/digits_lstm_hwa.onnx"
    plain = ort.InferenceSession(str(source), so, providers=["CPUExecutionProvider"])
    for peri, overrides in PERIPHERIES.items():
        out = work / f"lstm.{peri}.onnx"
        compile_model(source, out, calibration="digits", periphery_overrides=overrides, force=True)
        unrolled = AnalogSession(out, chip_seed=1, t_inference=86400.0, intra_op_threads=threads)
        loop = AnalogSession(out, chip_seed=1, t_inference=86400.0, intra_op_threads=threads, unroll_steps=0)
        for batch in (1, 256):
            f = {"input": x[:batch]}
            assert all(np.array_equal(a, b) for a, b in zip(unrolled.run(f), loop.run(f), strict=True))
            r = three_way(
                {
                    "plain": lambda f=f: plain.run(None, f),
                    "loop": lambda f=f, s=loop: s.run(f),
                    "unrolled": lambda f=f, s=unrolled: s.run(f),
                },
                rounds,
            )
            print(
                f"digits LSTM {peri:8s} batch {batch:3d} threads {threads or 'default'}: "
                f"plain {r['plain'] * 1e6:7.0f} us"
                f"  loop {r['loop'] * 1e6:7.0f} us ({r['loop/plain']:.2f}x)  unrolled {r['unrolled'] * 1e6:7.0f} us"
                f" ({r['unrolled/plain']:.2f}x)  unrolled/loop {r['unrolled'] / r['loop']:.2f}",
                flush=True,
            )


def synthetic_lstm(path: Path, inputs: int = 8, hidden: int = 64) -> None:
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.uniform(-0.3, 0.3, shape).astype(np.float32), name)
        for name, shape in (("W", (1, 4 * hidden, inputs)), ("R", (1, 4 * hidden, hidden)), ("B", (1, 8 * hidden)))
    ]
    node = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y", "Y_h"], hidden_size=hidden)
    graph = helper.make_graph(
        [node],
        "lstm",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", inputs])],
        [
            helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["T", 1, "B", hidden]),
            helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [1, "B", hidden]),
        ],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def sweep(work: Path, rounds: int, threads: int | None) -> None:
    src, out = work / "lstm_T.onnx", work / "lstm_T.analog.onnx"
    synthetic_lstm(src)
    compile_model(src, out, periphery="standard", force=True)
    rng = np.random.default_rng(1)
    for steps in (8, 16, 32, 64, 128):
        f = {"X": rng.uniform(-1, 1, (steps, 32, 8)).astype(np.float32)}
        unrolled = AnalogSession(out, chip_seed=1, t_inference=86400.0, intra_op_threads=threads, unroll_steps=128)
        loop = AnalogSession(out, chip_seed=1, t_inference=86400.0, intra_op_threads=threads, unroll_steps=0)
        t0 = time.perf_counter()
        unrolled.run(f)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        loop.run(f)
        first_loop = time.perf_counter() - t0
        r = three_way({"plain": lambda f=f, s=loop: s.run(f), "unrolled": lambda f=f, s=unrolled: s.run(f)}, rounds)
        print(
            f"synthetic LSTM T={steps:3d} batch 32: first run (build) unrolled {first * 1e3:7.1f} ms, loop "
            f"{first_loop * 1e3:6.1f} ms; per run loop {r['plain'] * 1e6:7.0f} us, "
            f"unrolled {r['unrolled'] * 1e6:7.0f} us"
            f" ({r['unrolled/plain']:.2f} of the loop)",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    ap.add_argument("--sweep", action="store_true", help="also the T sweep on a synthetic LSTM")
    args = ap.parse_args()
    print(f"onnxruntime {ort.__version__}, numpy {np.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        digits(Path(tmp), args.rounds, args.threads or None)
        if args.sweep:
            sweep(Path(tmp), args.rounds, args.threads or None)


if __name__ == "__main__":
    main()
