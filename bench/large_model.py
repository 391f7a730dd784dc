"""Compile a ~100 M-parameter model with external data: time and peak memory against onnx load + save.

Usage: python bench/large_model.py [--params 100e6] [--width 1024] [--keep DIR] [--json FILE] [--before SRC]

Builds a transformer-like stack (per block: q, k, v, out projections d x d and an FFN d x 4d, 4d x d, on
activations (B, T, d); random weights) saved with all tensors in one external data file, in a temporary
folder. Then, each in its own subprocess (wrapped, so that ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` of the
wrapper is that command's peak resident memory alone):

* ``onnx.load`` + ``onnx.save`` with external data (the cost of just reading and writing the model);
* ``anacompile compile`` with the PCM device and the standard periphery, ``--chip-state none`` (the plan
  and seed) and ``--chip-state full`` (the programmed chip too);
* with ``--before SRC`` (an anacompile source tree, e.g. ``git archive`` of an older commit), the same
  ``full`` compile run by that code, side by side in the same run;

and prints the wall times, peak RSS, the model size, and the ratios side by side (targets of issue 14:
compile with ``--chip-state none`` <= 5x the load + save time, peak memory <= 3x the model size; output
files are removed after each compile). The compiled output of a 100 M-parameter model is
~2.4 GB (programming plan, programmed conductances and drift exponents: 6 float32 per weight for one
differential pair), so it is written with external data past protobuf's 2 GB limit. Needs ~3.5 GB of
disk in the temporary folder (source, its copy, output).

Measured on the 2-core, 24 GB development machine (100.7 M parameters, 0.40 GB): onnx load + save 3.4 s,
0.49 GB peak RSS; compile 53 s (83 s on a run with slower disk), 0.70 GB peak RSS (1.7x the model; 0.10 GB
of it is Python and the imports). Time is bound by the PCM device statistics of 201 M devices
(programming noise, drift exponents, the t = 0 read for the drift-compensation reference: ~75 %), memory
by the float64 temporaries of the device kernels on the largest layer (4096 x 1024).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx_ir as ir

ROOT = Path(__file__).resolve().parents[1]

# Run one command as a child and report its wall time and the peak RSS of that child alone.
WRAPPER = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
rc = subprocess.run(sys.argv[1:]).returncode
wall = time.perf_counter() - t0
print(json.dumps({"rc": rc, "wall_s": wall,
                  "maxrss_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))
"""

LOAD_SAVE = """
import sys, onnx
m = onnx.load(sys.argv[1])
onnx.save_model(m, sys.argv[2], save_as_external_data=True, all_tensors_to_one_file=True,
                location="copy.onnx.data", size_threshold=1024)
"""

IMPORTS_ONLY = "import onnx, onnx_ir, onnxruntime, numpy, anacompile.compiler"


def build_model(path: Path, params: float, width: int, seed: int = 0) -> int:
    """Write the transformer-like stack with external data; return its parameter count."""
    d, ff = width, 4 * width
    per_block = 4 * d * d + 2 * d * ff
    blocks = max(1, round(params / per_block))
    rng = np.random.default_rng(seed)
    x = ir.Value(name="x", shape=ir.Shape(["B", "T", d]), type=ir.TensorType(ir.DataType.FLOAT))
    nodes, inits = [], []
    count = 0

    def weight(name: str, k: int, n: int) -> ir.Value:
        nonlocal count
        w = rng.standard_normal((k, n), dtype=np.float32) / np.float32(np.sqrt(k))
        v = ir.Value(
            name=name,
            shape=ir.Shape([k, n]),
            type=ir.TensorType(ir.DataType.FLOAT),
            const_value=ir.tensor(w, name=name),
        )
        inits.append(v)
        count += w.size
        return v

    def op(op_type: str, *inputs: ir.Value, name: str | None = None, n: int = d) -> ir.Value:
        node = ir.node(op_type, list(inputs), name=name)
        node.outputs[0].type = ir.TensorType(ir.DataType.FLOAT)
        node.outputs[0].shape = ir.Shape(["B", "T", n])
        nodes.append(node)
        return node.outputs[0]

    h = x
    for b in range(blocks):
        q = op("MatMul", h, weight(f"b{b}.wq", d, d), name=f"b{b}.q")
        k = op("MatMul", h, weight(f"b{b}.wk", d, d), name=f"b{b}.k")
        v = op("MatMul", h, weight(f"b{b}.wv", d, d), name=f"b{b}.v")
        mixed = op("Add", op("Add", q, k), v)  # stands in for attention (digital in the compiled model too)
        h = op("Add", h, op("MatMul", mixed, weight(f"b{b}.wo", d, d), name=f"b{b}.out"))
        f = op("Relu", op("MatMul", h, weight(f"b{b}.ff1", d, ff), name=f"b{b}.ff1", n=ff), n=ff)
        h = op("Add", h, op("MatMul", f, weight(f"b{b}.ff2", ff, d), name=f"b{b}.ff2"))
    h.name = "y"
    graph = ir.Graph([x], [h], nodes=nodes, initializers=inits, opset_imports={"": 17}, name="stack")
    ir.save(ir.Model(graph, ir_version=8), path, external_data=f"{path.name}.data")
    return count


def measure(cmd: list[str], pythonpath: Path | None = None) -> dict:
    """Wall time and peak RSS of ``cmd`` run alone in a fresh child (``pythonpath``: import anacompile from
    that source tree instead of the installed one)."""
    env = None
    if pythonpath is not None:
        env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    out = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], capture_output=True, text=True, check=True, env=env)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise RuntimeError(f"{cmd[:4]} failed with exit code {result['rc']}")
    return result


def size_bytes(model: Path) -> int:
    """The model file plus its external data files."""
    return sum(p.stat().st_size for p in model.parent.iterdir() if p.name.startswith(model.name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=float, default=100e6, help="approximate parameter count")
    parser.add_argument("--width", type=int, default=1024, help="model width d (FFN 4d)")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep the files")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON")
    parser.add_argument(
        "--before", type=Path, default=None, help="also compile (full) with the anacompile source tree in SRC"
    )
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="anacompile-large-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        src_dir, copy_dir, out_dir = work / "src", work / "copy", work / "out"
        for folder in (src_dir, copy_dir, out_dir):
            folder.mkdir(exist_ok=True)
        src = src_dir / "large.onnx"
        t0 = time.perf_counter()
        n_params = build_model(src, args.params, args.width)
        print(
            f"built {n_params / 1e6:.1f} M parameters, {size_bytes(src) / 1e9:.2f} GB in "
            f"{time.perf_counter() - t0:.1f} s ({work})",
            file=sys.stderr,
        )
        model_bytes = size_bytes(src)

        base = measure([sys.executable, "-c", IMPORTS_ONLY])
        load_save = measure([sys.executable, "-c", LOAD_SAVE, str(src), str(copy_dir / "copy.onnx")])
        shutil.rmtree(copy_dir)
        runs = [("none", None), ("full", None)] + ([("full", args.before.resolve())] if args.before else [])
        compiles = {}
        for state, src_tree in runs:
            out = out_dir / "large.analog.onnx"
            label = f"compile --chip-state {state}" + (" (before)" if src_tree else "")
            cmd = [sys.executable, "-c", "from anacompile.cli import _console_main; _console_main()", "compile"]
            cmd += [str(src), "-o", str(out), "--device", "pcm", "--json", "-", "--force"]
            if src_tree is None:
                cmd += ["--chip-state", state]
            result = measure(cmd, pythonpath=src_tree)
            result["output_bytes"] = size_bytes(out)
            compiles[label] = result
            for f in out_dir.iterdir():
                f.unlink()
        rows = {
            "parameters": n_params,
            "model_bytes": model_bytes,
            "imports_only": base,
            "load_save": load_save,
            "compiles": compiles,
            "time_ratio": {k: c["wall_s"] / load_save["wall_s"] for k, c in compiles.items()},
            "memory_ratio_to_model": {k: c["maxrss_bytes"] / model_bytes for k, c in compiles.items()},
            "load_save_memory_ratio_to_model": load_save["maxrss_bytes"] / model_bytes,
        }
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)

    gb = 1e9
    print(f"model: {n_params / 1e6:.1f} M parameters, {model_bytes / gb:.2f} GB (external data)")
    head = f"{'':36s}{'wall (s)':>10s}{'peak RSS (GB)':>15s}{'output (GB)':>13s}{'time / l+s':>12s}{'RSS / model':>13s}"
    print(head)
    print(f"{'python + imports only':36s}{base['wall_s']:10.1f}{base['maxrss_bytes'] / gb:15.2f}")
    print(
        f"{'onnx.load + onnx.save':36s}{load_save['wall_s']:10.1f}{load_save['maxrss_bytes'] / gb:15.2f}"
        f"{model_bytes / gb:13.2f}{1.0:12.1f}{rows['load_save_memory_ratio_to_model']:13.2f}"
    )
    for label, c in compiles.items():
        print(
            f"{label:36s}{c['wall_s']:10.1f}{c['maxrss_bytes'] / gb:15.2f}{c['output_bytes'] / gb:13.2f}"
            f"{rows['time_ratio'][label]:12.1f}{rows['memory_ratio_to_model'][label]:13.2f}"
        )
    print("targets: compile --chip-state none <= 5x load + save, peak RSS <= 3x the model size")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
