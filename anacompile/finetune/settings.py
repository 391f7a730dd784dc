"""Hardware-aware training-noise settings (no torch here, so configurations validate without it)."""

from __future__ import annotations

from dataclasses import dataclass

from anacompile.errors import ConfigError

__all__ = ["HWA_CLIP_A", "HWA_ETA", "HWANoise"]

HWA_ETA = 0.06
"""Default weight-noise level relative to max|W| (models/ training scripts; aihwkit tutorial ``ADD_NORMAL`` 0.06 of
the column max). Joshi et al. 2020 train at 3.8 % of the layer max, the PCM programming noise at mid-range
(sigma_prog(0.5)/g_max); 0.06 also covers drift spread, 1/f read noise and the 8-bit converters."""

HWA_CLIP_A = 2.5
"""Weight clipping at +-a std(W) after every optimizer step (Joshi et al. 2020: a = 2.0-2.5)."""


@dataclass(frozen=True)
class HWANoise:
    """The training-noise settings that are not periphery parameters.

    Attributes:
        eta: weight-noise std relative to max|W| (0: no weight noise).
        scope: ``column`` (per crossbar column, the chip's per-column scaling) or ``tensor`` (per layer).
        clip_a: clip analog weights to +-clip_a std(W) after each step (0: no clipping).
        draw: ``batch`` (one weight-noise draw per layer and forward pass, shared by all its products: the
            time steps of a recurrent layer see one weight error, as on the chip) or ``product`` (a fresh draw at
            every product: each time step its own).
    """

    eta: float = HWA_ETA
    scope: str = "column"
    clip_a: float = HWA_CLIP_A
    draw: str = "batch"

    def __post_init__(self) -> None:
        if not 0 <= self.eta < 1:
            raise ConfigError(f"finetune eta={self.eta!r}: must be in [0, 1) (a fraction of max|W|).")
        if self.scope not in ("column", "tensor"):
            raise ConfigError(f"finetune noise scope={self.scope!r}: must be column or tensor.")
        if self.draw not in ("batch", "product"):
            raise ConfigError(f"finetune noise draw={self.draw!r}: must be batch or product.")
        if self.clip_a < 0:
            raise ConfigError(f"finetune clip_a={self.clip_a!r}: must be >= 0 (0: no clipping).")
