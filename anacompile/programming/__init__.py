"""Simulated chip programming: Gaussian residual or closed-loop program-and-verify, and strategy optimisation.

The optimiser (:mod:`anacompile.programming.optimizer`, which imports scipy) is loaded on first use, so the
runtime's ``program_chip`` stays cheap to import.
"""

from __future__ import annotations

from typing import Any

from anacompile.programming.chip import PROGRAMMING_METHODS, program_chip
from anacompile.programming.program_verify import (
    DEFAULT_BUDGETS,
    PFailPoint,
    ProgramVerifyParams,
    ProgramVerifyResult,
    p_fail_curve,
    program_and_verify,
    program_verify_conductances,
    reference_weight_sets,
)
from anacompile.programming.weight_error import (
    DEFAULT_TIMES_S,
    StrategyError,
    evaluate_strategy_error,
    gdc_alpha,
    load_weight_matrices,
    normalised_weights,
)

__all__ = [
    "DEFAULT_BUDGETS",
    "DEFAULT_TIMES_S",
    "PROGRAMMING_METHODS",
    "OptimizeReport",
    "OptimizeSettings",
    "PFailPoint",
    "ProgramVerifyParams",
    "ProgramVerifyResult",
    "StrategyError",
    "evaluate_strategy_error",
    "gdc_alpha",
    "load_weight_matrices",
    "normalised_weights",
    "optimize_strategy",
    "p_fail_curve",
    "plot_strategy",
    "program_chip",
    "program_and_verify",
    "program_verify_conductances",
    "reference_weight_sets",
]

_LAZY = {"OptimizeReport", "OptimizeSettings", "optimize_strategy", "plot_strategy"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from anacompile.programming import optimizer

        return getattr(optimizer, name)
    raise AttributeError(f"module 'anacompile.programming' has no attribute {name!r}")
