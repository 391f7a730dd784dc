"""The one Monte Carlo driver: program every chip, set every time, measure.

Every study over chips x times (accuracy over time in :mod:`anacompile.evaluate.monte_carlo`, embedding
cosines in :mod:`anacompile.evaluate.embeddings`, the per-layer MVM error in
:mod:`anacompile.evaluate.mvm_error`) is this loop with its own measurement::

    for chip in chips:          session.program(chip)      (programming + calibration read, per chip)
        for t in times:         session.set_time(t)        (drift + read noise + compensation, per (chip, t))
            [on_time(session)]                             (e.g. AdaBS re-estimates BatchNorm statistics)
            value = measure(session, chip, t)

A task metric is the callable ``metric(run) -> float`` of :mod:`anacompile.evaluate.metrics`, where
``run(feeds[, output_names]) -> list of outputs`` is the session's :meth:`~AnalogSession.run`;
:func:`metric_measure` turns it into a measurement. The order (chips outer, times inner) and the session's
random streams (keyed by experiment seed, chip and t) make a chip's values the same whichever process or
order evaluates it, so :func:`chip_row` is also what worker processes run for their share of the chips.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import numpy as np

__all__ = ["ChipSession", "Measure", "Run", "chip_row", "chip_time_grid", "metric_grid", "metric_measure"]

Run = Callable[..., list[np.ndarray]]
"""``run(feeds, output_names=None) -> list of outputs``: one inference on the chip as it is now."""


class ChipSession(Protocol):
    """What the driver needs of a session (:class:`~anacompile.runtime.session.AnalogSession`)."""

    def program(self, chip_seed: int) -> None: ...

    def set_time(self, t_inference: float) -> None: ...

    def run(self, feeds: dict[str, np.ndarray], output_names: list[str] | None = None) -> list[np.ndarray]: ...


Measure = Callable[[Any, int, float], Any]
"""``measure(session, chip, t) -> value`` after the session was programmed with ``chip`` and set to ``t``."""


def metric_measure(metric: Callable[[Run], Any], to_float: Callable[[Any], float] = float) -> Measure:
    """A measurement from a task metric ``metric(run) -> float`` (``to_float`` checks the value)."""

    def measure(session: Any, chip: int, t: float) -> float:
        return to_float(metric(session.run))

    return measure


def chip_row(
    session: ChipSession,
    chip: int,
    times_s: Sequence[float],
    measure: Measure,
    on_time: Callable[[Any], None] | None = None,
    after: Callable[[], None] | None = None,
) -> list[Any]:
    """Program ``chip`` and measure it at every time, in order: one row of the chips x times grid.

    ``on_time(session)`` runs after every ``set_time`` before measuring; ``after()`` after every measurement.
    """
    session.program(int(chip))
    row = []
    for t in times_s:
        session.set_time(float(t))
        if on_time is not None:
            on_time(session)
        row.append(measure(session, int(chip), float(t)))
        if after is not None:
            after()
    return row


def chip_time_grid(
    session: ChipSession,
    chips: int | Iterable[int],
    times_s: Sequence[float],
    measure: Measure,
    on_time: Callable[[Any], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[list[Any]]:
    """Measure every chip at every time: ``grid[i][j]`` is chip ``chips[i]`` at ``times_s[j]``.

    Args:
        session: the session whose chips are programmed (one at a time).
        chips: a number n (chips 0..n-1) or the chip indices.
        times_s: times since programming, s.
        measure: ``measure(session, chip, t) -> value``.
        on_time: called after every ``set_time`` before measuring (AdaBS).
        progress: ``progress(done, total)`` over (chip, time) pairs, after every one.
    """
    chip_list = list(range(chips)) if isinstance(chips, int) else [int(c) for c in chips]
    total = len(chip_list) * len(times_s)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    return [chip_row(session, chip, times_s, measure, on_time, tick) for chip in chip_list]


def metric_grid(
    session: ChipSession,
    chips: int | Iterable[int],
    times_s: Sequence[float],
    metric: Callable[[Run], Any],
    on_time: Callable[[Any], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    to_float: Callable[[Any], float] = float,
) -> np.ndarray:
    """A task metric ``metric(run) -> float`` over chips x times, as a float array (chips, times)."""
    grid = chip_time_grid(session, chips, times_s, metric_measure(metric, to_float), on_time, progress)
    return np.asarray(grid, dtype=np.float64).reshape(len(grid), len(times_s))
