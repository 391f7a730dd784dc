"""Bounds of the numbers users pass (CLI options and API arguments), checked before any work starts.

Each bound is a documented parameter, not a physical claim: seeds and chip indices are stored as int64 in
reports and keyed into :class:`numpy.random.SeedSequence`; times are keyed in microseconds into int64;
counts are bounded so that an experiment's result arrays fit in memory and finish in finite time.
"""

from __future__ import annotations

import math

from anacompile.errors import ConfigError

__all__ = [
    "MAX_CHIPS",
    "MAX_INDEX",
    "MAX_SAMPLES",
    "MAX_TIME_S",
    "MAX_WORKERS",
    "check_count",
    "check_index",
    "check_time",
]

MAX_INDEX = 2**63 - 1
"""Largest seed or chip index (int64)."""
MAX_CHIPS = 100_000
"""Most simulated chips in one experiment (split larger studies into several seeds)."""
MAX_WORKERS = 1024
"""Most worker processes."""
MAX_SAMPLES = 10_000_000
"""Most input vectors per layer for ``mvm-error``."""
MAX_TIME_S = 1e12
"""Longest time since programming, in seconds (about 31,700 years; keyed in microseconds into int64)."""


def check_index(value, option: str) -> int:
    """A seed or chip index: an integer in [0, 2^63 - 1]."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            as_int = int(value)
        except (TypeError, ValueError, OverflowError):
            as_int = None
        if as_int is None or as_int != value:
            raise ConfigError(f"{option} {value!r}: must be a whole number >= 0.")
        value = as_int
    if not 0 <= value <= MAX_INDEX:
        raise ConfigError(f"{option} {value}: must be between 0 and {MAX_INDEX} (2^63 - 1).")
    return int(value)


def check_count(value, option: str, maximum: int, minimum: int = 1) -> int:
    """A count (chips, workers, samples): an integer in [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{option} {value!r}: must be a whole number.")
    if not minimum <= value <= maximum:
        raise ConfigError(f"{option} {value}: must be between {minimum} and {maximum:,}.")
    return int(value)


def check_time(seconds: float, text) -> float:
    """A time since programming: finite, >= 0 and at most :data:`MAX_TIME_S`."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"Time {text!r}: must be a finite number of seconds >= 0.")
    if seconds > MAX_TIME_S:
        raise ConfigError(
            f"Time {text!r} is {seconds:.3g} s, longer than the limit of {MAX_TIME_S:.0e} s "
            "(about 31,700 years): use a shorter time."
        )
    return seconds
