"""One differential pair per weight: G+ = clip(s u, 0) + g_min, G- = clip(-s u, 0) + g_min.

The single-pair converter of aihwkit (``SinglePairConductanceConverter``) and of the chip experiments of
Joshi et al. 2020 (Nat. Commun. 11, 2473): a positive weight is programmed on G+ with G- left at g_min
(RESET), a negative weight on G-. With u = W / max|W| in [-1, 1] and s = g_max - g_min the full range of
the device represents the largest weight (reference/papers.md, "Common PCM device model", item 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["SinglePairMapping"]


@dataclass(frozen=True)
class SinglePairMapping:
    """One differential pair per weight, u = (G+ - G-) / (g_max - g_min)."""

    name: str = "single"

    @property
    def significance(self) -> tuple[float, ...]:
        """One pair of significance 1."""
        return (1.0,)

    def gain_us(self, g_min_us: float, g_max_us: float) -> float:
        """g_max - g_min: the full conductance window represents |u| = 1."""
        return float(g_max_us - g_min_us)

    def encode(self, u: ArrayLike, g_min_us: float, g_max_us: float) -> NDArray[np.float64]:
        """G+ = clip(s u, 0, s) + g_min and G- = clip(-s u, 0, s) + g_min, shape ``(1, 2) + u.shape``."""
        s = self.gain_us(g_min_us, g_max_us)
        su = s * np.asarray(u, dtype=np.float64)
        g = np.empty((1, 2) + su.shape)
        # clip(x, 0, s) as max then min, in place: the same numbers, without np.clip's temporaries
        for side in (0, 1):
            if side:
                np.negative(su, out=su)
            out = g[0, side]
            np.maximum(su, 0.0, out=out)
            np.minimum(out, s, out=out)
            out += g_min_us
        return g

    def to_dict(self) -> dict[str, Any]:
        """``{"name": "single"}``."""
        return {"name": self.name}
