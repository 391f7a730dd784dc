"""The 10 chips x 4 times loop of ``evaluate`` before issue 14 and now, in one run, side by side.

Usage: python bench/chips_loop.py [--base 9c0b582] [--models cnn,mlp] [--chips 10] [--times 1s,1h,1d,1y]
[--rounds 3]

The old code is the commit ``--base`` checked out in a git worktree (``/tmp/anacompile-base-<commit>``,
made on first use); each measurement runs in a fresh Python process with ``PYTHONPATH`` set to one tree or
the other, alternating old/new in every round, on the same compiled model (compiled once by the old code;
the new code reads it) and the same data (the digits test split, 540 images). Per process it reports:

* ``evaluate``: the wall time of ``evaluate(model, "digits", times, chips, threads=T)`` in-process (``--threads
  T``, default 1; 0 is evaluate's default, every core: session set-up, FP32 baseline and the chips x times
  loop), after a warm-up call of one chip at one time, and ``evaluate_cpu`` its CPU time (with one thread
  less sensitive to a loaded machine);
* ``process`` / ``process_cpu``: the whole ``python -c`` process, imports included (what a user waits for);

then the medians over rounds and the median of the per-round ratios old / new. For the CNN it also measures,
in a fresh process on the new code, the loop's **floor**: 40 runs of ``bench/mvm_floor.py``'s floor model (every
weight op's one product replaced by the standard model's four, x W + x W2 + |x| W3 + x^2 W4, at onnxruntime's
constant-weight speed, with no DAC, ADC, noise, IR-drop polynomial or scales) on the same 540 images with the
loop's threads, plus the session's own chip stage (``program`` of every chip and ``set_time`` of every
(chip, t), numpy, the same in any implementation); if floor + chip stage exceed old / 5, no exact
implementation of the standard model in standard onnxruntime ops reaches the 5x target on this machine.

``--pairs`` then measures, in this process and on the new code only, (chip, t) evaluations per second of
onnxruntime calls with one pair per call against many pairs per call (:mod:`anacompile.runtime.chip_batch`)
on the same session and the same snapshots, for each model at several samples per call, best of the rounds
(the numpy chip stage, the same for both, is excluded). The CNN is compiled with abs-max input ranges there:
its default (static ranges) runs as native Convs, which take one pair per call. The JSON of both runs is
compared: the numbers differ (issue 14 changed the noise bank: one bank per experiment and size, shared by
the chips), so only the FP32 baseline must agree. Run with ``nice -n 10 env OMP_NUM_THREADS=1`` on a shared
machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"cnn": "digits_cnn_hwa.onnx", "mlp": "digits_mlp_hwa.onnx"}

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from anacompile.evaluate.monte_carlo import evaluate
model, times, chips = sys.argv[1], sys.argv[2], int(sys.argv[3])
threads = int(sys.argv[4]) or None  # 0: evaluate's default (every core)
evaluate(model, "digits", "2s", chips=1, threads=threads)  # warm-up (imports, first onnxruntime session)
t1, c1 = time.perf_counter(), time.process_time()
r = evaluate(model, "digits", times, chips=chips, threads=threads)
t2, c2 = time.perf_counter(), time.process_time()
print(json.dumps({"evaluate_s": t2 - t1, "evaluate_cpu_s": c2 - c1, "baseline": r.baseline, "mean": r.accuracy_mean}))
"""


FLOOR_CHILD = r"""
import json, sys, time
import numpy as np, onnxruntime as ort
from pathlib import Path
from bench.mvm_floor import floor_model
from anacompile.evaluate.datasets import load_digits_split
from anacompile.evaluate.times import parse_times
from anacompile.runtime.session import AnalogSession
source, model, times, chips, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
so = ort.SessionOptions(); so.log_severity_level = 3; so.intra_op_num_threads = threads  # 0: every core
floor = ort.InferenceSession(floor_model(Path(source)).SerializeToString(), so, providers=["CPUExecutionProvider"])
x = load_digits_split()[1].x.reshape(-1, 1, 8, 8).astype(np.float32)
runs = chips * len(parse_times(times))
floor.run(None, {"input": x})
t0 = time.perf_counter()
for _ in range(runs):
    floor.run(None, {"input": x})
t_floor = time.perf_counter() - t0
s = AnalogSession(model, chip_seed=0, intra_op_threads=threads or None)
s.set_time(1.0)  # warm-up: first read
t0 = time.perf_counter()
for chip in range(chips):
    s.program(chip)
    for t in parse_times(times):
        s.set_time(t)
t_chip = time.perf_counter() - t0
print(json.dumps({"floor_s": t_floor, "chip_stage_s": t_chip, "runs": runs}))
"""


def floor_child(source: Path, model: Path, times: str, chips: int, threads: int = 1) -> dict:
    """The CNN loop's floor (see the module docstring), measured in a fresh process on the new code."""
    return child(ROOT, FLOOR_CHILD, [str(source), str(model), times, str(chips), str(threads)])


def child(tree: Path, code: str, args: list[str]) -> dict:
    """The last JSON line ``python -c code args`` prints, run with ``PYTHONPATH`` set to ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    out = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, cwd=str(tree), capture_output=True, text=True, check=False
    )
    if out.returncode:
        raise SystemExit(f"{tree}: {out.stderr.strip().splitlines()[-1:]}")
    result: dict = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def base_tree(commit: str) -> Path:
    """A worktree of ``commit`` (made once)."""
    path = Path(tempfile.gettempdir()) / f"anacompile-base-{commit}"
    if not (path / "anacompile").is_dir():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), commit], check=True)
    return path


def run_child(tree: Path, model: Path, times: str, chips: int, threads: int = 1) -> dict:
    t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    result = child(tree, CHILD, [str(model), times, str(chips), str(threads)])
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["process_s"] = time.perf_counter() - t0
    result["process_cpu_s"] = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    return result


def compile_with(tree: Path, source: Path, out: Path) -> None:
    code = (
        "import sys; from anacompile.compiler import compile_model; "
        "compile_model(sys.argv[1], sys.argv[2], calibration='digits')"
    )
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run([sys.executable, "-c", code, str(source), str(out)], env=env, cwd=str(tree), check=True)


def pair_throughput(model: Path, samples: int, per_call: list[int], pairs: int, rounds: int) -> dict[int, float]:
    """(chip, t) pairs per second: key 1 = one pair per ``session.run``, key P = P pairs per ChipBatch call."""
    sys.path.insert(0, str(ROOT))
    from anacompile.evaluate.datasets import load_digits_split
    from anacompile.runtime.session import AnalogSession

    s = AnalogSession(model, chip_seed=None, intra_op_threads=1)
    x = load_digits_split()[1].x[:samples]
    feeds = {s.input_names[0]: x.reshape(len(x), *[d for d in s._session.get_inputs()[0].shape[1:]])}
    states = []
    for chip in range(pairs // 4):
        s.program(chip)
        for t in (1.0, 3600.0, 86400.0, 3.15e7):
            s.set_time(t)
            states.append(s.snapshot())
    batch = s.chip_batch()
    best = {p: float("inf") for p in [1, *per_call]}
    for _ in range(rounds):
        t0 = time.perf_counter()
        for state in states:  # one pair per call: the session's run (same noise path)
            s._state, s._offsets = dict(state.state), state.offsets
            s.run(feeds)
        best[1] = min(best[1], time.perf_counter() - t0)
        for p in per_call:
            t0 = time.perf_counter()
            for i in range(0, len(states), p):
                batch.run(states[i : i + p], feeds)
            best[p] = min(best[p], time.perf_counter() - t0)
    return {p: len(states) / v for p, v in best.items()}


def throughput_section(args, tmp: str) -> None:
    sys.path.insert(0, str(ROOT))
    from anacompile.compiler import compile_model

    print(f"(chip, t) pairs per second, {args.pair_count} pairs, best of {args.rounds} rounds, one onnxruntime thread:")
    for name in args.models.split(","):
        model = Path(tmp) / f"{name}.pairs.onnx"
        overrides = ["input_range=absmax"] if name == "cnn" else None
        compile_model(ROOT / "models" / MODELS[name], model, calibration="digits", periphery_overrides=overrides)
        for samples in (540, 64, 16):
            per_call = [int(p) for p in args.per_call.split(",")]
            rate = pair_throughput(model, samples, per_call, args.pair_count, args.rounds)
            cells = "  ".join(f"P={p}: {rate[p]:8.1f}/s ({rate[p] / rate[1]:4.2f}x)" for p in per_call)
            print(f"  {name.upper()} {samples:3d} samples/call: one per call {rate[1]:8.1f}/s   {cells}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="9c0b582", help="commit before issue 14")
    ap.add_argument("--models", default="cnn,mlp")
    ap.add_argument("--chips", type=int, default=10)
    ap.add_argument("--times", default="1s,1h,1d,1y")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--threads", type=int, default=1, help="evaluate's threads in both trees (0: its default, every core)"
    )
    ap.add_argument("--pairs", action="store_true", help="also measure pairs per second, one vs many per call")
    ap.add_argument("--only-pairs", action="store_true", help="only the pairs-per-second section")
    ap.add_argument("--per-call", default="2,4,8,40", help="pairs per call for --pairs")
    ap.add_argument("--pair-count", type=int, default=40, help="(chip, t) pairs for --pairs (a multiple of 4)")
    args = ap.parse_args()
    if args.only_pairs:
        with tempfile.TemporaryDirectory() as tmp:
            throughput_section(args, tmp)
        return
    old_tree = base_tree(args.base)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    print(f"old: {args.base} ({old_tree}); new: {head.stdout.strip()} ({ROOT})")
    print(
        f"{args.chips} chips x {len(args.times.split(','))} times, digits test split (540 images), "
        f"{args.rounds} rounds, evaluate threads {args.threads or 'default'}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            model = Path(tmp) / f"{name}.analog.onnx"
            compile_with(old_tree, ROOT / "models" / MODELS[name], model)  # one compiled file for both
            rows: dict[str, list[dict]] = {"old": [], "new": [], "floor": []}
            for _ in range(args.rounds):
                rows["old"].append(run_child(old_tree, model, args.times, args.chips, args.threads))
                rows["new"].append(run_child(ROOT, model, args.times, args.chips, args.threads))
                if name == "cnn":
                    rows["floor"].append(
                        floor_child(ROOT / "models" / MODELS[name], model, args.times, args.chips, args.threads)
                    )
            if rows["old"][0]["baseline"] != rows["new"][0]["baseline"]:
                print(f"  warning: FP32 baselines differ: {rows['old'][0]['baseline']} vs {rows['new'][0]['baseline']}")
            print(f"digits {name.upper()}:")
            for key in ("evaluate_s", "evaluate_cpu_s", "process_s", "process_cpu_s"):
                old = [r[key] for r in rows["old"]]
                new = [r[key] for r in rows["new"]]
                ratio = statistics.median(o / n for o, n in zip(old, new, strict=True))
                print(
                    f"  {key[:-2]:12s} old {statistics.median(old):7.3f} s  new {statistics.median(new):7.3f} s  "
                    f"old/new {ratio:5.2f}x   (rounds old {', '.join(f'{v:.3f}' for v in old)}; "
                    f"new {', '.join(f'{v:.3f}' for v in new)})"
                )
            old_mean = rows["old"][0]["mean"]
            new_mean = rows["new"][0]["mean"]
            old_text, new_text = [round(v, 4) for v in old_mean], [round(v, 4) for v in new_mean]
            print(f"  accuracy mean over chips per t: old {old_text}, new {new_text}")
            if rows["floor"]:
                old_s = statistics.median(r["evaluate_s"] for r in rows["old"])
                floor_s = statistics.median(r["floor_s"] for r in rows["floor"])
                chip_s = statistics.median(r["chip_stage_s"] for r in rows["floor"])
                runs = rows["floor"][0]["runs"]
                floor_rounds = ", ".join(f"{r['floor_s']:.3f}" for r in rows["floor"])
                verdict = "above" if floor_s + chip_s > old_s / 5 else "below"
                print(
                    f"  floor: {runs} runs of the 4-product floor model {floor_s:.3f} s + chip stage {chip_s:.3f} s "
                    f"= {floor_s + chip_s:.3f} s; a 5x loop needs <= old / 5 = {old_s / 5:.3f} s: the floor is "
                    f"{verdict} it (rounds floor {floor_rounds})"
                )
        if args.pairs:
            throughput_section(args, tmp)


if __name__ == "__main__":
    main()
