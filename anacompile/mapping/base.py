"""The contract between weights and conductances: a :class:`ConductanceMapping`.

A mapping turns *normalised* weights u = W / gamma in [-1, 1] (gamma = the per-column digital scale, see
:mod:`anacompile.mapping.column_scaling`) into target conductances of P differential pairs, and back:

    u_hw = sum_p F_p (G+_p - G-_p) / gain_us

with significance factors F_p and ``gain_us`` the conductance difference (µS) that represents u = 1
(Mackin et al. 2019, Adv. Electron. Mater. 5, 1900026; Mackin et al. 2022, Nat. Commun. 13, 3765;
reference/papers.md, "Differential pairs and significance").

Conductance arrays have shape ``(P, 2) + u.shape``: axis 0 the pair (least significant first), axis 1
the polarity (0 = G+, 1 = G-).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["ConductanceMapping", "decode_pairs"]


@runtime_checkable
class ConductanceMapping(Protocol):
    """Weight-to-conductance translation of one programming strategy."""

    @property
    def name(self) -> str:
        """Strategy name as stored in compiled models (``single``, ``dual``, ``npair``, ``piecewise``)."""
        ...

    @property
    def significance(self) -> tuple[float, ...]:
        """Significance factor F_p of each pair, least significant first."""
        ...

    def gain_us(self, g_min_us: float, g_max_us: float) -> float:
        """Conductance difference (µS) that represents the normalised weight u = 1."""
        ...

    def encode(self, u: ArrayLike, g_min_us: float, g_max_us: float) -> NDArray[np.float64]:
        """Target conductances, shape ``(P, 2) + u.shape``, in µS, for normalised weights u."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (embedded in the compiled model)."""
        ...


def decode_pairs(
    g_us: ArrayLike, significance: tuple[float, ...] | NDArray[np.float64], gain_us: float
) -> NDArray[np.float64]:
    """Normalised weights represented by conductances: sum_p F_p (G+_p - G-_p) / gain_us.

    Args:
        g_us: conductances, shape ``(P, 2, ...)``, µS (targets, programmed or drifted).
        significance: F_p, length P.
        gain_us: µS per unit normalised weight.

    Returns:
        u_hw with shape ``g_us.shape[2:]``.
    """
    g = np.asarray(g_us, dtype=np.float64)
    f = np.asarray(significance, dtype=np.float64).reshape((-1,) + (1,) * (g.ndim - 2))
    u: NDArray[np.float64] = np.sum(f * (g[:, 0] - g[:, 1]), axis=0) / gain_us
    return u
