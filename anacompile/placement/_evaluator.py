"""Scoring per-layer placements on one programmed chip at a time: the engine of sensitivity and placement.

A placement config maps layer names to ``"digital"`` or a programming strategy spec; layers it does not
name stay analog with the compiled strategy. One switchable :class:`~anacompile.runtime.session.AnalogSession`
serves every config: chip k is programmed once per strategy a layer takes, read once per time, and each
config only switches layers (:meth:`~anacompile.runtime.session.AnalogSession.set_digital`,
:meth:`~anacompile.runtime.session.AnalogSession.set_layer_strategy`). Every config sees the same chips
(common random numbers), so differences between configs are measured much more precisely than the spread
over chips.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from anacompile.evaluate.driver import batched_scores, chips_per_group
from anacompile.evaluate.metrics import Metric, resolve_metric, score
from anacompile.model_io import load_proto

__all__ = ["DIGITAL", "ConfigEvaluator", "LayerInfo", "unexercised_layers"]

logger = logging.getLogger(__name__)
DIGITAL = "digital"


UNSEEN_NOTE = "no calibration data reached layer(s) "
"""How the compile report's note on layers no calibration vector reached begins (passes/compile_report.py)."""


def unexercised_layers(notes: Sequence[str], names: Sequence[str]) -> list[str]:
    """Layers the compile report says no calibration data reached (e.g. the branch of an If on the sample
    rate that the data never takes): their analog error cannot show in a metric on such data."""
    for note in notes:
        if note.startswith(UNSEEN_NOTE):
            listed = set(note[len(UNSEEN_NOTE) :].split(" (an If branch")[0].split(", "))
            return [n for n in names if n in listed]
    return []


@dataclass(frozen=True)
class LayerInfo:
    """An analog-capable layer: name, op, weights, MACs per inference (from the compile report)."""

    name: str
    op: str
    parameters: int
    macs: int


class ConfigEvaluator:
    """Metric of placement configs over chips ``0..chips-1`` of experiment ``seed`` at given times.

    Args:
        compiled: an all-analog compiled model (its report lists every analog layer).
        metric: built-in name, ``FILE.py:FUNCTION`` or callable ``metric(run) -> float``.
        data: data for built-in metrics.
        chips: chips per config; ``seed``: experiment seed (default: the compile seed).
        compensation: drift compensation override.
        progress: ``progress(done, total)``, called after every (config, chip, time) run.
        batch_memory_mb: bound (MiB) on one onnxruntime call that runs many (chip, t) pairs of a config
            (:mod:`anacompile.runtime.chip_batch`; default one core's L2 cache, 0: one pair per call); the
            scores are bit for bit those of one pair per call.
        providers: onnxruntime execution providers of the session (:mod:`anacompile.runtime.providers`).
        periphery_overrides: periphery keys the session changes in the compiled model (``{"adc_bits": 6}``),
            as ``evaluate``'s (:class:`~anacompile.runtime.session.AnalogSession`).
    """

    def __init__(
        self,
        compiled,
        metric: str | Metric | None,
        data,
        chips: int,
        seed: int | None = None,
        compensation: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        batch_memory_mb: float | None = None,
        providers: str | list[str] | None = None,
        periphery_overrides: dict | None = None,
    ) -> None:
        from anacompile.runtime.session import AnalogSession

        self.session = AnalogSession(
            compiled,
            chip_seed=None,
            seed=seed,
            compensation=compensation,
            switchable=True,
            providers=providers,
            periphery_overrides=periphery_overrides,
        )
        self.metric, self.metric_name = resolve_metric(
            metric, data=data, proto=load_proto(compiled), digital_run=self.session.run_digital
        )
        self.baseline = score(self.metric, self.session.run_digital, self.metric_name)
        self.chips = int(chips)
        self.progress = progress
        self.batch_memory_mb = batch_memory_mb
        self.done = 0
        self.total = 0
        self.default_strategy = self.session.mapping.to_dict()
        rows = {r.name: r for r in self.session.report.layers if r.analog}
        self.layers = [  # a layer the report does not list (a nested body): its weights from the plan's shape
            LayerInfo(la.name, rows[la.name].op, rows[la.name].parameters, rows[la.name].macs)
            if la.name in rows
            else LayerInfo(
                la.name,
                "?",
                int(np.prod(la.g_target.shape[-2:])) * la.n_tiles,
                int(np.prod(la.g_target.shape[-2:])) * la.n_tiles,
            )
            for la in self.session.layers
        ]
        self.evaluations = 0
        self.unexercised = unexercised_layers(self.session.report.notes, self.names)

    @property
    def names(self) -> list[str]:
        """Layer names, in graph order."""
        return [la.name for la in self.layers]

    def _apply(self, config: Mapping[str, str]) -> None:
        s = self.session
        s.set_digital([n for n, v in config.items() if v == DIGITAL])
        for name in self.names:
            spec = config.get(name)
            s.set_layer_strategy(name, self.default_strategy if spec in (None, DIGITAL) else spec)

    def scores(self, configs: Sequence[Mapping[str, str]], times_s: Sequence[float]) -> np.ndarray:
        """Metric of every config on every chip at every time: array (configs, chips, times)."""
        out = np.zeros((len(configs), self.chips, len(times_s)))
        self.total += len(configs) * self.chips * len(times_s)
        group, per_call = chips_per_group(self.session, self.metric, len(times_s), self.chips, self.batch_memory_mb)
        if per_call > 1:
            self._batched_scores(configs, times_s, out, group, per_call)
            self.evaluations += len(configs)
            return out
        for chip in range(self.chips):
            self._apply({})
            self.session.program(chip)
            for j, t in enumerate(times_s):
                self.session.set_time(t)
                for i, config in enumerate(configs):
                    self._apply(config)
                    out[i, chip, j] = score(self.metric, self.session.run, self.metric_name)
                    self.done += 1
                    if self.progress is not None:
                        self.progress(self.done, self.total)
        self.evaluations += len(configs)
        return out

    def _batched_scores(self, configs, times_s, out: np.ndarray, group: int, per_call: int) -> None:
        """:meth:`scores` with many (chip, t) pairs of one config per onnxruntime call: a group of chips is
        programmed and read as in the one-pair loop (same order, same streams), each (config, chip, t) kept
        as a snapshot, and each config's pairs of the group run together."""
        s = self.session
        for first in range(0, self.chips, group):
            members = range(first, min(self.chips, first + group))
            states: list[list] = [[] for _ in configs]
            for chip in members:
                self._apply({})
                s.program(chip)
                for t in times_s:
                    s.set_time(t)
                    for i, config in enumerate(configs):
                        self._apply(config)
                        states[i].append(s.snapshot())
            for i in range(len(configs)):  # a pair's stream is shared by its configs: drawn in config order
                values = batched_scores(s, states[i], self.metric, per_call, self.metric_name)
                for k, value in enumerate(values):
                    chip, j = members[k // len(times_s)], k % len(times_s)
                    out[i, chip, j] = value
                    self.done += 1
                    if self.progress is not None:
                        self.progress(self.done, self.total)
