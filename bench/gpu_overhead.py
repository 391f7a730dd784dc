"""Analog / plain onnxruntime time on one execution provider (CUDA where onnxruntime has it), same run.

Usage: python bench/gpu_overhead.py [--provider cuda|cpu|auto] [--quick] [--json FILE]

For the digits MLP, CNN and LSTM, and a 4 x 2048 x 2048 MatMul stack (where a GPU has work to do), at
batch 256 (and 4096 for the stack): the source model in a plain onnxruntime session and the compiled model
(standard periphery, every noise source on, chip programmed, weights at t = 1 d) in an AnalogSession, both
on the same provider, timed alternately (bench/_timing.side_by_side), and their ratio. It prints which
provider every session actually ran on (``session.get_providers()``), so a CPU run is never mistaken for a
GPU one: ``auto`` (default) takes CUDA when this onnxruntime has it, else the CPU. On a non-CPU provider it
also runs the same chip on the CPU and prints the largest output difference relative to the output's
range (the same fed noise: only float rounding differs).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anacompile.compiler import compile_model  # noqa: E402
from anacompile.datasets import load_digits_split  # noqa: E402
from anacompile.runtime.providers import resolve_providers  # noqa: E402
from anacompile.runtime.session import AnalogSession  # noqa: E402
from bench._timing import side_by_side  # noqa: E402
from bench.overhead import matmul_stack  # noqa: E402

DAY = 86400.0


def choose(provider: str) -> list[str]:
    if provider == "auto":
        provider = "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"
    return resolve_providers(provider)


def measure(name, source, calib, x, work, providers, rounds, batches) -> list[dict]:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    plain = ort.InferenceSession(str(source), so, providers=providers)
    out = work / f"{source.stem}.analog.onnx"
    compile_model(source, out, calibration=calib, force=True)
    sess = AnalogSession(out, chip_seed=1, t_inference=DAY, providers=providers)
    used = (plain.get_providers()[0], sess._session.get_providers()[0])
    rows = []
    for batch in batches:
        xb = {"input": x[:batch]}
        t_a, t_p, ratio = side_by_side(lambda f=xb: sess.run(f), lambda f=xb: plain.run(None, f), rounds=rounds)
        row = {"model": name, "batch": batch, "plain_us": t_p * 1e6, "analog_us": t_a * 1e6, "ratio": ratio}
        row["providers"] = {"plain": used[0], "analog": used[1]}
        if providers[0] != "CPUExecutionProvider":
            cpu = AnalogSession(out, chip_seed=1, t_inference=DAY)
            a, b = sess.run(xb)[0], cpu.run(xb)[0]
            row["max_rel_diff_vs_cpu"] = float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-30))
        rows.append(row)
        extra = f"  |analog - cpu| / max {row['max_rel_diff_vs_cpu']:.2e}" if "max_rel_diff_vs_cpu" in row else ""
        print(
            f"{name:18s} batch {batch:5d} on {used[1]}: plain {t_p * 1e6:10.1f} us  analog {t_a * 1e6:10.1f} us"
            f"  ratio {ratio:5.2f}x{extra}",
            flush=True,
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--provider", default="auto", help="cuda, cpu or auto (CUDA when available)")
    ap.add_argument("--quick", action="store_true", help="fewer rounds, smaller stack")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = ap.parse_args()
    providers = choose(args.provider)
    rounds = 3 if args.quick else 7
    print(f"onnxruntime {ort.__version__}; available {ort.get_available_providers()}; requested {providers}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        x = load_digits_split()[1].x.astype(np.float32)
        x = np.tile(x, (8, 1))[:4096]
        models = ROOT / "models"
        rows += measure("digits MLP", models / "digits_mlp_hwa.onnx", "digits", x, work, providers, rounds, (256,))
        cnn = models / "digits_cnn_hwa.onnx"
        rows += measure("digits CNN", cnn, "digits", x.reshape(-1, 1, 8, 8), work, providers, rounds, (256,))
        lstm = models / "digits_lstm_hwa.onnx"
        rows += measure("digits LSTM", lstm, "digits", x.reshape(-1, 8, 8), work, providers, rounds, (256,))
        width = 512 if args.quick else 2048
        big = work / f"stack{width}.onnx"
        matmul_stack(big, width=width)
        xs = np.random.default_rng(1).standard_normal((4096, width)).astype(np.float32)
        np.savez(work / "calib.npz", input=xs[:256], labels=np.zeros(256, np.int64))
        rows += measure(f"4 x {width}^2 stack", big, str(work / "calib.npz"), xs, work, providers, rounds, (256, 4096))
    print(f"provider used: {rows[0]['providers']['analog']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
