"""Statistical checks whose tolerance is the standard error of the estimate, for every noise test.

A noise test estimates a quantity (a mean, a standard deviation, a ratio of standard deviations, a
correlation, a quantile, a distribution) from seeded samples and compares it with what the formula or the
reference implementation says. Hand-picked tolerances (``0.85 < ratio < 1.15``) let a 5 % error through;
here the tolerance is ``TOLERANCE_SE`` standard errors of the estimate, computed from the samples, and

* :func:`assert_matches` also asserts the test has the power to see a 5 % error: a 5 % shift of the
  expected value must be more than ``POWER_SE`` standard errors (so a twin fails deterministically with
  the fixed seed, while the check itself has ~5 SE of slack);
* :func:`assert_rejects` is the twin: the same check on a 5 %-perturbed quantity must fail.

Standard errors (n samples, s the sample std, m4 the fourth central moment):

* mean: s / sqrt(n);
* variance: sqrt((m4 - s^4) / n); std: that / (2 s) (delta method, any distribution);
* correlation r: (1 - r^2) / sqrt(n - 3) (Fisher);
* quantile q: half the distance between the order statistics n q -+ sqrt(n q (1 - q)) (distribution-free,
  the binomial interval of the sample quantile);
* element-wise comparisons of two sample sets (``std_ratio``, ``mean_z``): per element a statistic, then
  the mean over elements with the standard error of that mean from the elements' spread.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats as _stats

__all__ = [
    "POWER_SE",
    "TOLERANCE_SE",
    "Estimate",
    "assert_ks",
    "assert_ks_rejects",
    "assert_matches",
    "assert_rejects",
    "correlation",
    "mean",
    "mean_z",
    "quantile",
    "std",
    "std_ratio",
    "variance",
    "with_common_error",
]

TOLERANCE_SE = 5.0
"""A check passes when the estimate is within this many standard errors of the expected value."""
POWER_SE = 9.0
"""A 5 % error must move the estimate by more than this many standard errors (TOLERANCE_SE + 4: the twin's
estimate, itself within ~4 SE of the perturbed value, then lies beyond the tolerance)."""
DETECT = 0.05
"""The relative error every noise test must detect."""


@dataclass(frozen=True)
class Estimate:
    """An estimate with its standard error."""

    value: float
    se: float
    what: str = "estimate"

    def z(self, expected: float) -> float:
        """Distance from ``expected`` in standard errors."""
        return (self.value - expected) / self.se if self.se > 0 else (0.0 if self.value == expected else math.inf)

    def __str__(self) -> str:
        return f"{self.what} = {self.value:.6g} +- {self.se:.3g} (1 SE)"


def mean(x: np.ndarray) -> Estimate:
    """Sample mean of all elements, SE s / sqrt(n)."""
    x = np.asarray(x, np.float64).ravel()
    return Estimate(float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size)), "mean")


def variance(x: np.ndarray) -> Estimate:
    """Sample variance of all elements, SE sqrt((m4 - s^4) / n) (any distribution)."""
    x = np.asarray(x, np.float64).ravel()
    d = x - x.mean()
    var = float(d.var(ddof=1))
    m4 = float(np.mean(d**4))
    return Estimate(var, math.sqrt(max(m4 - var**2, 0.0) / x.size), "variance")


def std(x: np.ndarray) -> Estimate:
    """Sample standard deviation of all elements, SE from the variance's by the delta method."""
    v = variance(x)
    s = math.sqrt(v.value)
    return Estimate(s, v.se / (2 * s) if s > 0 else 0.0, "std")


def correlation(x: np.ndarray, y: np.ndarray) -> Estimate:
    """Pearson correlation of two equally long samples, SE (1 - r^2) / sqrt(n - 3)."""
    x = np.asarray(x, np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    r = float(np.corrcoef(x, y)[0, 1])
    return Estimate(r, (1 - r**2) / math.sqrt(x.size - 3), "correlation")


def quantile(x: np.ndarray, q: float) -> Estimate:
    """Sample quantile q, SE half the spread of the order statistics n q -+ sqrt(n q (1-q))."""
    x = np.sort(np.asarray(x, np.float64).ravel())
    n = x.size
    half = math.sqrt(n * q * (1 - q))
    lo, hi = int(max(0, math.floor(n * q - half))), int(min(n - 1, math.ceil(n * q + half)))
    return Estimate(float(np.quantile(x, q)), float(x[hi] - x[lo]) / 2, f"quantile {q}")


def std_ratio(a: np.ndarray, b: np.ndarray, axis: int = 0, floor: float = 0.0) -> Estimate:
    """Typical ratio std(a) / std(b) of two sets of draws, element by element along ``axis``.

    Per element the log of the ratio of the two sample stds; the estimate is exp(mean of the logs) over
    the elements whose std(b) exceeds ``floor``, with the SE of that mean from the elements' spread.
    Both sets should hold the same number of draws (then the log ratio has no bias).
    """
    sa = np.asarray(a, np.float64).std(axis=axis, ddof=1).ravel()
    sb = np.asarray(b, np.float64).std(axis=axis, ddof=1).ravel()
    ok = (sb > floor) & (sa > 0)
    if ok.sum() < 8:
        raise AssertionError(f"std_ratio: only {int(ok.sum())} elements with noise; the check has no power")
    logs = np.log(sa[ok] / sb[ok])
    m, se = float(logs.mean()), float(logs.std(ddof=1) / math.sqrt(logs.size))
    return Estimate(math.exp(m), math.exp(m) * se, f"std ratio over {logs.size} elements")


def with_common_error(est: Estimate, rel_se: float, why: str) -> Estimate:
    """``est`` with a relative error shared by all its elements added in quadrature to its SE.

    E.g. noise drawn from one bank of B standard normals: every draw carries that bank's sample-std error,
    1 / sqrt(2 B) relative, which averaging over elements does not remove.
    """
    se = math.sqrt(est.se**2 + (est.value * rel_se) ** 2)
    return Estimate(est.value, se, f"{est.what} (+ {why})")


def mean_z(a: np.ndarray, b: np.ndarray, axis: int = 0, floor: float = 1e-12) -> Estimate:
    """Mean squared z-score of the element-wise difference of the means of two sets of draws.

    z_i = (mean a_i - mean b_i) / sqrt(var a_i / n_a + var b_i / n_b); when both sets have the same means,
    E[z^2] = 1 (slightly more for few draws); the SE is that of the mean of the z_i^2 over the elements.
    Compare with :data:`expected_mean_z2` of the draw counts.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    na, nb = a.shape[axis], b.shape[axis]
    var = a.var(axis=axis, ddof=1) / na + b.var(axis=axis, ddof=1) / nb
    diff = a.mean(axis=axis) - b.mean(axis=axis)
    ok = var > floor**2
    z2 = (diff[ok] ** 2 / var[ok]).ravel()
    return Estimate(float(z2.mean()), float(z2.std(ddof=1) / math.sqrt(z2.size)), f"mean z^2 over {z2.size}")


def expected_mean_z2(na: int, nb: int) -> float:
    """E[z^2] of :func:`mean_z` for Gaussian draws (the Welch statistic's t-like inflation, ~1 + 2/n)."""
    dof = na + nb - 2
    return dof / (dof - 2)


def assert_matches(
    est: Estimate, expected: float, *, detect: float | None = DETECT, scale: float | None = None
) -> None:
    """Assert ``est`` is within :data:`TOLERANCE_SE` SE of ``expected``, and can see a ``detect`` error.

    Args:
        est: the estimate.
        expected: the formula's or the reference's value.
        detect: the relative error the check must have the power to see: ``detect * scale`` must exceed
            :data:`POWER_SE` standard errors. ``None`` skips the power check (say why at the call).
        scale: the magnitude a relative error is relative to (default ``|expected|``).
    """
    z = est.z(expected)
    assert abs(z) < TOLERANCE_SE, f"{est}: expected {expected:.6g}, {z:+.1f} SE off (tolerance {TOLERANCE_SE} SE)"
    if detect is not None:
        shift = detect * (abs(expected) if scale is None else scale)
        assert shift > POWER_SE * est.se, (
            f"{est}: a {detect:.0%} error ({shift:.3g}) is only {shift / est.se:.1f} SE; the check needs "
            f"{POWER_SE} SE of power (more samples)"
        )


def assert_rejects(est: Estimate, expected: float) -> None:
    """The twin: assert ``est`` is more than :data:`TOLERANCE_SE` SE from ``expected`` (the check fails)."""
    z = est.z(expected)
    assert abs(z) > TOLERANCE_SE, f"{est}: a perturbed quantity passed the check against {expected:.6g} ({z:+.1f} SE)"


KS_P = 1e-3
"""A KS test passes when its p-value exceeds this (and the twin's must fall below it)."""


def assert_ks(x: np.ndarray, cdf: Callable[[np.ndarray], np.ndarray]) -> None:
    """Kolmogorov-Smirnov: the samples ``x`` follow ``cdf`` (p > :data:`KS_P`)."""
    p = _stats.kstest(np.asarray(x).ravel(), cdf).pvalue
    assert p > KS_P, f"KS test rejects the distribution (p = {p:.2g})"


def assert_ks_rejects(x: np.ndarray, cdf: Callable[[np.ndarray], np.ndarray]) -> None:
    """The KS twin: the perturbed samples do not follow ``cdf`` (p < :data:`KS_P`)."""
    p = _stats.kstest(np.asarray(x).ravel(), cdf).pvalue
    assert p < KS_P, f"KS test accepts a perturbed distribution (p = {p:.2g})"
