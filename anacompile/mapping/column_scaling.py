"""Per-column (channel-wise) weight normalisation and its digital output scale.

Rasch et al. 2023 (Nat. Commun. 14, 5282), standard crossbar model: every column of a tile is remapped so
that its largest |w| is 1 (``weight_scaling_omega = 1``, column-wise), and the digital periphery multiplies
the column's output by the scale gamma_j = max_i |W_ij| (reference/papers.md, (c), "Weight mapping").
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["column_scales", "normalise_columns"]


def column_scales(w: ArrayLike, axis: int = -2) -> NDArray[np.float64]:
    """gamma = max |W| over ``axis`` (the rows of a tile), 1 where a column is all zero, keepdims."""
    a = np.max(np.abs(np.asarray(w, dtype=np.float64)), axis=axis, keepdims=True)
    return np.where(a > 0.0, a, 1.0)


def normalise_columns(w: ArrayLike, axis: int = -2) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return ``(u, gamma)`` with u = W / gamma in [-1, 1] and gamma from :func:`column_scales`."""
    w = np.asarray(w, dtype=np.float64)
    gamma = column_scales(w, axis=axis)
    return w / gamma, gamma
