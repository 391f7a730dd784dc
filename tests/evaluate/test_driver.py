"""The one chips x times driver: order of programming, setting and measuring; metrics of run; progress."""

from __future__ import annotations

import numpy as np

from anacompile.evaluate.driver import chip_row, chip_time_grid, metric_grid


class _Recorder:
    """A stand-in session that logs calls; run returns the current (chip, t) as one output."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.chip, self.t = -1, float("nan")

    def program(self, chip_seed: int) -> None:
        self.calls.append(("program", chip_seed))
        self.chip = chip_seed

    def set_time(self, t_inference: float) -> None:
        self.calls.append(("set_time", t_inference))
        self.t = t_inference

    def run(self, feeds, output_names=None):
        self.calls.append(("run",))
        return [np.array([self.chip, self.t])]


def test_chips_outer_times_inner_and_on_time_before_measuring() -> None:
    s = _Recorder()
    grid = chip_time_grid(
        s,
        [3, 5],
        [1.0, 10.0],
        lambda sess, chip, t: (chip, t, sess.chip, sess.t),
        on_time=lambda sess: sess.calls.append(("on_time",)),
    )
    assert grid == [[(3, 1.0, 3, 1.0), (3, 10.0, 3, 10.0)], [(5, 1.0, 5, 1.0), (5, 10.0, 5, 10.0)]]
    assert s.calls == [
        ("program", 3),
        ("set_time", 1.0),
        ("on_time",),
        ("set_time", 10.0),
        ("on_time",),
        ("program", 5),
        ("set_time", 1.0),
        ("on_time",),
        ("set_time", 10.0),
        ("on_time",),
    ]


def test_metric_of_run_and_progress_over_pairs() -> None:
    s = _Recorder()
    seen = []
    values = metric_grid(
        s, 3, [0.0, 2.0], lambda run: float(run({})[0].sum()), progress=lambda d, n: seen.append((d, n))
    )
    np.testing.assert_array_equal(values, [[0.0, 2.0], [1.0, 3.0], [2.0, 4.0]])
    assert seen == [(i, 6) for i in range(1, 7)]


def test_one_row_equals_the_grid_row() -> None:
    """A worker's chip_row gives the same values as the in-process grid (chips are independent)."""
    measure = lambda sess, chip, t: sess.run({})[0].tolist()  # noqa: E731
    assert chip_row(_Recorder(), 4, [1.0, 5.0], measure) == chip_time_grid(_Recorder(), [4], [1.0, 5.0], measure)[0]
