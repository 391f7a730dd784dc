"""The arithmetic floor of the standard crossbar model in onnxruntime: 4 matrix products per weight op.

Usage: python bench/mvm_floor.py [--models mlp,cnn,transformer,minilm] [--batch 256] [--threads N]
[--loop-batch 540]

The standard periphery (Rasch et al. 2023, reference/papers.md (c)) needs, for every tile MVM z = q W, three
more products of the same size: q W_ir (IR drop), |q| |W| (the IR drop's a) and q^2 |W| (the PCM short-term
read noise's variance). Whatever the implementation, an analog run therefore costs at least what this
*floor model* costs: the source model with every MatMul / Gemm / Conv y = x W replaced by

    y = x W + x W2 + |x| W3 + (x*x) W4        (W2..W4 constant initializers of W's shape)

i.e. the four products at onnxruntime's best speed for constant weights (pre-packed GEMM, NCHWc convs: the
kernels the plain model itself uses), plus only the two input passes and three additions that use them; no
DAC, ADC, noise, IR-drop polynomial or scales. The script prints, side by side in one run (alternating
rounds, median ratio), plain / floor / analog (``AnalogSession``, standard periphery, t = 1 d) at ``--batch``,
and for the digits CNN the loop budget of issue 14: 40 (chip, t) runs at ``--loop-batch`` test images. If
the floor alone is above a target, no exact implementation of the standard model in standard ONNX ops on
this machine can meet it (bench/README.md, issue 14).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anacompile.compiler import compile_model  # noqa: E402
from anacompile.runtime.session import AnalogSession  # noqa: E402
from bench._timing import side_by_side  # noqa: E402
from bench.profile_session import inputs  # noqa: E402

WEIGHT_OPS = ("MatMul", "Gemm", "Conv")


def floor_model(source: Path) -> onnx.ModelProto:
    """The source model with every weight op's one product replaced by the standard model's four."""
    m = onnx.load(str(source))
    inits = {t.name: t for t in m.graph.initializer}
    rng = np.random.default_rng(0)
    nodes: list[onnx.NodeProto] = []
    for k, node in enumerate(m.graph.node):
        w = node.input[1] if node.op_type in WEIGHT_OPS and len(node.input) > 1 else None
        if w not in inits:  # an activation x activation product (attention): digital, unchanged
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(inits[w])
        p = f"floor{k}_"
        x, y = node.input[0], node.output[0]
        extra = []
        for j in range(3):
            name = f"{p}w{j}"
            m.graph.initializer.append(
                numpy_helper.from_array(rng.permutation(weight.ravel()).reshape(weight.shape), name)
            )
            extra.append(name)
        nodes.append(helper.make_node("Abs", [x], [p + "abs"]))
        nodes.append(helper.make_node("Mul", [x, x], [p + "sq"]))
        outs = []
        for j, left in enumerate((x, x, p + "abs", p + "sq")):
            twin = onnx.NodeProto()
            twin.CopyFrom(node)
            twin.name = f"{node.name}.floor{j}"
            twin.input[0] = left
            if j:
                twin.input[1] = extra[j - 1]
            twin.output[0] = f"{p}y{j}"
            nodes.append(twin)
            outs.append(twin.output[0])
        nodes.append(helper.make_node("Add", [outs[0], outs[1]], [p + "s1"]))
        nodes.append(helper.make_node("Add", [outs[2], outs[3]], [p + "s2"]))
        nodes.append(helper.make_node("Add", [p + "s1", p + "s2"], [y]))
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    return m


def session(model, threads: int | None) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mlp,cnn,transformer,minilm")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--loop-batch", type=int, default=540, help="test images of the CNN loop budget")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(f"onnxruntime {ort.__version__}, batch {args.batch}, threads {args.threads or 'default'}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            source, calib, feeds = inputs(name, args.batch)
            plain, floor = session(source, args.threads), session(floor_model(Path(source)), args.threads)
            out = Path(tmp) / f"{name}.analog.onnx"
            compile_model(source, out, calibration=calib, force=True)
            analog = AnalogSession(out, chip_seed=1, t_inference=86400.0, intra_op_threads=args.threads)
            t_f, t_p, floor_ratio = side_by_side(
                lambda f=feeds, s=floor: s.run(None, f), lambda f=feeds, s=plain: s.run(None, f), args.rounds
            )
            t_a, _, analog_ratio = side_by_side(
                lambda f=feeds, s=analog: s.run(f), lambda f=feeds, s=plain: s.run(None, f), args.rounds
            )
            print(
                f"{name:11s} plain {t_p * 1e6:9.0f} us  floor {t_f * 1e6:9.0f} us ({floor_ratio:4.2f}x plain)  "
                f"analog standard {t_a * 1e6:9.0f} us ({analog_ratio:4.2f}x plain)",
                flush=True,
            )
            if name == "cnn" and args.loop_batch:
                _, _, loop_feeds = inputs(name, args.loop_batch)
                t_f, t_p, _ = side_by_side(
                    lambda f=loop_feeds, s=floor: s.run(None, f), lambda f=loop_feeds, s=plain: s.run(None, f), 3
                )
                print(
                    f"  CNN loop budget: 40 (chip, t) runs of {args.loop_batch} images: plain {40 * t_p:.3f} s, "
                    f"floor {40 * t_f:.3f} s (the 4 products alone, no periphery, no chip stage)",
                    flush=True,
                )


if __name__ == "__main__":
    main()
