"""Where an analog run's time goes: onnxruntime's own profile of the session's model beside the plain model.

Usage: python bench/profile_session.py [--models mlp,cnn,lstm,transformer,minilm] [--batch 256] [--threads 1]
[--runs 20]

For each model and periphery (``standard``, ``lean``) it compiles the model, runs it in an ``AnalogSession``
(chip 1 at t = 1 d) and the source model in onnxruntime, both with onnxruntime's profiler on, and sorts every
kernel's time into

* ``MVM``: the tile matrix products of the ``AnalogMatMul`` bodies (MatMul / FusedMatMul / Gemm / Conv,
  NCHWc convs included): with the standard periphery 4 per tile MVM (q W, q W_ir, |q| |W|, q^2 |W|), 1 lean;
* ``periphery``: every other op of the bodies (DAC, IR drop, read and output noise, ADC, scales, reorders,
  shape ops);
* ``digital``: the model's own ops outside the analog layers (activations, norms, pooling, attention), which
  the plain model also runs;
* ``run overhead``: the wall time per run minus the sum of kernel times (onnxruntime's per-node dispatch and
  the session's Python: noise offsets, feeds).

A node belongs to an analog body when its name carries the mark this script gives every node of the session
model's ``AnalogMatMul`` function bodies before onnxruntime inlines them (:data:`BODY_MARK`). A recurrent
model is profiled as the session runs it: from its second run with some input shapes, the copy with the
Loops unrolled (:mod:`anacompile.runtime.unroll_loops`, a separate onnxruntime session, which the profile
then reads); ``--loop`` profiles the Loop instead (``unroll_steps=0``), whose body nodes are profiled node by
node (the Loop node's own time is their sum, so it is not counted again). onnxruntime's
profiler adds a few microseconds per node, which dominates the digits MLP's small kernels (use
``bench/overhead.py`` for its ratios). The ratio analog / plain
then splits into these parts, which is what bounds it (bench/README.md, issue 14).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anacompile.compiler import compile_model  # noqa: E402
from anacompile.evaluate.datasets import load_digits_split  # noqa: E402
from anacompile.runtime.ort_session import ort_session  # noqa: E402
from anacompile.runtime.session import AnalogSession  # noqa: E402
from anacompile.runtime.unroll_loops import MAX_UNROLL_STEPS  # noqa: E402
from bench.overhead import PERIPHERIES  # noqa: E402

MVM_OPS = {"MatMul", "FusedMatMul", "Gemm", "Conv", "FusedConv", "FusedGemm"}
BODY_MARK = "anacompile_body_"
MODELS = ("mlp", "cnn", "lstm", "transformer", "minilm")


def marked(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of the session's model whose function-body nodes are named with :data:`BODY_MARK`."""
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    for fn in m.functions:
        for i, node in enumerate(fn.node):
            node.name = f"{BODY_MARK}{i}"
    return m


def profile(make_session, run, runs: int, work: Path, tag: str, primed=lambda: 0) -> dict[str, float]:
    """Microseconds per run by category, and the wall time per run (``primed()``: runs the profiled onnxruntime
    session saw while ``make_session`` made it)."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.enable_profiling = True
    so.profile_file_prefix = str(work / tag)
    sess = make_session(so)
    for _ in range(3):
        run(sess)
    t0 = time.perf_counter()
    for _ in range(runs):
        run(sess)
    wall = (time.perf_counter() - t0) / runs
    events = json.loads(Path(sess.end_profiling()).read_text())
    totals: dict[str, float] = collections.defaultdict(float)
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        op = e.get("args", {}).get("op_name", "")
        if op in ("Loop", "Scan", "If"):  # their bodies' nodes are profiled one by one
            continue
        if BODY_MARK in e["name"]:
            totals["MVM" if op in MVM_OPS else "periphery"] += e["dur"]
        else:
            totals["digital"] += e["dur"]
    warm = primed() + 3 + runs  # the profiler saw every run
    out = {k: v / warm for k, v in totals.items()}
    out["run overhead"] = max(0.0, wall * 1e6 - sum(out.values()))
    out["wall"] = wall * 1e6
    return out


def inputs(name: str, batch: int):
    if name == "minilm":
        from anacompile.evaluate.embeddings import minilm_model_path
        from anacompile.evaluate.metrics import load_sentences, sentence_feeds

        return minilm_model_path(), None, sentence_feeds((load_sentences() * 12)[:batch])
    x = np.tile(load_digits_split()[1].x, (2, 1))[:batch]
    shape = {"mlp": (-1, 64), "cnn": (-1, 1, 8, 8), "lstm": (-1, 8, 8), "transformer": (-1, 8, 8)}[name]
    return ROOT / "models" / f"digits_{name}_hwa.onnx", "digits", {"input": x.reshape(shape)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads (0: onnxruntime's choice)")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--loop", action="store_true", help="profile recurrent models on their Loop, not unrolled")
    args = ap.parse_args()
    print(f"onnxruntime {ort.__version__}, batch {args.batch}, threads {args.threads or 'default'}; us per run")
    cats = ("MVM", "periphery", "digital", "run overhead")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.models.split(","):
            source, calib, feeds = inputs(name, args.batch)
            runs = max(2, args.runs if name != "minilm" else args.runs // 10)

            def plain_session(so, source=source):
                if args.threads:
                    so.intra_op_num_threads = args.threads
                return ort.InferenceSession(str(source), so, providers=["CPUExecutionProvider"])

            plain = profile(plain_session, lambda s, f=feeds: s.run(None, f), runs, work, f"{name}.plain")
            for peri, overrides in PERIPHERIES.items():
                out = work / f"{name}.{peri}.onnx"
                compile_model(source, out, calibration=calib, periphery_overrides=overrides, force=True)
                analog = AnalogSession(
                    out,
                    chip_seed=1,
                    t_inference=86400.0,
                    intra_op_threads=args.threads or None,
                    unroll_steps=0 if args.loop else MAX_UNROLL_STEPS,
                )
                primed = [0]  # runs the unrolled session saw while it was made

                def analog_session(so, a=analog, f=feeds, primed=primed):
                    if args.threads:
                        so.intra_op_num_threads = args.threads
                    a._session_proto = marked(a._session_proto)
                    a._session = ort_session(a._session_proto, so, a._providers, label="profiled")
                    if not a._unroller:
                        return a._session
                    # recurrent Loops: the session runs a copy with them unrolled from the second run of these
                    # input shapes on (its own onnxruntime session, built with these options): profile that
                    a._session_options = lambda: so
                    a.run(f)
                    a.run(f)
                    built = [e for e in a._unroller._by_shapes.values() if e is not None]
                    if not built:  # too many steps (unroll_steps): the Loop it is
                        return a._session
                    primed[0] = 1
                    return built[0][0]

                run = lambda s, a=analog, f=feeds: a.run(f)  # noqa: E731
                prof = profile(analog_session, run, runs, work, f"{name}.{peri}", lambda p=primed: p[0])
                parts = "  ".join(f"{c} {prof.get(c, 0.0):9.0f}" for c in cats)
                print(
                    f"{name:11s} {peri:8s} analog {prof['wall']:9.0f} = {parts}  | plain {plain['wall']:8.0f} "
                    f"(kernels {plain['wall'] - plain['run overhead']:8.0f})  ratio {prof['wall'] / plain['wall']:5.2f}"
                    f"  MVM/plain {prof.get('MVM', 0.0) / plain['wall']:4.2f}"
                    f"  periphery/plain {prof.get('periphery', 0.0) / plain['wall']:4.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
