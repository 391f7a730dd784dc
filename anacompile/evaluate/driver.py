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

With a built-in metric (:class:`~anacompile.evaluate.metrics.DataMetric`), :func:`batched_rows` runs the
same loop with many (chip, t) pairs per onnxruntime call (:mod:`anacompile.runtime.chip_batch`): a group
of chips is programmed and read at every time in the same order, and the group's pairs run together; each
pair's values are bit for bit those of one pair per call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import numpy as np

__all__ = [
    "ChipSession",
    "Measure",
    "Run",
    "batched_rows",
    "batched_scores",
    "chip_row",
    "chip_time_grid",
    "chips_per_group",
    "metric_grid",
    "metric_measure",
]

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


def chips_per_group(
    session: Any, metric: Any, times: int, chips: int, batch_memory_mb: float | None
) -> tuple[int, int]:
    """``(chips per group, pairs per call)`` for :func:`batched_rows`: (1, 1) where pairs cannot share a
    call (a user's callable metric, a model :mod:`~anacompile.runtime.chip_batch` refuses, a zero bound)."""
    from anacompile.evaluate.metrics import DataMetric
    from anacompile.runtime.chip_batch import pairs_per_call

    if not isinstance(metric, DataMetric) or chips * times <= 1:
        return 1, 1
    pairs = pairs_per_call(session, metric.batches()[0], batch_memory_mb, chips * times)
    return max(1, pairs // max(times, 1)), pairs


def batched_rows(
    session: Any,
    chips: Sequence[int],
    times_s: Sequence[float],
    metric: Any,
    batch_memory_mb: float | None = None,
    name: str = "metric",
) -> Iterable[tuple[int, list[float]]]:
    """``(chip, row)`` for every chip, as :func:`chip_row` with ``metric_measure(metric)`` gives them, with many
    (chip, t) pairs per onnxruntime call under the memory bound ``batch_memory_mb`` (MiB; 0: one per call).

    Chips are taken in groups; a group's chips are programmed and set to every time in order, each (chip, t)
    kept as a :class:`~anacompile.runtime.chip_batch.ChipState`, and the group's pairs run in calls of at
    most the bound's pairs. Rows come out group by group, in chip order.
    """
    from anacompile.evaluate.metrics import score

    chips = [int(c) for c in chips]
    group, per_call = chips_per_group(session, metric, len(times_s), len(chips), batch_memory_mb)
    if per_call == 1:
        for chip in chips:
            yield chip, chip_row(session, chip, times_s, metric_measure(lambda run: score(metric, run, name)))
        return
    for g in range(0, len(chips), group):
        members = chips[g : g + group]
        states = []
        for chip in members:
            session.program(chip)
            for t in times_s:
                session.set_time(float(t))
                states.append(session.snapshot())
        values = batched_scores(session, states, metric, per_call, name)
        for j, chip in enumerate(members):
            yield chip, values[j * len(times_s) : (j + 1) * len(times_s)]


def batched_scores(
    session: Any, states: Sequence[Any], metric: Any, per_call: int, name: str = "metric"
) -> list[float]:
    """The built-in ``metric`` (a :class:`~anacompile.evaluate.metrics.DataMetric`) of every
    :class:`~anacompile.runtime.chip_batch.ChipState` in ``states``, ``per_call`` states per onnxruntime call."""
    from anacompile.evaluate.metrics import score

    batch = session.chip_batch()
    first = [session.output_names[0]]
    values: list[float] = []
    for i in range(0, len(states), max(1, int(per_call))):
        pairs = states[i : i + max(1, int(per_call))]
        parts: list[list[np.ndarray]] = [[] for _ in pairs]
        for feeds in metric.batches():
            for part, out in zip(parts, batch.run(pairs, feeds, first), strict=True):
                part.append(np.asarray(out[0]))
        for part in parts:
            y = np.concatenate([p if p.ndim else p[None] for p in part], axis=0)
            values.append(score(_scored_outputs(metric, y), _no_run, name))
    return values


def _scored_outputs(metric: Any, y: np.ndarray) -> Callable[[Any], float]:
    """A metric over outputs already computed (``y``): the batched path ran the model itself."""

    def fixed(_run: Any) -> float:
        return float(metric.value(y))

    return fixed


def _no_run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    raise RuntimeError("the batched metric scores outputs already computed; it does not run the model")
