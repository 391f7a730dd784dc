"""Statistical decisions of the placement search: means over chips with their standard error.

A compiled plan's metric varies from chip to chip (programming noise, drift spread, read noise), and a
metric over a finite data set moves in steps (an accuracy over N items in steps of 1/N). A config is
judged by the mean of its per-chip scores x_1..x_n and a standard error that accounts for both:

* chip-to-chip spread: the sample standard deviation s (ddof = 1);
* the metric's granularity g (the smallest step between two distinct scores seen anywhere in the
  search): a value read to a resolution g carries at least the rounding variance g^2 / 12 (the
  uniform-resolution term of the GUM, JCGM 100:2008 F.2.2.1). When all n chips happen to give the same
  score (s = 0, common with coarse metrics) the estimate keeps that term instead of claiming certainty.

    SE = sqrt((s^2 + g^2 / 12) / n)

A config meets a target at confidence c when its lower confidence bound clears it:
``mean - k * SE >= target``, with ``k`` the one-sided Student-t quantile t_{c, n-1}. The search uses
the one-standard-error rule (k = 1) to propose a placement cheaply on few chips; the verification on fresh
chips uses k = t_{c, n-1} (default c = 0.95), so a returned placement is certified by chips it was never
chosen on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["Estimate", "estimate", "granularity", "t_quantile"]


@dataclass(frozen=True)
class Estimate:
    """Mean over chips with its standard error and the lower bound used for a decision."""

    mean: float
    std: float
    se: float
    chips: int
    k: float
    lcb: float

    def meets(self, target: float) -> bool:
        """Whether the lower bound clears ``target``."""
        return self.lcb >= target

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


def granularity(values: Iterable[float], rel: float = 1e-9) -> float:
    """Smallest positive step between distinct values (0 if fewer than two distinct values).

    Values closer than ``rel`` times their scale count as equal (float noise of a mean over items).
    """
    v = np.unique(np.asarray(list(values), dtype=np.float64))
    if v.size < 2:
        return 0.0
    d = np.diff(v)
    scale = max(float(np.max(np.abs(v))), 1e-300)
    d = d[d > rel * scale]
    return float(d.min()) if d.size else 0.0


def t_quantile(confidence: float, dof: int) -> float:
    """One-sided Student-t quantile t_{confidence, dof} (the normal quantile when dof < 1)."""
    from scipy import stats

    if dof < 1:
        return float(stats.norm.ppf(confidence))
    return float(stats.t.ppf(confidence, dof))


def estimate(scores: Iterable[float], step: float, k: float) -> Estimate:
    """Mean, std (ddof 1), SE with the granularity term (module docstring) and ``mean - k * SE``."""
    x = np.asarray(list(scores), dtype=np.float64)
    n = int(x.size)
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if n > 1 else 0.0
    se = math.sqrt((std * std + step * step / 12.0) / n)
    return Estimate(mean=mean, std=std, se=se, chips=n, k=float(k), lcb=mean - k * se)
