"""Hardware-aware training noise: the analog tile's forward pass in torch, with straight-through gradients.

One formula, one place: the weight noise and clipping used by ``anacompile finetune`` and by the ``models/``
training scripts (which import :func:`weight_noise`, :func:`clip_bound`, :data:`HWA_ETA`, :data:`HWA_CLIP_A`).

Per analog layer and mini-batch (Joshi et al. 2020, Nat. Commun. 11, 2473; Rasch et al. 2023, Nat. Commun.
14, 5282; reference/papers.md, "Noise-injection training" and "Standard AIMC forward pass for one tile"):

    u   = (W + eta max|W| xi) / gamma          weight noise, fresh per mini-batch, forward only; gamma = max|W|
                                               per column (the chip normalises every column to max |u| = 1)
    x^  = round(clip(x / alpha_in, -b, b) / d) d          DAC, d = b / (2^(bits-1) - 1), round straight-through
    z   = x^ u + sqrt(s_w^2 (x^2 |u|) + s_out^2) xi'     PCM short-term read noise and output noise
    z^  = clip(round(z / D) D, -B, B)                    ADC, round straight-through
    y   = alpha_in gamma z^ (+ bias, digital)

``eta`` is relative to the per-column max (``scope="column"``, as the standard periphery maps weights; the
aihwkit tutorials' ``ADD_NORMAL`` of std 0.06) or to the per-layer max (``scope="tensor"``, Joshi et al.'s
eta_tr = 3.8 % of max|W_layer|). After every optimizer step each analog weight is clipped to
``+-a std(W)`` (Joshi et al.: a = 2.0-2.5). The input range alpha_in is calibrated (the maximum of |x| over the
calibration data, like the compiler's default) and optionally learned (Rasch et al. 2023: learned static input
ranges), its gradient taken through the clip. IR drop and drift are not simulated in training: the mean drift
is compensated on the chip (global drift compensation) and its conductance-dependent spread is part of what
the weight noise stands for. With more than one row tile (K > tile rows) the per-column scale, input range and
ADC are taken over the whole column instead of per tile (an approximation, stated in the finetune report).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from anacompile.crossbar.periphery import InputRange, Periphery
from anacompile.finetune.lowering import MVMSpec
from anacompile.finetune.settings import HWA_CLIP_A, HWA_ETA, HWANoise

__all__ = ["HWA_CLIP_A", "HWA_ETA", "AnalogSimulator", "HWANoise", "clip_bound", "round_ste", "weight_noise"]

Tensor = torch.Tensor


def weight_noise(w: Tensor, eta: float, generator: torch.Generator, reduce: tuple[int, ...] | None = None) -> Tensor:
    """A draw of N(0, (eta max|w|)^2), max over the whole tensor or over ``reduce`` axes (per column).

    Args:
        w: the weight.
        eta: noise level relative to max|w|.
        generator: the seeded generator every draw comes from.
        reduce: axes along a crossbar column; ``None`` for one max over the tensor.
    """
    scale = w.detach().abs().max() if reduce is None else w.detach().abs().amax(dim=reduce, keepdim=True)
    return torch.randn(w.shape, generator=generator, dtype=w.dtype) * (eta * scale)


def clip_bound(w: Tensor, a: float) -> Tensor:
    """The clipping bound a std(w) of Joshi et al. 2020 (weights are clamped to +-bound)."""
    return a * w.std()


def round_ste(x: Tensor) -> Tensor:
    """round(x) forward, identity backward (straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


@dataclass
class AnalogSimulator:
    """The hook :class:`~anacompile.finetune.lowering.OnnxModule` calls for every weight-bearing product.

    Modes: ``off`` (exact digital product), ``calibrate`` (digital, records max|x| per layer and input group),
    ``noisy`` (the full analog forward pass with fresh noise, for training and validation).

    Args:
        periphery: DAC/ADC resolution and bounds, read noise and output noise.
        noise: weight-noise settings.
        layers: keys of the products the compiler maps to crossbars (others stay digital).
        generator: the seeded generator of every noise draw.
    """

    periphery: Periphery
    noise: HWANoise
    layers: set[str]
    generator: torch.Generator
    mode: str = "off"
    ranges: dict[str, Tensor] = field(default_factory=dict)
    learned: nn.ParameterDict | None = None
    seen: set[str] = field(default_factory=set)

    def __call__(self, spec: MVMSpec, x: Tensor, w: Tensor, fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
        if spec.key not in self.layers or self.mode == "off":
            return fn(x, w)
        self.seen.add(spec.key)
        if self.mode == "calibrate":
            self._record(spec, x)
            return fn(x, w)
        return self._analog(spec, x, w, fn)

    # ------------------------------------------------------------------------------------------ calibration

    def _group_view(self, spec: MVMSpec, x: Tensor, per_group: Tensor) -> Tensor:
        """Per-group values (G,) as a tensor that broadcasts onto x's channel axis."""
        if spec.groups == 1:
            return per_group.reshape(())
        channels = x.shape[spec.channel_axis]
        shape = [1] * x.dim()
        shape[spec.channel_axis] = channels
        return per_group.repeat_interleave(channels // spec.groups).reshape(shape)

    def _record(self, spec: MVMSpec, x: Tensor) -> None:
        a = x.detach().abs()
        if spec.groups == 1:
            m = a.max().reshape(1)
        else:
            axis = spec.channel_axis % x.dim()
            per_ch = a.transpose(0, axis).reshape(x.shape[axis], -1).amax(dim=1)
            m = per_ch.reshape(spec.groups, -1).amax(dim=1)
        old = self.ranges.get(spec.key)
        self.ranges[spec.key] = m if old is None else torch.maximum(old, m)

    def finish_calibration(self, learn: bool) -> None:
        """Fix the calibrated ranges (a zero range becomes 1); with ``learn``, make them trainable parameters."""
        for key, r in self.ranges.items():
            self.ranges[key] = torch.where(r > 0, r, torch.ones_like(r))
        if learn:
            self.learned = nn.ParameterDict({_pkey(k): nn.Parameter(v.clone()) for k, v in self.ranges.items()})

    def input_range(self, key: str) -> Tensor:
        """The input range (G,) of layer ``key`` (learned value when ranges are learned)."""
        if self.learned is not None and _pkey(key) in self.learned:
            return self.learned[_pkey(key)]
        return self.ranges[key]

    # ----------------------------------------------------------------------------------------- forward pass

    def _analog(self, spec: MVMSpec, x: Tensor, w: Tensor, fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
        p, nz = self.periphery, self.noise
        reduce = spec.w_reduce if nz.scope == "column" else tuple(range(w.dim()))
        gamma = w.detach().abs().amax(dim=spec.w_reduce, keepdim=True)
        gamma = torch.where(gamma > 0, gamma, torch.ones_like(gamma))
        w_noisy = w + weight_noise(w, nz.eta, self.generator, reduce) if nz.eta > 0 else w
        u = w_noisy / gamma
        alpha_in = alpha_out = None
        if p.dac_bits is not None:
            if p.input_range is InputRange.STATIC:
                per_group = self.input_range(spec.key)
                alpha_in = self._group_view(spec, x, per_group)
                alpha_out = (
                    self._group_view(spec, x, per_group)
                    if spec.groups == 1
                    else _channel_view(per_group, spec, x.dim(), out_channels=None)
                )
            else:  # abs-max noise management: one range per input vector (per sample for convolutions)
                dims = (-1,) if spec.channel_axis == -1 else tuple(range(1, x.dim()))
                alpha_in = alpha_out = x.detach().abs().amax(dim=dims, keepdim=True).clamp_min(1e-12)
            xs = torch.clamp(x / alpha_in, -p.dac_bound, p.dac_bound)
            xq = round_ste(xs / p.dac_step) * p.dac_step
        else:
            xq = x
        z = fn(xq, u)
        if p.read_noise > 0 or p.out_noise > 0:
            if p.read_noise > 0:
                std = torch.sqrt(fn(xq * xq, u.abs()) * p.read_noise**2 + p.out_noise**2)
            else:
                std = torch.tensor(p.out_noise, dtype=z.dtype)
            z = z + std * torch.randn(z.shape, generator=self.generator, dtype=z.dtype)
        if p.adc_bits is not None:
            z = round_ste(z / p.adc_step) * p.adc_step
        if p.adc_bound is not None:
            z = torch.clamp(z, -p.adc_bound, p.adc_bound)
        y = z * spec.out_view(gamma)
        if alpha_out is not None:
            if spec.groups > 1 and alpha_out.dim() == 1:
                alpha_out = _channel_view(alpha_out, spec, y.dim(), out_channels=y.shape[spec.channel_axis])
            y = y * alpha_out
        return y


def _channel_view(per_group: Tensor, spec: MVMSpec, rank: int, out_channels: int | None) -> Tensor:
    """Per-group input ranges as a factor on the output channels (each group's outputs read its inputs)."""
    if out_channels is None:
        return per_group
    shape = [1] * rank
    shape[spec.channel_axis] = out_channels
    return per_group.repeat_interleave(out_channels // spec.groups).reshape(shape)


def _pkey(key: str) -> str:
    """A ParameterDict key for a layer key (``.`` and ``/`` are not allowed there)."""
    return "p" + key.encode().hex()
