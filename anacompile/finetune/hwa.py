"""Hardware-aware training noise: the analog tile's forward pass in torch, with straight-through gradients.

One formula, one place: the weight noise and clipping used by ``anacompile finetune`` and by the ``models/``
training scripts (which import :func:`weight_noise`, :func:`clip_bound`, :data:`HWA_ETA`, :data:`HWA_CLIP_A`).

Per analog layer and mini-batch (Joshi et al. 2020, Nat. Commun. 11, 2473; Rasch et al. 2023, Nat. Commun.
14, 5282; reference/papers.md, "Noise-injection training" and "Standard AIMC forward pass for one tile"):

    u   = (W + eta max|W| xi) / gamma          weight noise, fresh per mini-batch, forward only; gamma = max|W|
                                               per column (the chip normalises every column to max |u| = 1)
    x^  = round(clip(x / alpha_in, -b, b) / d) d          DAC, d = b / (2^(bits-1) - 1), round straight-through
    z   = g (x^ u + s_w sqrt(x^2 |u|) xi') + s_out xi''   PCM short-term read noise, output gain g, output noise
    z^  = clip(round(z / D) D, -B, B) / g                ADC, round straight-through
    y   = alpha_in gamma z^ (+ bias, digital)

The output gain g is 1 with the ``standard`` periphery (fixed ADC bound B) and, with ``output_range:
calibrated`` (the compiler's default periphery), B / P per layer, P the ``output_range_percentile`` of |x^ u| on
the calibration inputs (ideal weights), as ``CalibrateOutputRangesPass`` sets it on the chip. The weight noise
xi is drawn once per layer and forward pass (``HWANoise.draw = "batch"``): every time step of a recurrent layer
sees the same weight error, as on the chip, where the conductances stay put while a sequence runs; the read and
output noise are fresh at every product.

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

import numpy as np
import torch
from torch import nn

from anacompile.crossbar.periphery import InputRange, Periphery
from anacompile.finetune.lowering import MVMSpec
from anacompile.finetune.settings import HWA_CLIP_A, HWA_ETA, HWANoise

OUTPUT_SAMPLES_PER_CALL = 1 << 20
"""Most |tile output| values one product contributes to the output-range calibration (a seeded subsample)."""

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

    Modes: ``off`` (exact digital product), ``calibrate`` (digital, records max|x| per layer and input group and
    the layer's crossbar matrix), ``calibrate_output`` (digital, records |tile output| for calibrated output
    ranges), ``noisy`` (the full analog forward pass with fresh noise, for training and validation).

    Args:
        periphery: DAC/ADC resolution and bounds, read noise and output noise.
        noise: weight-noise settings.
        layers: keys of the products the compiler maps to crossbars (others stay digital).
        generator: the seeded generator of every noise draw.
        layer_eta: per-layer weight-noise levels that replace ``noise.eta`` (``eta="device"``: each layer's own).
    """

    periphery: Periphery
    noise: HWANoise
    layers: set[str]
    generator: torch.Generator
    mode: str = "off"
    ranges: dict[str, Tensor] = field(default_factory=dict)
    learned: nn.ParameterDict | None = None
    seen: set[str] = field(default_factory=set)
    gains: dict[str, float] = field(default_factory=dict)
    layer_eta: dict[str, float] = field(default_factory=dict)
    weights: dict[str, Tensor] = field(default_factory=dict)
    _wnoise: dict[str, Tensor] = field(default_factory=dict, repr=False)
    _outputs: dict[str, list[np.ndarray]] = field(default_factory=dict, repr=False)

    def __call__(self, spec: MVMSpec, x: Tensor, w: Tensor, fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
        if spec.key not in self.layers or self.mode == "off":
            return fn(x, w)
        self.seen.add(spec.key)
        if self.mode == "calibrate":
            self._record(spec, x)
            self.weights[spec.key] = crossbar_matrix(w.detach(), spec.w_reduce)
            return fn(x, w)
        if self.mode == "calibrate_output":
            self._record_output(spec, x, w, fn)
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

    def new_draw(self) -> None:
        """Start a new forward pass: the next products draw a new weight-noise sample per layer.

        With ``noise.draw == "batch"`` every product of one layer within a forward pass (the time steps of a
        recurrent layer, every use of a shared weight) sees the same weight error, as on a chip, where the
        programmed conductances are fixed while a sequence runs. Call it once per mini-batch."""
        self._wnoise.clear()

    # ----------------------------------------------------------------------------------------- forward pass

    def _weight(self, spec: MVMSpec, w: Tensor) -> tuple[Tensor, Tensor]:
        """(u, gamma): the noisy weight normalised per column, and the column scale gamma = max|W| per column."""
        nz = self.noise
        gamma = w.detach().abs().amax(dim=spec.w_reduce, keepdim=True)
        gamma = torch.where(gamma > 0, gamma, torch.ones_like(gamma))
        eta = self.layer_eta.get(spec.key, nz.eta)
        if eta <= 0 or self.mode != "noisy":
            return w / gamma, gamma
        reduce = spec.w_reduce if nz.scope == "column" else tuple(range(w.dim()))
        scale = w.detach().abs().amax(dim=reduce, keepdim=True)
        xi = self._wnoise.get(spec.key) if nz.draw == "batch" else None
        if xi is None or xi.shape != w.shape:
            xi = torch.randn(w.shape, generator=self.generator, dtype=w.dtype)
            if nz.draw == "batch":
                self._wnoise[spec.key] = xi
        return (w + xi * (eta * scale)) / gamma, gamma

    def _dac(self, spec: MVMSpec, x: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """(x^, alpha_in as it divides x, alpha_in as it multiplies the output) of the DAC stage."""
        p = self.periphery
        if p.dac_bits is None:
            return x, None, None
        if p.input_range is InputRange.STATIC:
            per_group = self.input_range(spec.key)
            alpha_in = self._group_view(spec, x, per_group)
            alpha_out = alpha_in if spec.groups == 1 else _channel_view(per_group, spec, x.dim(), out_channels=None)
        else:  # abs-max noise management: one range per input vector (per sample for convolutions)
            dims = (-1,) if spec.channel_axis == -1 else tuple(range(1, x.dim()))
            alpha_in = alpha_out = x.detach().abs().amax(dim=dims, keepdim=True).clamp_min(1e-12)
        xs = torch.clamp(x / alpha_in, -p.dac_bound, p.dac_bound)
        return round_ste(xs / p.dac_step) * p.dac_step, alpha_in, alpha_out

    def _record_output(self, spec: MVMSpec, x: Tensor, w: Tensor, fn: Callable[[Tensor, Tensor], Tensor]) -> None:
        """Keep a subsample of |tile output| (ideal weights, the DAC's codes) for the output-range calibration."""
        with torch.no_grad():
            u, _ = self._weight(spec, w)
            xq, _, _ = self._dac(spec, x)
            z = fn(xq, u).abs().reshape(-1)
            if z.numel() > OUTPUT_SAMPLES_PER_CALL:
                z = z[torch.randperm(z.numel(), generator=self.generator)[:OUTPUT_SAMPLES_PER_CALL]]
            self._outputs.setdefault(spec.key, []).append(z.numpy().astype(np.float64))

    def finish_output_calibration(self) -> None:
        """Set every layer's output gain g = ADC bound / P, P the ``output_range_percentile`` of |tile output|.

        The compiler's ``CalibrateOutputRangesPass`` (periphery ``output_range: calibrated``) does the same on
        the compiled model's calibration data: the gain acts before the ADC, so the ADC step and the output noise
        shrink by g in the tile's units."""
        p = self.periphery
        for key, parts in self._outputs.items():
            z = np.concatenate(parts)
            top = float(np.percentile(z, p.output_range_percentile)) if z.size else 0.0
            self.gains[key] = p.adc_bound / top if top > 0 and p.adc_bound is not None else 1.0
        self._outputs.clear()

    def _analog(self, spec: MVMSpec, x: Tensor, w: Tensor, fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
        p = self.periphery
        u, gamma = self._weight(spec, w)
        xq, _, alpha_out = self._dac(spec, x)
        z = fn(xq, u)
        g = self.gains.get(spec.key, 1.0)
        if p.read_noise > 0 or p.out_noise > 0:
            # read noise before the output gain, output noise after it (ADC-referred): one draw, summed variance
            var = torch.tensor(p.out_noise**2, dtype=z.dtype)
            if p.read_noise > 0:
                var = var + fn(xq * xq, u.abs()) * (g * g * p.read_noise**2)
            z = z * g + torch.sqrt(var) * torch.randn(z.shape, generator=self.generator, dtype=z.dtype)
        elif g != 1.0:
            z = z * g
        if p.adc_bits is not None:
            z = round_ste(z / p.adc_step) * p.adc_step
        if p.adc_bound is not None:
            z = torch.clamp(z, -p.adc_bound, p.adc_bound)
        if g != 1.0:
            z = z / g
        y = z * spec.out_view(gamma)
        if alpha_out is not None:
            if spec.groups > 1 and alpha_out.dim() == 1:
                alpha_out = _channel_view(alpha_out, spec, y.dim(), out_channels=y.shape[spec.channel_axis])
            y = y * alpha_out
        return y


def crossbar_matrix(w: Tensor, reduce: tuple[int, ...]) -> np.ndarray:
    """The weight as a crossbar matrix (rows = the ``reduce`` axes, columns = the others), float64 numpy."""
    rest = [d for d in range(w.dim()) if d not in reduce]
    rows = int(np.prod([w.shape[d] for d in reduce]))
    return w.permute(*reduce, *rest).reshape(rows, -1).double().numpy()


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
