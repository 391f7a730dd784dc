"""Evaluation: accuracy over time over many chips, MVM error, embeddings, data sets, plots.

``anacompile.evaluate(...)`` is :func:`anacompile.evaluate.monte_carlo.evaluate`: this package is also
callable, so the Python API mirrors ``anacompile evaluate`` one to one (as in shared/DESIGN.md).
"""

from __future__ import annotations

import sys
import types


class _CallableModule(types.ModuleType):
    """The package module, callable as :func:`anacompile.evaluate.monte_carlo.evaluate`."""

    def __call__(self, *args, **kwargs):
        from anacompile.evaluate.monte_carlo import evaluate

        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
