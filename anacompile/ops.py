"""Compatibility alias of :mod:`anacompile.contract` (names of the domain, ops, tensors and metadata).

New code imports :mod:`anacompile.contract`; this module stays so that ``anacompile.ops.X`` keeps working.
"""

from __future__ import annotations

from anacompile.contract import *  # noqa: F403
from anacompile.contract import __all__  # noqa: F401
