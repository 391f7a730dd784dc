"""Parse times since programming with units: ``1s,1h,1d,1y`` -> seconds."""

from __future__ import annotations

import re

from anacompile.errors import ConfigError
from anacompile.limits import check_time

__all__ = ["UNITS_S", "format_time", "parse_time", "parse_times"]

UNITS_S = {
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
    "mo": 30 * 86400.0,
    "y": 365 * 86400.0,
}
"""Seconds per unit; a year is 365 days, a month 30 days (as in reference/papers.md)."""

_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]*)\s*$")


def parse_time(text: str | float) -> float:
    """``"1h"`` -> 3600.0; a bare number is seconds."""
    if isinstance(text, (int, float)):
        try:
            value, unit = float(text), "s"
        except OverflowError as err:
            raise ConfigError(f"Time {text!r}: too large.") from err
    else:
        m = _RE.match(str(text).lower())
        if not m or (m.group(2) and m.group(2) not in UNITS_S):
            raise ConfigError(f"Time {text!r}: write a number with a unit, e.g. 1s, 10min, 1h, 1d, 30d, 1y.")
        value, unit = float(m.group(1)), m.group(2) or "s"
    return check_time(value * UNITS_S[unit], text)


def parse_times(text: str | list) -> list[float]:
    """``"1s,1h,1d,1y"`` (or a list) -> seconds."""
    items = text if isinstance(text, (list, tuple)) else [t for t in str(text).split(",") if t.strip()]
    if not items:
        raise ConfigError("No evaluation times given: e.g. --times 1s,1h,1d,1y.")
    return [parse_time(t) for t in items]


def format_time(seconds: float) -> str:
    """3600 -> ``1h``; the largest unit that divides evenly, else seconds."""
    for unit in ("y", "d", "h", "min", "s"):
        n = seconds / UNITS_S[unit]
        if seconds >= UNITS_S[unit] and abs(n - round(n)) < 1e-9:
            return f"{round(n)}{unit}"
    return f"{seconds:g}s"
