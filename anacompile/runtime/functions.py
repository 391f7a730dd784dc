"""Compatibility alias of :mod:`anacompile.crossbar.functions` (the ONNX bodies of the analog ops)."""

from __future__ import annotations

from anacompile.crossbar.functions import *  # noqa: F403
from anacompile.crossbar.functions import __all__  # noqa: F401
