"""Train the digits LSTM (rows as time steps) and export ``digits_lstm_fp.onnx`` and ``digits_lstm_hwa.onnx``.

    python models/train_digits_lstm.py           # writes models/digits_lstm_{fp,hwa}.onnx
    python models/train_digits_lstm.py --help

Input ``input``: float32 (batch, 8, 8) = (batch, time step = image row, features = 8 pixels of the row),
pixel values in [0, 1] (``load_digits_split`` rows reshaped). Output ``logits``: float32 (batch, 10).
Graph: Transpose (batch-first -> time-first) -> LSTM (native ONNX op, W/R/B initializers, no initial
state) -> Gather (last hidden state Y_h[0]) -> Gemm.

HWA noise is applied to the LSTM input weights ``W`` (torch ``weight_ih``) and recurrent weights ``R``
(``weight_hh``) as two separate weight matrices, each with its own max|W|, plus the classifier.
"""

from __future__ import annotations

import torch
from _digits_common import base_parser, run
from torch import nn

HIDDEN = 64


class DigitsLSTM(nn.Module):
    def __init__(self, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size=8, hidden_size=hidden, num_layers=1, batch_first=True)
        self.fc = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h_n, _) = self.lstm(x)  # h_n: (num_layers, batch, hidden)
        return self.fc(h_n[-1])


def main() -> None:
    p = base_parser(__doc__.splitlines()[0], epochs=60, hwa_epochs=30, lr=5e-3, hwa_lr=1e-3)
    p.add_argument("--hidden", type=int, default=HIDDEN, help="LSTM hidden size (default %(default)s)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay of the FP32 phase")
    args = p.parse_args()
    arch = (
        f"LSTM: 8 time steps (rows) x 8 features, LSTM(8->{args.hidden}), last hidden state - Linear({args.hidden},10)"
    )
    run(
        args,
        "digits_lstm",
        lambda: DigitsLSTM(args.hidden),
        (8, 8),
        arch,
        fp_extra={"weight_decay": args.weight_decay, "grad_clip": 1.0},
    )


if __name__ == "__main__":
    main()
