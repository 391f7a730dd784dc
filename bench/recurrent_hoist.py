"""Hoisting a recurrence's input-to-hidden MVMs, measured on the bare MVMs (issue 14, item 2).

Usage: python bench/recurrent_hoist.py

Per step with 4 MVMs (the standard model's q W, q W_ir, |q||W|, q^2|W|): [x_t, h] K=72 MatMuls vs
x parts of all steps hoisted (one MatMul (T*B, 8) x (8, 4N), Split per step and MVM) + per step K=64 MatMul + Add.
One thread, CPU time, median of alternating rounds."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._timing import per_call_s  # noqa: E402

B, T, N, K = 256, 8, 256, 4
rng = np.random.default_rng(0)
Ws = [rng.standard_normal((72, N)).astype(np.float32) for _ in range(K)]


def model(kind: str) -> bytes:
    nodes, outs = [], []
    inputs = [
        helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, 8]),
        helper.make_tensor_value_info("H", TensorProto.FLOAT, [B, 64]),
    ]
    inits = [helper.make_tensor(f"t{t}", TensorProto.INT64, [], [t]) for t in range(T)]
    inits += [helper.make_tensor("z0", TensorProto.INT64, [1], [0])]
    if kind == "whole":
        inits += [numpy_helper.from_array(w, f"W{k}") for k, w in enumerate(Ws)]
    else:
        inits += [numpy_helper.from_array(w[8:], f"Wh{k}") for k, w in enumerate(Ws)]
        inits += [numpy_helper.from_array(np.concatenate([w[:8] for w in Ws], 1), "Wx")]
        nodes += [
            helper.make_node("MatMul", ["X", "Wx"], ["P"]),  # (T, B, 4N)
            helper.make_node("Split", ["P"], [f"pt{t}" for t in range(T)], axis=0, num_outputs=T),
        ]
        for t in range(T):
            nodes.append(helper.make_node("Squeeze", [f"pt{t}", "z0"], [f"ps{t}"]))
            nodes.append(helper.make_node("Split", [f"ps{t}"], [f"p{t}_{k}" for k in range(K)], axis=1, num_outputs=K))
    for t in range(T):
        if kind == "whole":
            nodes.append(helper.make_node("Gather", ["X", f"t{t}"], [f"x{t}"], axis=0))
            nodes.append(helper.make_node("Concat", [f"x{t}", "H"], [f"cat{t}"], axis=1))
        for k in range(K):
            if kind == "whole":
                nodes.append(helper.make_node("MatMul", [f"cat{t}", f"W{k}"], [f"y{t}_{k}"]))
            else:
                nodes.append(helper.make_node("MatMul", ["H", f"Wh{k}"], [f"m{t}_{k}"]))
                nodes.append(helper.make_node("Add", [f"m{t}_{k}", f"p{t}_{k}"], [f"y{t}_{k}"]))
            outs.append(helper.make_tensor_value_info(f"y{t}_{k}", TensorProto.FLOAT, None))
    g = helper.make_graph(nodes, kind, inputs, outs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


def main() -> None:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    f = {"X": rng.standard_normal((T, B, 8)).astype(np.float32), "H": rng.standard_normal((B, 64)).astype(np.float32)}
    s = {k: ort.InferenceSession(model(k), so, providers=["CPUExecutionProvider"]) for k in ("whole", "hoisted")}
    a, b = s["whole"].run(None, f), s["hoisted"].run(None, f)
    print("max |diff|", max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True)))
    res = {k: [] for k in s}
    for _ in range(9):
        for k, se in s.items():
            res[k].append(per_call_s(lambda se=se: se.run(None, f), clock="cpu"))
    for k in res:
        print(k, f"{statistics.median(res[k]) * 1e6:.0f} us per {T} steps x {K} MVMs")
    print(
        "hoisted/whole per round", statistics.median([a / b for a, b in zip(res["hoisted"], res["whole"], strict=True)])
    )


if __name__ == "__main__":
    main()
