"""Relative MVM error of every analog layer on real inputs: eps_M = ||y_analog - y|| / ||y||.

Rasch et al. 2023 characterise an AIMC model by this error of a layer's matrix-vector products (their
standard model: about 15 % on realistic layers; reference/papers.md, (c) and "Metrics"). Each layer gets
its ideal FP32 input (from the source model on real data), so the error is that layer's own, and
y = x W without the digital bias. The analog y is the numpy reference of the exact arithmetic the graph
runs (:func:`anacompile.crossbar.reference.tile_forward`) on the chip's state at t.

A model with a fixed batch (of 1, a carried state) is fed one run per sample (:func:`~anacompile.feeds.
feed_batches`), each layer's inputs gathered over the runs. A layer the data never reaches (an ``If`` branch
it never takes, a ``Loop`` body that runs no iteration) has no error to measure: ``null`` in the JSON,
``not reached`` in the table, and a note.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from anacompile.crossbar.reference import tile_forward
from anacompile.evaluate.driver import batched_scores, chip_row, chips_per_group
from anacompile.evaluate.metrics import resolve_metric, score
from anacompile.evaluate.times import format_time, parse_times
from anacompile.feeds import feed_batches, load_feeds, model_input_specs
from anacompile.limits import MAX_CHIPS, MAX_SAMPLES, check_count, check_index
from anacompile.model_io import load_proto
from anacompile.programming.chip_state import chip_rng
from anacompile.runtime.providers import resolve_providers
from anacompile.runtime.session import AnalogSession

__all__ = ["MVMErrorResult", "mvm_error"]


@dataclass
class MVMErrorResult:
    """eps_M per layer and time: mean and std over chips."""

    model: str
    chips: int
    compensation: str
    times_s: list[float]
    layers: list[str]
    shapes: list[list[int]]
    error_mean: list[list[float | None]]  # [layer][time]; None: the data never reached the layer
    error_std: list[list[float | None]]
    metric: str | None = None  # the end-to-end task metric, when one was asked for
    metric_baseline: float | None = None  # FP32
    metric_mean: list[float] | None = None  # [time], mean over chips
    metric_std: list[float] | None = None
    not_reached: list[str] = field(default_factory=list)  # layers no input vector of the data reached
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        d = asdict(self)
        d["times"] = [format_time(t) for t in self.times_s]
        return d


def mvm_error(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str] = "digits",
    times: str | list = "1s",
    chips: int = 5,
    seed: int | None = None,
    compensation: str | None = None,
    periphery_overrides: dict | list[str] | None = None,
    samples: int = 256,
    progress=None,
    metric=None,
    batch_memory_mb: float | None = None,
    providers: str | list[str] | None = None,
) -> MVMErrorResult:
    """eps_M of every analog layer of a compiled model at each time, over ``chips`` chips.

    With ``metric`` (a built-in name, ``"FILE.py:FUNCTION"`` or a callable ``metric(run) -> float``,
    :mod:`anacompile.evaluate.metrics`) the same chips are also scored end to end at every time, beside the
    FP32 baseline, so a layer's error can be read against what the task loses. A built-in metric runs many
    (chip, t) pairs per onnxruntime call under ``batch_memory_mb`` (:mod:`anacompile.runtime.chip_batch`;
    0: one pair per call), with the same numbers. ``providers``: onnxruntime execution providers of the
    session (``"cuda"``, ``["cuda", "cpu"]``; :mod:`anacompile.runtime.providers`; default the CPU), one that
    is not available a one-line ConfigError naming the available ones, before any work.
    """
    times_s = parse_times(times)
    chips = check_count(chips, "--chips", MAX_CHIPS)
    samples = check_count(samples, "--samples", MAX_SAMPLES)
    seed = None if seed is None else check_index(seed, "--seed")
    resolved = resolve_providers(providers)
    proto = load_proto(model)
    feeds, _ = load_feeds(data, proto, part="test", limit=samples)
    runs = feed_batches(feeds, model_input_specs(proto), batch=samples) or [feeds]
    session = AnalogSession(
        model, seed=seed, compensation=compensation, periphery_overrides=periphery_overrides, providers=resolved
    )
    task, name, base = None, None, None
    if metric is not None:
        task, name = resolve_metric(metric, data=data, proto=proto, digital_run=session.run_digital)
        base = score(task, session.run_digital, name)
    xs = _layer_inputs(session, runs)
    weights = {layer.name: session.ideal_weight(layer, xs[layer.name].shape[-1]) for layer in session.layers}
    ideal = {name: xs[name].astype(np.float64) @ weights[name] for name in xs}
    not_reached = [layer.name for layer in session.layers if xs[layer.name].size == 0]

    def layer_errors(session: AnalogSession, chip: int, t: float) -> list[float]:
        """eps_M of every layer of the chip as it is now."""
        errors = []
        for i, layer in enumerate(session.layers):
            x = xs[layer.name]
            if x.size == 0:  # not reached: no error (NaN here, None in the result)
                errors.append(float("nan"))
                continue
            w_codes, in_scale, scale = session.layer_state(layer)
            noise = None
            if session.periphery.has_mvm_noise:
                rows = int(np.prod(x.shape[:-1]))
                rng = chip_rng(session.seed, chip, "read", 1000 + i, t)
                noise = rng.standard_normal((layer.n_tiles, rows, layer.n_out)).astype(np.float32)
            y = tile_forward(
                x, w_codes, in_scale, scale, np.zeros(layer.n_out, np.float32), session.periphery, noise, layer.out_gain
            )
            ref = ideal[layer.name]
            errors.append(float(np.linalg.norm(y - ref) / max(np.linalg.norm(ref), 1e-30)))
        return errors

    def measure(session: AnalogSession, chip: int, t: float) -> tuple[list[float], float]:
        """eps_M of every layer and the task metric of the chip as it is now."""
        return layer_errors(session, chip, t), (score(task, session.run, name) if task is not None else 0.0)

    group, per_call = chips_per_group(session, task, len(times_s), chips, batch_memory_mb)
    grid = []
    if per_call > 1:  # eps_M in numpy per (chip, t) as below; the task metric of a group's pairs together

        def errors_only(session: AnalogSession, chip: int, t: float):
            return layer_errors(session, chip, t), session.snapshot()

        for first in range(0, chips, group):
            members = range(first, min(chips, first + group))
            cells = [chip_row(session, chip, times_s, errors_only) for chip in members]
            states = [state for row in cells for _, state in row]
            values = iter(batched_scores(session, states, task, per_call, name))
            for row in cells:
                grid.append([(errors, next(values)) for errors, _ in row])
                if progress is not None:
                    progress(len(grid), chips)
    else:
        for chip in range(chips):
            grid.append(chip_row(session, chip, times_s, measure))
            if progress is not None:
                progress(chip + 1, chips)
    err = np.array([[cell[0] for cell in row] for row in grid]).transpose(2, 1, 0)  # (layers, times, chips)
    scores = np.array([[cell[1] for cell in row] for row in grid]).T  # (times, chips)
    reached = np.array([layer.name not in not_reached for layer in session.layers])

    def per_layer(values: np.ndarray) -> list[list[float | None]]:
        return [row.tolist() if ok else [None] * len(times_s) for row, ok in zip(values, reached, strict=True)]

    notes = (
        [
            f"no input of the data reached layer(s) {', '.join(not_reached)} (an If branch it never takes, or a "
            "Loop body it never runs): no MVM error (null); use data that takes every branch"
        ]
        if not_reached
        else []
    )
    return MVMErrorResult(
        model=str(model),
        chips=chips,
        compensation=session.compensation.value,
        times_s=times_s,
        layers=[layer.name for layer in session.layers],
        shapes=[list(weights[layer.name].shape) for layer in session.layers],
        error_mean=per_layer(err.mean(axis=2)),
        error_std=per_layer(err.std(axis=2)),
        metric=name,
        metric_baseline=base,
        metric_mean=scores.mean(axis=1).tolist() if task is not None else None,
        metric_std=scores.std(axis=1).tolist() if task is not None else None,
        not_reached=not_reached,
        notes=notes,
    )


def _layer_inputs(session: AnalogSession, runs: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Every analog layer's FP32 input vectors over the runs: one run as the probe gives them; several (a
    fixed-batch model) gathered as (vectors, K). A layer no run reaches has no vectors."""
    if len(runs) == 1:
        return session.layer_inputs(runs[0])
    per_run = [session.layer_inputs(feeds) for feeds in runs]
    return {
        layer.name: np.concatenate([xs[layer.name].reshape(-1, xs[layer.name].shape[-1]) for xs in per_run])
        for layer in session.layers
    }
