"""Naive P-pair strategy: fill the least significant pair first, then the next, up to the MSP.

A weight is spread over P differential pairs of increasing significance F_0 <= F_1 <= ... (least significant
first, the contract of :mod:`anacompile.mapping.base`):

    W_hw = sum_p F_p (G+_p - G-_p)

(Mackin et al. 2019, Adv. Electron. Mater. 5, 1900026, Fig. 1a; Mackin et al. 2022, Nat. Commun. 13, 3765;
reference/papers.md, "Differential pairs and significance"). The translation is aihwkit's
``NPairConductanceConverter`` [V-code]: with the normalised weight u = W / max|W| in [-1, 1],

    U   = sum_p F_p (g_max - g_min)                  (the conductance difference, µS, that represents u = 1)
    L_0 = 0,   L_{p+1} = L_p + F_p (g_max - g_min)
    G+_p = clip((max(U u, 0) - L_p) / F_p + g_min, g_min, g_max)
    G-_p = clip((max(-U u, 0) - L_p) / F_p + g_min, g_min, g_max)

so small weights live in the LSP only and the MSP takes what the LSP cannot hold. ``dual`` is the two-pair
unit cell W = F (G+ - G-) + (g+ - g-) of (a) and (b) with F = 2 by default, the significance factor that
(a) found optimal for every network and device [V-cap, Figs. 4-5].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from anacompile.errors import ConfigError

__all__ = ["DUAL_DEFAULT_F", "NPairMapping", "dual_pair"]

DUAL_DEFAULT_F = 2.0
"""MSP/LSP significance factor of the ``dual`` strategy (Mackin et al. 2022, Figs. 4-5: optimal F = 2)."""


@dataclass(frozen=True)
class NPairMapping:
    """Naive P-pair mapping with significance factors F_p (least significant first).

    Attributes:
        significance_factors: F_p, positive and non-decreasing (LSP first).
        name: ``"dual"`` for two pairs (1, F), else ``"npair"``; set by :func:`dual_pair`.
    """

    significance_factors: tuple[float, ...] = (1.0, DUAL_DEFAULT_F)
    name: str = "npair"

    def __post_init__(self) -> None:
        f = tuple(float(x) for x in self.significance_factors)
        object.__setattr__(self, "significance_factors", f)
        if len(f) < 1:
            raise ConfigError("NPairMapping.significance_factors: need at least one pair, got ().")
        if not all(np.isfinite(x) and x > 0.0 for x in f):
            raise ConfigError(f"NPairMapping.significance_factors: every F_p must be finite and > 0, got {f}.")
        if any(b < a for a, b in zip(f, f[1:], strict=False)):
            raise ConfigError(
                f"NPairMapping.significance_factors: give F_p least significant first (non-decreasing), got {f}."
            )
        if self.name not in ("npair", "dual"):
            raise ConfigError(f"NPairMapping.name: 'npair' or 'dual', got {self.name!r}.")
        if self.name == "dual" and (len(f) != 2 or f[0] != 1.0):
            raise ConfigError(f"NPairMapping: the 'dual' strategy has significance (1, F), got {f}.")

    @property
    def significance(self) -> tuple[float, ...]:
        """Significance factor F_p of each pair, least significant first."""
        return self.significance_factors

    def gain_us(self, g_min_us: float, g_max_us: float) -> float:
        """U = sum_p F_p (g_max - g_min): every pair full represents u = 1."""
        return float(sum(self.significance_factors) * (g_max_us - g_min_us))

    def encode(self, u: ArrayLike, g_min_us: float, g_max_us: float) -> NDArray[np.float64]:
        """Target conductances (µS), shape ``(P, 2) + u.shape``; |u| > 1 saturates at the full window."""
        u = np.asarray(u, dtype=np.float64)
        window = float(g_max_us - g_min_us)
        if not window > 0.0:
            raise ConfigError(f"NPairMapping.encode: need g_max_us > g_min_us, got {g_min_us}, {g_max_us}.")
        w_us = self.gain_us(g_min_us, g_max_us) * u
        pos, neg = np.maximum(w_us, 0.0), np.maximum(-w_us, 0.0)
        g = np.empty((len(self.significance_factors), 2) + u.shape)
        level = 0.0
        for p, f in enumerate(self.significance_factors):
            g[p, 0] = np.clip((pos - level) / f + g_min_us, g_min_us, g_max_us)
            g[p, 1] = np.clip((neg - level) / f + g_min_us, g_min_us, g_max_us)
            level += f * window
        return g

    def to_dict(self) -> dict[str, Any]:
        """``{"name": "dual", "F": F}`` or ``{"name": "npair", "significance": [F_0, ...]}``."""
        if self.name == "dual":
            return {"name": "dual", "F": self.significance_factors[1]}
        return {"name": "npair", "significance": list(self.significance_factors)}


def dual_pair(f: float = DUAL_DEFAULT_F) -> NPairMapping:
    """The naive two-pair strategy W = F (G+ - G-) + (g+ - g-) (LSP significance 1, MSP significance F).

    Raises:
        ConfigError: F < 1 (the MSP would be the less significant pair) or not finite.
    """
    f = float(f)
    if not (np.isfinite(f) and f >= 1.0):
        raise ConfigError(f"dual strategy: F must be a finite number >= 1 (MSP/LSP significance), got {f}.")
    return NPairMapping((1.0, f), name="dual")
