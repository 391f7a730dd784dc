"""Plots of the cost model: energy per layer (stacked by component), accuracy vs energy."""

from __future__ import annotations

import os
from collections.abc import Sequence

from anacompile.cost.model import CostReport

__all__ = ["plot_accuracy_vs_energy", "plot_energy_per_layer"]

KINDS = ("array", "dac", "adc", "digital_add", "digital_mul", "digital_mac")


def plot_energy_per_layer(report: CostReport, path: str | os.PathLike[str]) -> None:
    """Bar chart of the energy of each layer per inference, stacked by component, log scale; saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [lc.counts.name for lc in report.layers]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.35 * len(names) + 2), 4.0))
    bottom = [0.0] * len(names)
    for kind in KINDS:
        vals = [lc.energy[kind].total * 1e9 if kind in lc.energy else 0.0 for lc in report.layers]
        if any(vals):
            ax.bar(range(len(names)), vals, bottom=bottom, label=kind)
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([n if len(n) <= 24 else "…" + n[-23:] for n in names], rotation=75, fontsize=7)
    ax.set_ylabel("energy per inference (nJ)")
    total = report.totals["energy_j"] * 1e9
    ax.set_title(f"{os.path.basename(report.model)} on {report.params.name}: {total:.4g} nJ / inference", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_accuracy_vs_energy(points: Sequence[tuple[str, float, float]], path: str | os.PathLike[str]) -> None:
    """Scatter of (label, energy J, accuracy) points, e.g. one per placement of layers on analog/digital."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 3.8))
    for label, energy, acc in points:
        ax.scatter(energy * 1e9, acc * 100)
        ax.annotate(label, (energy * 1e9, acc * 100), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("energy per inference (nJ)")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
