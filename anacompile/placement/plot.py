"""Plots of placement studies: per-layer sensitivity (both views) and the search's metric vs analog fraction."""

from __future__ import annotations

import os

import numpy as np

from anacompile.evaluate.plot import save_figure
from anacompile.evaluate.times import format_time

__all__ = ["plot_search", "plot_sensitivity"]

MAX_BARS = 40


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_sensitivity(result, path: str | os.PathLike[str]) -> None:
    """Per layer (ranked, most costly first; at most 40): metric with only that layer analog (left) and with
    all but that layer analog (right), one bar per time, mean +- std over chips; FP32 and all-analog lines."""
    plt = _plt()
    layers = result.layers[:MAX_BARS]
    n, nt = len(layers), len(result.times_s)
    fig, axes = plt.subplots(1, 2, figsize=(12, max(3.0, 0.28 * n * max(nt, 1) ** 0.5 + 1.5)), dpi=110, sharey=True)
    y = np.arange(n)
    h = 0.8 / max(nt, 1)
    for ax, (title, mean, std) in zip(
        axes,
        (
            ("only this layer analog", "only_mean", "only_std"),
            ("all but this layer analog", "all_but_mean", "all_but_std"),
        ),
        strict=True,
    ):
        for j, t in enumerate(result.times_s):
            m = [getattr(la, mean)[j] for la in layers]
            s = [getattr(la, std)[j] for la in layers]
            ax.barh(y + (j - (nt - 1) / 2) * h, m, height=h, xerr=s, capsize=2, label=format_time(t))
            ax.axvline(result.all_analog_mean[j], color=f"C{j}", ls=":", lw=1)
        ax.axvline(result.baseline, color="k", ls="--", lw=1, label=f"FP32 {result.baseline:.4g}")
        ax.set_title(title)
        ax.set_xlabel(f"{result.metric} (dotted: all layers analog)")
        ax.grid(True, axis="x", alpha=0.3)
    axes[0].set_yticks(y, [la.name for la in layers], fontsize=7)
    axes[0].invert_yaxis()
    axes[1].legend(fontsize=8, loc="lower left")
    fig.suptitle(f"{os.path.basename(result.model)}: per-layer sensitivity, {result.chips} chips (ranked)")
    fig.tight_layout()
    save_figure(fig, path)


def plot_search(result, path: str | os.PathLike[str]) -> None:
    """Every config the placement search evaluated: metric (mean +- std over its chips) vs the analog share of
    MACs, with the FP32 baseline, the budget line and the placement chosen (its verification on fresh chips)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.8, 4.4), dpi=120)
    stages = list(dict.fromkeys(s.stage for s in result.steps))
    for i, stage in enumerate(stages):
        pts = [s for s in result.steps if s.stage == stage]
        ax.errorbar(
            [p.analog_mac_share * 100 for p in pts],
            [p.metric_mean for p in pts],
            yerr=[p.metric_std for p in pts],
            fmt="o",
            ms=4,
            capsize=2,
            color=f"C{i}",
            label=stage,
            alpha=0.8,
        )
    ax.axhline(result.baseline, color="k", ls="--", lw=1, label=f"FP32 {result.baseline:.4g}")
    ax.axhline(result.target, color="r", ls=":", lw=1, label=f"budget {result.budget:g}")
    ax.errorbar(
        [result.analog_mac_share * 100],
        [result.verified_mean],
        yerr=[result.verified_se],
        fmt="*",
        ms=14,
        color="k",
        label=f"chosen, {result.verify_chips} fresh chips (+- SE)",
    )
    ax.set_xlabel("analog share of MACs (%)")
    ax.set_ylabel(f"{result.metric} at {format_time(result.at_s)}")
    ax.set_title(f"{os.path.basename(result.model)}: placement search ({result.evaluations} configs)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
