"""Train the digits MLP (64-128-10) and export ``digits_mlp_fp.onnx`` and ``digits_mlp_hwa.onnx``.

    python models/train_digits_mlp.py            # writes models/digits_mlp_{fp,hwa}.onnx
    python models/train_digits_mlp.py --help

Input ``input``: float32 (batch, 64), pixel values in [0, 1] as returned by ``load_digits_split``.
Output ``logits``: float32 (batch, 10).  Graph: Gemm -> Relu -> Gemm.
"""

from __future__ import annotations

from collections import OrderedDict

from _digits_common import base_parser, run
from torch import nn

ARCH = "MLP 64-128-10: Linear(64,128) - ReLU - Linear(128,10)"


def build() -> nn.Module:
    return nn.Sequential(OrderedDict(fc1=nn.Linear(64, 128), relu=nn.ReLU(), fc2=nn.Linear(128, 10)))


def main() -> None:
    p = base_parser(__doc__.splitlines()[0], epochs=100, hwa_epochs=30, lr=3e-3, hwa_lr=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay of the FP32 phase")
    args = p.parse_args()
    run(args, "digits_mlp", build, (64,), ARCH, fp_extra={"weight_decay": args.weight_decay})


if __name__ == "__main__":
    main()
