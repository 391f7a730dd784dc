"""The 10 chips x 4 times loop of ``evaluate`` before issue 14 and now, in one run, side by side.

Usage: python bench/chips_loop.py [--base 9c0b582] [--models cnn,mlp] [--chips 10] [--times 1s,1h,1d,1y]
[--rounds 3]

The old code is the commit ``--base`` checked out in a git worktree (``/tmp/anacompile-base-<commit>``,
made on first use); each measurement runs in a fresh Python process with ``PYTHONPATH`` set to one tree or
the other, alternating old/new in every round, on the same compiled model (compiled once by the old code;
the new code reads it) and the same data (the digits test split, 540 images). Per process it reports:

* ``evaluate``: the wall time of ``evaluate(model, "digits", times, chips)`` in-process (session set-up,
  FP32 baseline and the chips x times loop), after a warm-up call of one chip at one time;
* ``process``: the whole ``python -c`` process, imports included (what a user waits for on the CLI);

then the medians over rounds and the median of the per-round ratios old / new. The JSON of both runs is
compared: the numbers differ (issue 14 changed the noise bank: one bank per experiment and size, shared by
the chips), so only the FP32 baseline must agree. Run with ``nice -n 10 env OMP_NUM_THREADS=1`` on a shared
machine.
"""

from __future__ import annotations

import argparse
import json
import os
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
evaluate(model, "digits", "2s", chips=1)  # warm-up (imports, first onnxruntime session); another job
t1 = time.perf_counter()
r = evaluate(model, "digits", times, chips=chips)
t2 = time.perf_counter()
print(json.dumps({"evaluate_s": t2 - t1, "import_s": t1 - t0, "baseline": r.baseline, "mean": r.accuracy_mean}))
"""


def base_tree(commit: str) -> Path:
    """A worktree of ``commit`` (made once)."""
    path = Path(tempfile.gettempdir()) / f"anacompile-base-{commit}"
    if not (path / "anacompile").is_dir():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), commit], check=True)
    return path


def run_child(tree: Path, model: Path, times: str, chips: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(model), times, str(chips)],
        env=env,
        cwd=str(tree),
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise SystemExit(f"{tree}: {out.stderr.strip().splitlines()[-1:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - t0
    return result


def compile_with(tree: Path, source: Path, out: Path) -> None:
    code = (
        "import sys; from anacompile.compiler import compile_model; "
        "compile_model(sys.argv[1], sys.argv[2], calibration='digits')"
    )
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run([sys.executable, "-c", code, str(source), str(out)], env=env, cwd=str(tree), check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="9c0b582", help="commit before issue 14")
    ap.add_argument("--models", default="cnn,mlp")
    ap.add_argument("--chips", type=int, default=10)
    ap.add_argument("--times", default="1s,1h,1d,1y")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    old_tree = base_tree(args.base)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    print(f"old: {args.base} ({old_tree}); new: {head.stdout.strip()} ({ROOT})")
    print(
        f"{args.chips} chips x {len(args.times.split(','))} times, digits test split (540 images), {args.rounds} rounds"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            model = Path(tmp) / f"{name}.analog.onnx"
            compile_with(old_tree, ROOT / "models" / MODELS[name], model)  # one compiled file for both
            rows: dict[str, list[dict]] = {"old": [], "new": []}
            for _ in range(args.rounds):
                rows["old"].append(run_child(old_tree, model, args.times, args.chips))
                rows["new"].append(run_child(ROOT, model, args.times, args.chips))
            if rows["old"][0]["baseline"] != rows["new"][0]["baseline"]:
                print(f"  warning: FP32 baselines differ: {rows['old'][0]['baseline']} vs {rows['new'][0]['baseline']}")
            print(f"digits {name.upper()}:")
            for key in ("evaluate_s", "process_s"):
                old = [r[key] for r in rows["old"]]
                new = [r[key] for r in rows["new"]]
                ratio = statistics.median(o / n for o, n in zip(old, new, strict=True))
                print(
                    f"  {key[:-2]:9s} old {statistics.median(old):7.3f} s  new {statistics.median(new):7.3f} s  "
                    f"old/new {ratio:5.2f}x   (rounds old {', '.join(f'{v:.3f}' for v in old)}; "
                    f"new {', '.join(f'{v:.3f}' for v in new)})"
                )
            old_mean = rows["old"][0]["mean"]
            new_mean = rows["new"][0]["mean"]
            old_text, new_text = [round(v, 4) for v in old_mean], [round(v, 4) for v in new_mean]
            print(f"  accuracy mean over chips per t: old {old_text}, new {new_text}")


if __name__ == "__main__":
    main()
