"""Train the digits CNN (two Conv-BN-ReLU, MaxPool, Linear) and export ``digits_cnn_{fp,hwa}.onnx``.

    python models/train_digits_cnn.py            # writes models/digits_cnn_{fp,hwa}.onnx
    python models/train_digits_cnn.py --help

Input ``input``: float32 (batch, 1, 8, 8), pixel values in [0, 1] (``load_digits_split`` rows reshaped).
Output ``logits``: float32 (batch, 10).
Graph: Conv -> BatchNormalization -> Relu -> Conv -> BatchNormalization -> Relu -> MaxPool -> Flatten -> Gemm.
BatchNormalization is exported as its own node (not folded into the Conv) so that its statistics can be
recomputed later.
"""

from __future__ import annotations

from collections import OrderedDict

from _digits_common import base_parser, run
from torch import nn

ARCH = "CNN: Conv(1->16,3x3,pad1)-BN-ReLU - Conv(16->32,3x3,pad1)-BN-ReLU - MaxPool2 - Flatten - Linear(512,10)"


def build() -> nn.Module:
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 16, 3, padding=1),
            bn1=nn.BatchNorm2d(16),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(16, 32, 3, padding=1),
            bn2=nn.BatchNorm2d(32),
            relu2=nn.ReLU(),
            pool=nn.MaxPool2d(2),
            flatten=nn.Flatten(),
            fc=nn.Linear(32 * 4 * 4, 10),
        )
    )


def main() -> None:
    p = base_parser(__doc__.splitlines()[0], epochs=40, hwa_epochs=20, lr=3e-3, hwa_lr=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay of the FP32 phase")
    args = p.parse_args()
    run(args, "digits_cnn", build, (1, 8, 8), ARCH, fp_extra={"weight_decay": args.weight_decay})


if __name__ == "__main__":
    main()
