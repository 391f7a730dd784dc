"""Analog inference time / plain onnxruntime time of the source model, same batch, same run.

Usage: python bench/overhead.py [--quick] [--models mlp,cnn,lstm,transformer,minilm,stack] [--threads N]
[--cpu-time]

Prints, for each model and periphery, the time per run of the source model in onnxruntime and of the
compiled model in an AnalogSession (chip programmed, weights at t = 1 day, every noise source of the
periphery on), and their ratio, at batch 1 and 256; then the end-to-end time of `evaluate` for 10 chips x
4 times on the digits MLP. Peripheries: `standard` (Rasch et al. 2023: DAC, MVM, PCM short-term read
noise, IR drop, output noise, ADC) and `lean` (DAC, MVM, output noise, ADC: the issue-3 list).
"""

from __future__ import annotations

import argparse
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
from anacompile.evaluate.monte_carlo import evaluate  # noqa: E402
from anacompile.runtime.session import AnalogSession  # noqa: E402
from bench._timing import side_by_side  # noqa: E402

PERIPHERIES = {"standard": [], "lean": ["ir_drop=0", "read_noise=0"]}


def matmul_stack(path: Path, layers: int = 4, width: int = 512) -> None:
    """A stack of width x width MatMul + Relu layers with random weights (also bench/gpu_overhead.py's)."""
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "input"
    for i in range(layers):
        w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"W{i}"))
        nodes.append(helper.make_node("MatMul", [x, f"W{i}"], [f"h{i}"], name=f"fc{i}"))
        nodes.append(helper.make_node("Relu", [f"h{i}"], [f"r{i}"]))
        x = f"r{i}"
    nodes[-1].output[0] = "logits"
    g = helper.make_graph(
        nodes,
        "stack",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", width])],
        inits,
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


MODELS = ("mlp", "cnn", "lstm", "transformer", "minilm", "stack")
THREADS: int | None = None  # --threads: onnxruntime threads of both sessions (None: onnxruntime's choice)
CLOCK = "wall"  # --cpu-time: "cpu"


def plain_session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if THREADS:
        so.intra_op_num_threads = THREADS
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def measure(
    name: str, source: Path, calib: str | None, x, work: Path, rounds: int, batches: tuple[int, ...] = (1, 256)
) -> list[dict]:
    rows = []
    plain = plain_session(source)
    feeds = x if isinstance(x, dict) else {"input": x}
    for peri, overrides in PERIPHERIES.items():
        out = work / f"{source.stem}.{peri}.analog.onnx"
        compile_model(source, out, calibration=calib, periphery_overrides=overrides, force=True)
        sess = AnalogSession(out, chip_seed=1, t_inference=86400.0, intra_op_threads=THREADS)
        for batch in batches:
            xb = {k: v[:batch] for k, v in feeds.items()}
            for _ in range(2):  # first runs of new shapes: shape probe, unrolled session (runtime/unroll_loops.py)
                sess.run(xb)
            t_a, t_p, ratio = side_by_side(
                lambda s=sess, f=xb: s.run(f), lambda f=xb: plain.run(None, f), rounds=rounds, clock=CLOCK
            )
            rows.append(
                {
                    "model": name,
                    "periphery": peri,
                    "batch": batch,
                    "plain_us": t_p * 1e6,
                    "analog_us": t_a * 1e6,
                    "ratio": ratio,
                }
            )
            print(
                f"{name:18s} {peri:9s} batch {batch:4d}: plain {t_p * 1e6:9.1f} us  analog {t_a * 1e6:9.1f} us"
                f"  ratio {ratio:5.2f}x",
                flush=True,
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {','.join(MODELS)}")
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime threads of both sessions")
    ap.add_argument("--cpu-time", action="store_true", help="time CPU time of this thread (needs --threads 1)")
    args = ap.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        ap.error(f"unknown model(s) {unknown}; choose from {','.join(MODELS)}")
    if args.cpu_time and args.threads != 1:
        ap.error("--cpu-time times the calling thread only: give --threads 1")
    global THREADS, CLOCK
    THREADS, CLOCK = args.threads, "cpu" if args.cpu_time else "wall"
    rounds = 3 if args.quick else 7
    print(
        f"onnxruntime {ort.__version__}, numpy {np.__version__}, threads {THREADS or 'default'}, clock {CLOCK}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        x_digits = np.tile(load_digits_split()[1].x, (1, 1))[:256]
        if "mlp" in models:
            measure("digits MLP (hwa)", ROOT / "models/digits_mlp_hwa.onnx", "digits", x_digits, work, rounds)
        x_img = x_digits.reshape(-1, 8, 8)
        if "cnn" in models:
            cnn = ROOT / "models/digits_cnn_hwa.onnx"
            measure("digits CNN (hwa)", cnn, "digits", x_img.reshape(-1, 1, 8, 8), work, rounds)
        if "lstm" in models:
            measure("digits LSTM (hwa)", ROOT / "models/digits_lstm_hwa.onnx", "digits", x_img, work, rounds)
        if "transformer" in models:
            measure("digits transformer", ROOT / "models/digits_transformer_hwa.onnx", "digits", x_img, work, rounds)
        if "minilm" in models:
            try:
                from anacompile.evaluate.embeddings import minilm_model_path
                from anacompile.evaluate.metrics import load_sentences, sentence_feeds

                sentences = (load_sentences() * 6)[:256]
                feeds = sentence_feeds(sentences)
                measure("MiniLM-L3 (real)", minilm_model_path(), None, feeds, work, rounds, batches=(1, 64, 256))
            except Exception as err:  # the optional MiniLM package is not installed
                print(f"MiniLM skipped: {err}")
        if "stack" in models:
            stack = work / "stack512.onnx"
            matmul_stack(stack)
            rng = np.random.default_rng(1)
            x_stack = rng.standard_normal((256, 512)).astype(np.float32)
            np.savez(work / "calib.npz", input=x_stack, labels=np.zeros(256, np.int64))
            measure("4 x 512x512 stack", stack, str(work / "calib.npz"), x_stack, work, rounds)
        if "mlp" in models:
            compiled = work / "digits_mlp_hwa.standard.analog.onnx"
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                evaluate(compiled, data="digits", times="1s,1h,1d,1y", chips=10, threads=THREADS)
                times.append(time.perf_counter() - t0)
            print(
                f"evaluate digits MLP, 10 chips x 4 times, 540 test images, end to end: "
                f"{min(times):.2f} s (best of 3; runs {', '.join(f'{t:.2f}' for t in times)})"
            )


if __name__ == "__main__":
    main()
