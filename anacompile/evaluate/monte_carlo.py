"""``evaluate``: task accuracy over time since programming, over many simulated chips.

A chip is one programming of the compiled model with its own seed (chip k of experiment ``seed``). For
each chip and each time t the chip's effective weights are computed once (drift, 1/f read noise, drift
compensation) and the whole data set runs through onnxruntime. Results are mean +- std over chips per t,
beside the FP32 baseline of the source model (Joshi et al. 2020 and Mackin et al. 2022 report 25 chips).

Compensation modes: ``none``, ``global`` and ``column`` drift compensation (:mod:`anacompile.runtime`), and
``adabs``: global compensation plus BatchNormalization statistics re-estimated at every t on a
calibration set passed through the drifted chip (Joshi et al. 2020, AdaBS). Chips run in parallel worker
processes (``workers``); every chip's numbers depend only on its seed, so results do not depend on the
number of workers.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anacompile.contract import read_report
from anacompile.crossbar.periphery import Compensation, Periphery, get_periphery, parse_overrides
from anacompile.errors import ConfigError, DataError
from anacompile.evaluate.driver import chip_row
from anacompile.evaluate.metrics import Metric, resolve_metric, score, top1_accuracy
from anacompile.evaluate.times import format_time, parse_times
from anacompile.feeds import load_feeds
from anacompile.limits import MAX_CHIPS, MAX_WORKERS, check_count, check_index
from anacompile.model_io import ModelInput, atomic_output, is_in_memory, load_proto, model_file, model_label
from anacompile.runtime.session import AnalogSession

__all__ = ["COMPENSATION_MODES", "EvaluationResult", "accuracy", "evaluate"]

logger = logging.getLogger(__name__)
COMPENSATION_MODES = tuple(m.value for m in Compensation)
ADABS_SAMPLES = 256
"""Calibration samples for AdaBS (from the training split of a built-in set, else the data's first rows)."""


@dataclass
class EvaluationResult:
    """Accuracy over time: per chip and time, and mean +- std over chips."""

    model: str
    data: str
    chips: int
    seed: int
    compensation: str
    baseline: float
    times_s: list[float]
    accuracy_mean: list[float]
    accuracy_std: list[float]
    accuracy: list[list[float]] = field(default_factory=list)  # [chip][time]
    metric: str = "accuracy"
    periphery_overrides: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    strategy: str | None = None
    programming: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        d = asdict(self)
        d["times"] = [format_time(t) for t in self.times_s]
        return d

    def save_json(self, path: str | os.PathLike[str]) -> None:
        """Write the JSON atomically."""
        with atomic_output(path) as tmp:
            Path(tmp).write_text(json.dumps(self.to_dict(), indent=2))


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of class scores (N, C) against integer labels (N,)."""
    return top1_accuracy(logits, labels)


@dataclass(frozen=True)
class _Job:
    """Everything a worker needs to evaluate chips (picklable)."""

    model: str
    data: str | None
    times_s: tuple[float, ...]
    seed: int | None
    compensation: str
    periphery_overrides: tuple[tuple[str, Any], ...]
    batch_size: int
    threads: int | None
    strategy: str | None = None
    programming: str | None = None
    metric: str | Metric | None = None


_WORKER: dict[str, Any] = {}


def _setup(job: _Job) -> dict[str, Any]:
    """Session, data and AdaBS calibration set for a job (once per process)."""
    if _WORKER.get("job") == job:
        return _WORKER
    proto = load_proto(job.model)
    mode = "global" if job.compensation == "adabs" else job.compensation
    session = AnalogSession(job.model, chip_seed=None, seed=job.seed, compensation=mode,
                            periphery_overrides=dict(job.periphery_overrides) or None,
                            intra_op_threads=job.threads, strategy=job.strategy, programming=job.programming)
    metric, name = resolve_metric(job.metric, data=job.data, proto=proto, digital_run=session.run_digital,
                                  batch_size=job.batch_size)
    calib = None
    if job.compensation == "adabs":
        if job.data is None:
            raise DataError("adabs re-estimates BatchNorm statistics on calibration data: pass --data too.")
        part = "test" if str(job.data).endswith(".npz") else "train"
        calib, _ = load_feeds(job.data, proto, part=part, limit=ADABS_SAMPLES)
    _WORKER.clear()
    _WORKER.update(job=job, session=session, metric=metric, name=name, calib=calib)
    return _WORKER


def _chip_accuracies(job: _Job, chip: int) -> list[float]:
    """Program one chip and measure its metric at every time (runs in a worker or in-process)."""
    w = _setup(job)

    def adabs(session: AnalogSession) -> None:
        session.reset_batchnorm()
        session.recalibrate_batchnorm(w["calib"])

    def measure(session: AnalogSession, chip: int, t: float) -> float:
        return score(w["metric"], session.run, w["name"])

    return chip_row(w["session"], chip, job.times_s, measure, on_time=adabs if w["calib"] is not None else None)


def evaluate(model: ModelInput, data: str | os.PathLike[str] | None = "digits",
             times: str | list = "1s,1h,1d,1y", chips: int = 25, seed: int | None = None,
             compensation: str | None = None, periphery_overrides: dict | list[str] | None = None,
             workers: int = 1, progress=None, csv_path: str | os.PathLike[str] | None = None,
             batch_size: int = 4096, strategy: str | None = None, programming: str | None = None,
             threads: int | None = None, metric: str | Metric | None = None) -> EvaluationResult:
    """Program ``chips`` chips and measure the task metric of each at every time.

    Args:
        model: compiled model: a file, an ``onnx.ModelProto`` or an ``onnx_ir.Model``.
        data: built-in set (``digits``: its fixed test split) or an .npz with the model inputs (and
            ``labels`` for ``accuracy``); ``None`` with a callable metric that brings its own data.
        times: times since programming (``"1s,1h,1d,1y"`` or seconds).
        chips: number of simulated chips.
        seed: experiment seed (default: the compile seed).
        compensation: ``none``, ``global``, ``column`` or ``adabs`` (default: the compiled one).
        periphery_overrides: periphery keys to change for this evaluation (``{"adc_bits": 6}``).
        workers: parallel worker processes (chips are split between them).
        progress: optional callable ``progress(done, total)`` over chips x times, called after every chip.
        csv_path: stream one row per (chip, time) to this CSV file as chips finish.
        batch_size: samples per onnxruntime run.
        strategy: re-map the weights with another programming strategy (``single``, ``dual``, a .json).
        programming: chip programming method (``gaussian``, ``verify``; default: the compiled one).
        threads: onnxruntime threads per worker (default: the cores divided among the workers).
        metric: ``accuracy``, ``agreement``, ``cosine``, ``nmse``, ``"FILE.py:FUNCTION"`` or a callable
            ``metric(run) -> float`` (:mod:`anacompile.evaluate.metrics`); default ``accuracy`` when the data
            has labels, else ``agreement``. The FP32 baseline is the same metric on the FP32 model. With
            several workers a callable must be picklable (a module-level function).
    """

    if is_in_memory(model):  # the session and the worker processes read the model by path
        with model_file(model, "model.analog.onnx") as path:
            result = evaluate(path, data, times, chips, seed, compensation, periphery_overrides, workers, progress,
                              csv_path, batch_size, strategy, programming, threads, metric)
        result.model = model_label(model)
        return result
    times_s = parse_times(times)
    chips = check_count(chips, "--chips", MAX_CHIPS)
    workers = check_count(workers, "--workers", MAX_WORKERS)
    seed = None if seed is None else check_index(seed, "--seed")
    if compensation is not None:
        compensation = Compensation.parse(compensation).value
    if workers > 1 and callable(metric):
        import pickle

        try:
            pickle.dumps(metric)
        except Exception as err:  # lambdas, closures, local functions
            raise ConfigError(f"metric={metric!r} cannot be sent to worker processes ({type(err).__name__}); "
                              "use workers=1, a module-level function, or 'FILE.py:FUNCTION'.") from err
    overrides = parse_overrides(periphery_overrides)
    report = read_report(load_proto(model))
    stored = get_periphery(Periphery.from_dict(report.periphery), overrides or None)
    mode = compensation or stored.drift_compensation.value
    job = _Job(str(model), None if data is None else str(data), tuple(times_s), seed, mode,
               tuple(sorted(overrides.items())), batch_size,
               threads or (None if workers == 1 else max(1, (os.cpu_count() or 1) // workers)), strategy, programming,
               metric)
    acc = np.zeros((chips, len(times_s)))
    writer, handle = _csv_writer(csv_path)
    pool = _start_pool(job, chips, workers)  # workers start (and import) while the baseline runs here
    try:
        w = _setup(job)  # this process's session: the baseline here, and the chips too with one worker
        session = w["session"]
        notes = []
        if mode == "adabs" and not session.batchnorms:
            notes.append("adabs: the model has no BatchNormalization; adabs is global drift compensation here")
        baseline = score(w["metric"], session.run_digital, w["name"])
        experiment_seed = session.seed
        results = _collect(pool) if pool is not None else ((c, _chip_accuracies(job, c)) for c in range(chips))
        for done, (chip, row) in enumerate(results, start=1):
            acc[chip] = row
            if writer is not None:
                for t, a in zip(times_s, row, strict=True):
                    writer.writerow([chip, t, mode, a])
                handle.flush()
            if progress is not None:
                progress(done * len(times_s), chips * len(times_s))  # (chip, time) evaluations
    finally:
        if handle is not None:
            handle.close()
        if pool is not None:
            pool[0].shutdown(cancel_futures=True)
    return EvaluationResult(
        model=str(model), data=str(data), chips=chips, seed=experiment_seed, compensation=mode, metric=w["name"],
        baseline=baseline, times_s=times_s, accuracy_mean=acc.mean(axis=0).tolist(),
        accuracy_std=acc.std(axis=0).tolist(), accuracy=acc.tolist(), periphery_overrides=overrides, notes=notes,
        strategy=strategy, programming=programming,
    )


def _start_pool(job: _Job, chips: int, workers: int):
    """For several workers: a process pool with every chip submitted; ``None`` for in-process evaluation."""
    if workers == 1:
        return None
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # onnxruntime's threads do not survive fork
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    return pool, {pool.submit(_chip_accuracies, job, chip): chip for chip in range(chips)}


def _collect(pool):
    """Yield (chip, accuracies) as the pool's chips finish."""
    from concurrent.futures import as_completed

    _, futures = pool
    for fut in as_completed(futures):
        yield futures[fut], fut.result()


def _csv_writer(path):
    if path is None:
        return None, None
    handle = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115 (closed by evaluate)
    writer = csv.writer(handle)
    writer.writerow(["chip", "time_s", "compensation", "accuracy"])
    return writer, handle
