"""A recogniser-like CNN with deliberately fragile 1x1 convolutions, for the placement tests and study.

Built from the FP32-trained digits CNN (models/train_digits_cnn.py: conv3x3-BN-ReLU twice, max-pool,
linear) by inserting 1x1 convolutions that compute the identity (after each ReLU and after the pool, so
the FP32 function is unchanged). The ``fragile`` ones are made fragile the way a folded BatchNorm with one
huge channel scale makes a real 1x1 convolution fragile: their input gets one extra channel that is always
zero and their weight an extra input row ``factor`` x larger than the largest real weight. Per-column
scaling then maps the real weights onto 1/factor of the conductance range, where programming, drift and
output noise swamp them; only an analog chip notices. The robust ones are plain identities.

    python tests/models/fragile_cnn.py OUT.onnx [--fragile a,c]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "models" / "digits_cnn_fp.onnx"
INSERTS = {  # 1x1 layer name -> (tensor it follows, channels)
    "pw_a": ("/relu1/Relu_output_0", 16),
    "pw_b": ("/relu2/Relu_output_0", 32),
    "pw_c": ("/pool/MaxPool_output_0", 32),
}
FACTOR = 40.0


def build(fragile: tuple[str, ...] = ("pw_a", "pw_c"), source: Path = SOURCE, factor: float = FACTOR):
    """The digits CNN with the 1x1 layers of :data:`INSERTS`; those in ``fragile`` made fragile."""
    model = onnx.load(str(source))
    g = model.graph
    nodes = list(g.node)
    inits = list(g.initializer)
    for name, (after, ch) in INSERTS.items():
        w = np.eye(ch, dtype=np.float32).reshape(ch, ch, 1, 1)
        x, extra = after, []
        if name in fragile:
            w = np.concatenate([w, np.full((ch, 1, 1, 1), factor, np.float32)], axis=1)  # max real weight is 1
            extra = [
                helper.make_node("Slice", [after, f"{name}.i0", f"{name}.i1", f"{name}.i1"], [f"{name}_col"]),
                helper.make_node("Mul", [f"{name}_col", f"{name}.zero"], [f"{name}_zero"]),
                helper.make_node("Concat", [after, f"{name}_zero"], [f"{name}_x"], axis=1),
            ]
            inits += [
                numpy_helper.from_array(np.array([0], np.int64), f"{name}.i0"),
                numpy_helper.from_array(np.array([1], np.int64), f"{name}.i1"),
                numpy_helper.from_array(np.array(0.0, np.float32), f"{name}.zero"),
            ]
            x = f"{name}_x"
        inits += [
            numpy_helper.from_array(w, f"{name}.w"),
            numpy_helper.from_array(np.zeros(ch, np.float32), f"{name}.b"),
        ]
        out = f"{name}_y"
        conv = helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [out], name=name, kernel_shape=[1, 1])
        for n in nodes:  # the consumers of `after` now read the 1x1 layer's output
            for i, t in enumerate(n.input):
                if t == after:
                    n.input[i] = out
        pos = next(i for i, n in enumerate(nodes) if after in n.output) + 1
        nodes[pos:pos] = [*extra, conv]
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(inits)
    onnx.checker.check_model(model, full_check=True)
    return model


if __name__ == "__main__":
    args = sys.argv[1:]
    fr = ("pw_a", "pw_c")
    if "--fragile" in args:
        i = args.index("--fragile")
        fr = tuple(args[i + 1].split(","))
        del args[i : i + 2]
    onnx.save(build(fr), args[0])
    print(f"wrote {args[0]} (fragile: {', '.join(fr)})")
