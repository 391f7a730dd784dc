"""Cost model: tiles, MVMs, conversions, digital operations, energy, latency and area of one inference.

``estimate_cost("model.analog.onnx", "ibm64core")`` reads a compiled model (its report and its graph's
shapes), counts what one inference asks of every layer (:mod:`anacompile.cost.counts`) and prices the counts
with the named constants of a cited chip (:mod:`anacompile.cost.params`); every figure is ``count x
constant`` (:mod:`anacompile.cost.model`). This package sits on top: it reads compiled models, nothing below
imports it.
"""

from anacompile.cost.counts import LayerCounts, ModelCounts, count_operations
from anacompile.cost.model import CostReport, LayerCost, Term, estimate, estimate_cost
from anacompile.cost.params import PRESETS, CostParameters, available, get

__all__ = [
    "PRESETS",
    "CostParameters",
    "CostReport",
    "LayerCost",
    "LayerCounts",
    "ModelCounts",
    "Term",
    "available",
    "count_operations",
    "estimate",
    "estimate_cost",
    "get",
]
