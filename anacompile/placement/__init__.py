"""Placement: which layers run analog, with which programming strategy, within a metric budget.

The top tool layer: it calls down into the compiler (``compile_model(digital=, layer_strategies=)``),
the runtime (switchable :class:`~anacompile.runtime.session.AnalogSession`) and evaluate (metrics,
Monte Carlo); nothing below imports it.

* :func:`~anacompile.placement.sensitivity.sensitivity`: per-layer metric alone analog / all but it analog;
* :func:`~anacompile.placement.search.place`: the cheapest placement within a budget, compiled and verified.
"""

from __future__ import annotations

from anacompile.placement.search import CANDIDATE_STRATEGIES, PlacementResult, place
from anacompile.placement.sensitivity import LayerSensitivity, SensitivityResult, sensitivity

__all__ = ["CANDIDATE_STRATEGIES", "LayerSensitivity", "PlacementResult", "SensitivityResult", "place", "sensitivity"]
