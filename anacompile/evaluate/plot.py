"""Plots of evaluation results (matplotlib, Agg backend, written atomically)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from anacompile.evaluate.times import format_time
from anacompile.model_io import atomic_output

__all__ = ["plot_accuracy_over_time", "plot_sweep", "save_figure"]


def plot_accuracy_over_time(
    results: Sequence, path: str | os.PathLike[str], labels: Sequence[str] | None = None, title: str | None = None
) -> None:
    """Accuracy vs time since programming (log axis), mean +- std band per result, FP32 baseline dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for i, r in enumerate(results):
        t = np.maximum(np.asarray(r.times_s, float), 0.1)  # t = 0 drawn at 0.1 s on the log axis
        m, s = np.asarray(r.accuracy_mean) * 100, np.asarray(r.accuracy_std) * 100
        label = labels[i] if labels else f"{r.compensation} compensation"
        (line,) = ax.plot(t, m, "o-", label=f"{label} ({r.chips} chips)")
        ax.fill_between(t, m - s, m + s, color=line.get_color(), alpha=0.2)
    ax.axhline(results[0].baseline * 100, color="k", ls="--", lw=1, label=f"FP32 baseline {results[0].baseline:.1%}")
    ax.set_xscale("log")
    ticks = np.maximum(np.asarray(results[0].times_s, float), 0.1)
    ax.set_xticks(ticks, [format_time(x) for x in results[0].times_s])
    ax.set_xlabel("time since programming")
    ax.set_ylabel(f"{results[0].metric} (%)")
    ax.set_title(title or os.path.basename(results[0].model))
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def plot_sweep(results: Sequence, key: str, values: Sequence[str], path: str | os.PathLike[str]) -> None:
    """Accuracy vs the swept periphery value, one line (mean +- std band) per time, FP32 baseline dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        xs = np.asarray([float(v) for v in values])
    except ValueError:
        xs = np.arange(len(values), dtype=float)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for j, t in enumerate(results[0].times_s):
        m = np.asarray([r.accuracy_mean[j] for r in results]) * 100
        s = np.asarray([r.accuracy_std[j] for r in results]) * 100
        (line,) = ax.plot(xs, m, "o-", label=f"t = {format_time(t)}")
        ax.fill_between(xs, m - s, m + s, color=line.get_color(), alpha=0.2)
    ax.axhline(results[0].baseline * 100, color="k", ls="--", lw=1, label=f"FP32 baseline {results[0].baseline:.1%}")
    ax.set_xticks(xs, list(values))
    ax.set_xlabel(key)
    ax.set_ylabel(f"{results[0].metric} (%)")
    ax.set_title(f"{os.path.basename(results[0].model)}: sensitivity to {key} ({results[0].chips} chips)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def save_figure(fig, path: str | os.PathLike[str]) -> None:
    """Write the figure atomically in the format its suffix names (PNG by default) and close it."""
    import matplotlib.pyplot as plt

    suffix = os.path.splitext(str(path))[1].lstrip(".") or "png"
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format=suffix)
    plt.close(fig)
