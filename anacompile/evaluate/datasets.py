"""Compatibility alias of :mod:`anacompile.datasets` (the built-in data sets moved below the compiler)."""

from __future__ import annotations

from anacompile.datasets import *  # noqa: F403
from anacompile.datasets import __all__  # noqa: F401
