"""Train a tiny transformer encoder on digits and export ``digits_transformer_{fp,hwa}.onnx``.

    python models/train_digits_transformer.py    # writes models/digits_transformer_{fp,hwa}.onnx
    python models/train_digits_transformer.py --help

Input ``input``: float32 (batch, 8, 8) = (batch, token = image row, features = 8 pixels of the row), pixel
values in [0, 1] (``load_digits_split`` rows reshaped). Output ``logits``: float32 (batch, 10).

Architecture: Linear(8, 32) token embedding + learned positional embedding (8 x 32), 2 pre-LayerNorm encoder
layers, each with multi-head self-attention (2 heads of 16, explicit nn.Linear q/k/v/out projections) and an
FFN 32-64-32 with ReLU, final LayerNorm, mean over the 8 tokens, Linear(32, 10). Every projection is an
explicit nn.Linear so that each shows up as its own MatMul (+ Add) with a constant weight in the ONNX graph;
the attention products Q K^T and A V are MatMuls of two activations (not crossbar weights).
"""

from __future__ import annotations

import math

import torch
from _digits_common import base_parser, run
from torch import nn

TOKENS = 8
FEATURES = 8


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        assert d_model % heads == 0
        self.heads, self.d_head = heads, d_model // heads
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)
        self.scale = 1.0 / math.sqrt(self.d_head)

    def _split(self, t: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, H, T, Dh)
        return t.reshape(-1, TOKENS, self.heads, self.d_head).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        att = torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(-1, TOKENS, self.heads * self.d_head)
        return self.out(y)


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.ff1 = nn.Linear(d_model, d_ff)
        self.act = nn.ReLU()
        self.ff2 = nn.Linear(d_ff, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.ff2(self.act(self.ff1(self.ln2(x)))))


class DigitsTransformer(nn.Module):
    def __init__(self, d_model: int = 32, heads: int = 2, d_ff: int = 64, layers: int = 2, dropout: float = 0.2):
        super().__init__()
        self.embed = nn.Linear(FEATURES, d_model)
        self.pos = nn.Parameter(torch.randn(1, TOKENS, d_model) * 0.02)
        self.layers = nn.ModuleList(EncoderLayer(d_model, heads, d_ff, dropout) for _ in range(layers))
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) + self.pos
        for layer in self.layers:
            h = layer(h)
        return self.head(self.ln(h).mean(dim=1))


def main() -> None:
    p = base_parser(__doc__.splitlines()[0], epochs=150, hwa_epochs=50, lr=3e-3, hwa_lr=5e-4)
    p.add_argument("--layers", type=int, default=2, help="encoder layers (default %(default)s)")
    p.add_argument("--dropout", type=float, default=0.2, help="dropout in training (default %(default)s)")
    p.add_argument("--weight-decay", type=float, default=1e-2, help="AdamW weight decay of the FP32 phase")
    args = p.parse_args()
    arch = (
        "Transformer encoder: 8 tokens (rows) x 8, Linear(8,32) + learned pos. emb., "
        f"{args.layers} pre-LN layers "
        "(MHSA 2 heads x 16 with Linear q/k/v/out, FFN 32-64-32 ReLU), LayerNorm, mean pool, Linear(32,10)"
    )
    run(
        args,
        "digits_transformer",
        lambda: DigitsTransformer(layers=args.layers, dropout=args.dropout),
        (TOKENS, FEATURES),
        arch,
        fp_extra={"weight_decay": args.weight_decay, "grad_clip": 1.0},
    )


if __name__ == "__main__":
    main()
