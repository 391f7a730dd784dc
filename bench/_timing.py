"""Side-by-side timing helpers for the bench scripts (interleaved rounds, median ratio)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.thread_time}
"""``wall``: elapsed time; ``cpu``: this thread's CPU time, which a loaded machine disturbs far less (valid
only when the timed work runs on the calling thread: onnxruntime with ``intra_op_num_threads=1``)."""


def per_call_s(fn: Callable[[], object], min_time_s: float = 0.05, clock: str = "wall") -> float:
    """Mean seconds per call of ``fn`` over a batch of calls lasting at least ``min_time_s`` on ``clock``."""
    now = CLOCKS[clock]
    fn()
    n, elapsed = 1, 0.0
    while True:
        t0 = now()
        for _ in range(n):
            fn()
        elapsed = now() - t0
        if elapsed >= min_time_s:
            return elapsed / n
        n *= 2


def side_by_side(
    a: Callable[[], object], b: Callable[[], object], rounds: int = 7, clock: str = "wall"
) -> tuple[float, float, float]:
    """Time ``a`` and ``b`` alternately; return (median a, median b, median of per-round ratios a/b)."""
    ta, tb, ratios = [], [], []
    for _ in range(rounds):
        x = per_call_s(a, clock=clock)
        y = per_call_s(b, clock=clock)
        ta.append(x)
        tb.append(y)
        ratios.append(x / y)
    return statistics.median(ta), statistics.median(tb), statistics.median(ratios)
