"""Compatibility alias of :mod:`anacompile.programming.chip_state` (one chip's state, in numpy)."""

from __future__ import annotations

from anacompile.programming.chip_state import *  # noqa: F403
from anacompile.programming.chip_state import __all__  # noqa: F401
