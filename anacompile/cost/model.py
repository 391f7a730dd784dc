"""Energy, latency and area of one inference, from the operation counts and the named constants.

Every figure is ``count x constant`` (a :class:`Term`, which keeps the count, the constant's name, its value
and its source), so every number in the report is traceable to one constant:

    E_array = MVMs x mvm_energy_j x (tile_rows x tile_cols of the compiled tiles) / (reference tile)
    E_dac   = DAC conversions x dac_energy_j          E_adc = ADC conversions x adc_energy_j
    E_add   = (partial sums + bias adds) x digital_add_energy_j
    E_mul   = (scales + input scaling + compensation) x digital_mul_energy_j
    E_mac   = digital MACs x digital_mac_energy_j
    area    = tiles x tile_area_mm2 (scaled like E_array) + digital_area_mm2

Latency (stated assumptions): the tiles of one layer work in parallel, so a layer takes
``vectors x steps x input cycles`` MVM times (``mvm_latency_s`` covers all input cycles of one vector) plus
its digital work at ``digital_ops_per_s``/``digital_macs_per_s``; layers run one after another for one
inference (``latency_s``, the sum); with each layer on its own tiles they pipeline across consecutive
inferences, so a new inference can start every ``max`` layer latency (``pipelined_period_s``).

The digital baseline is the same network's MACs (all weight layers plus activation x activation MatMuls)
at ``baseline_mac_energy_j``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, cast

from anacompile.cost.counts import LayerCounts, ModelCounts, count_operations
from anacompile.cost.params import CostParameters, get
from anacompile.model_io import ModelInput, is_in_memory, model_file, model_label

__all__ = ["CostReport", "LayerCost", "Term", "estimate", "estimate_cost"]


@dataclass
class Term:
    """One figure: ``count x value`` of the named constant (times ``scale``, e.g. a tile-size ratio)."""

    count: float
    constant: str
    value: float
    scale: float = 1.0
    source: str = ""

    @property
    def total(self) -> float:
        """The figure (J, s or mm²)."""
        return self.count * self.value * self.scale

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values, the formula spelt out."""
        formula = f"{self.count:g} x {self.constant}" + (f" x {self.scale:g}" if self.scale != 1.0 else "")
        return {
            "total": self.total,
            "count": self.count,
            "constant": self.constant,
            "value": self.value,
            "scale": self.scale,
            "formula": formula,
            "source": self.source,
        }


@dataclass
class LayerCost:
    """Counts and costs of one layer per inference."""

    counts: LayerCounts
    energy: dict[str, Term] = field(default_factory=dict)
    latency: dict[str, Term] = field(default_factory=dict)
    area: dict[str, Term] = field(default_factory=dict)

    @property
    def energy_j(self) -> float:
        """Total energy, J."""
        return sum(t.total for t in self.energy.values())

    @property
    def latency_s(self) -> float:
        """Total latency, s."""
        return sum(t.total for t in self.latency.values())

    @property
    def area_mm2(self) -> float:
        """Tile area, mm²."""
        return sum(t.total for t in self.area.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return {
            "counts": self.counts.to_dict(),
            "energy_j": self.energy_j,
            "latency_s": self.latency_s,
            "area_mm2": self.area_mm2,
            "energy": {k: t.to_dict() for k, t in self.energy.items()},
            "latency": {k: t.to_dict() for k, t in self.latency.items()},
            "area": {k: t.to_dict() for k, t in self.area.items()},
        }


@dataclass
class CostReport:
    """The cost of one inference of a compiled model on the chip of ``params``."""

    model: str
    params: CostParameters
    counts: ModelCounts
    layers: list[LayerCost]
    notes: list[str] = field(default_factory=list)

    @property
    def totals(self) -> dict[str, Any]:
        """Per inference: tiles, MVMs, conversions, digital ops, energy, latency, area; the digital baseline."""
        cs = [lc.counts for lc in self.layers]
        energy = sum(lc.energy_j for lc in self.layers)
        lat = [lc.latency_s for lc in self.layers]
        macs = sum(c.macs for c in cs if c.name != "(graph)") + sum(c.digital_macs for c in cs if c.name == "(graph)")
        baseline = macs * self.params.baseline_mac_energy_j
        by_kind: dict[str, float] = {}
        for lc in self.layers:
            for k, t in lc.energy.items():
                by_kind[k] = by_kind.get(k, 0.0) + t.total
        return {
            "tiles": sum(c.tiles for c in cs),
            "mvms": sum(c.mvms for c in cs),
            "dac_conversions": sum(c.dac_conversions for c in cs),
            "adc_conversions": sum(c.adc_conversions for c in cs),
            "digital_ops": sum(c.digital_ops for c in cs),
            "digital_macs": sum(c.digital_macs for c in cs),
            "analog_macs": sum(c.macs for c in cs if c.analog),
            "macs": macs,
            "energy_j": energy,
            "energy_by_kind_j": by_kind,
            "latency_s": sum(lat),
            "pipelined_period_s": max(lat) if lat else 0.0,
            "area_mm2": sum(lc.area_mm2 for lc in self.layers) + self.params.digital_area_mm2,
            "energy_per_mac_j": energy / macs if macs else 0.0,
            "baseline": {
                "name": self.params.baseline_name,
                "energy_j": baseline,
                "formula": f"{macs:g} MACs x baseline_mac_energy_j",
                "source": self.params.source("baseline_mac_energy_j"),
                "analog_over_baseline": energy / baseline if baseline else None,
            },
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: constants, per-layer figures with their formulas, totals, assumptions."""
        return {
            "model": self.model,
            "parameters": self.params.to_dict(),
            "dims": self.counts.dims,
            "assumptions": {
                "batch": 1,
                "tile_parallelism": "the tiles of one layer run in parallel",
                "layers": "one after another within an inference (latency_s = sum)",
                "pipelining": "layers on their own tiles pipeline across inferences (pipelined_period_s = max)",
                "compensation": "folded into the per-column scales, recomputed once per (chip, time)",
            },
            "layers": [lc.to_dict() for lc in self.layers],
            "totals": self.totals,
            "notes": self.notes,
        }


def estimate(counts: ModelCounts, params: CostParameters) -> CostReport:
    """Turn counts into energy, latency and area with the named constants of ``params``."""
    p = params
    size = (counts.tile_rows * counts.tile_cols) / (p.tile_rows * p.tile_cols)
    notes = list(counts.notes)
    if size != 1.0:
        notes.append(
            f"compiled tiles are {counts.tile_rows}x{counts.tile_cols}, the constants are for "
            f"{p.tile_rows}x{p.tile_cols}: array energy and tile area scaled by {size:g} (MVM latency not scaled)"
        )
    out = []
    for c in counts.layers:
        lc = LayerCost(c)

        def term(count: float, name: str, scale: float = 1.0) -> Term:
            return Term(float(count), name, float(getattr(p, name)), scale, p.source(name))

        if c.analog:
            lc.energy["array"] = term(c.mvms, "mvm_energy_j", size)
            lc.energy["dac"] = term(c.dac_conversions, "dac_energy_j")
            lc.energy["adc"] = term(c.adc_conversions, "adc_energy_j")
            lc.latency["mvm"] = Term(
                float(c.vectors * c.steps), "mvm_latency_s", p.mvm_latency_s, 1.0, p.source("mvm_latency_s")
            )
            lc.area["tiles"] = term(c.tiles, "tile_area_mm2", size)
        lc.energy["digital_add"] = term(c.partial_sums + c.bias_adds, "digital_add_energy_j")
        lc.energy["digital_mul"] = term(c.scales + c.input_scaling + c.compensation, "digital_mul_energy_j")
        lc.energy["digital_mac"] = term(c.digital_macs, "digital_mac_energy_j")
        lc.latency["digital_ops"] = Term(
            float(c.digital_ops), "1/digital_ops_per_s", 1.0 / p.digital_ops_per_s, 1.0, p.source("digital_ops_per_s")
        )
        lc.latency["digital_macs"] = Term(
            float(c.digital_macs),
            "1/digital_macs_per_s",
            1.0 / p.digital_macs_per_s,
            1.0,
            p.source("digital_macs_per_s"),
        )
        out.append(lc)
    return CostReport(counts.model, p, counts, out, notes)


def estimate_cost(
    model: ModelInput,
    params: str | os.PathLike[str] | CostParameters = "ibm64core",
    dims: dict[str, int] | None = None,
    default_dim: int = 128,
    overrides: dict[str, Any] | list[str] | None = None,
) -> CostReport:
    """The cost of one inference (batch 1) of the compiled ``model`` on the chip described by ``params``.

    Args:
        model: a compiled model: a path, an ``onnx.ModelProto`` or an ``onnx_ir.Model``.
        params: a cost preset (``ibm64core``, ``isaac``), a parameter file, or :class:`CostParameters`.
        dims: symbolic input dimensions -> size (e.g. ``{"sequence": 64}``).
        default_dim: size of any other symbolic dimension (the batch is 1).
        overrides: per-constant overrides (``["adc_energy_j=2e-12"]``).

    Raises:
        ConfigError: bad parameters; ModelLoadError: not a compiled model.
    """
    if is_in_memory(model):  # the counts read the model by path
        with model_file(model, "model.analog.onnx") as path:
            report = estimate_cost(path, params, dims, default_dim, overrides)
        report.model = report.counts.model = model_label(model)
        return report
    p = get(params, overrides)
    counts = count_operations(
        cast("str | os.PathLike[str]", model), p.pairs_per_cell, p.input_cycles, dims, default_dim
    )
    return estimate(counts, p)
