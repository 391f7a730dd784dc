"""Compatibility alias of :mod:`anacompile.feeds` (data loading moved below the compiler, which calibrates)."""

from __future__ import annotations

from anacompile.feeds import *  # noqa: F403
from anacompile.feeds import __all__  # noqa: F401
