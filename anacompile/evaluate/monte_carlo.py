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

import hashlib
import json
import logging
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anacompile.contract import read_report
from anacompile.crossbar.periphery import Compensation, Periphery, get_periphery, parse_overrides
from anacompile.errors import AnacompileError, ConfigError, DataError
from anacompile.evaluate.driver import batched_rows, chip_row
from anacompile.evaluate.metrics import Metric, resolve_metric, score, top1_accuracy
from anacompile.evaluate.times import format_time, parse_times
from anacompile.feeds import load_feeds
from anacompile.limits import MAX_CHIPS, MAX_WORKERS, check_count, check_index
from anacompile.model_io import ModelInput, atomic_output, is_in_memory, load_proto, model_file, model_label
from anacompile.runtime.providers import resolve_providers
from anacompile.runtime.session import AnalogSession

__all__ = ["COMPENSATION_MODES", "CSV_COLUMNS", "EvaluationInterrupted", "EvaluationResult", "accuracy", "evaluate"]

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
    periphery_overrides: tuple[tuple[str, Any], ...]  # as given (the report, the job's CSV key)
    batch_size: int
    threads: int | None
    strategy: str | None = None
    programming: str | None = None
    metric: str | Metric | None = None
    batch_memory_mb: float | None = None
    providers: tuple[str, ...] | None = None
    periphery: Periphery | None = None  # the periphery in force, parsed once (None: the file's)


_LOCAL = threading.local()  # one session per thread: Dask workers may run several tasks in one process


def _setup(job: _Job) -> dict[str, Any]:
    """Session, data and AdaBS calibration set for a job (once per process and thread)."""
    if not hasattr(_LOCAL, "worker"):
        _LOCAL.worker = {}
    _WORKER = _LOCAL.worker
    if _WORKER.get("job") == job:
        return _WORKER
    proto = load_proto(job.model)
    mode = "global" if job.compensation == "adabs" else job.compensation
    session = AnalogSession(
        job.model,
        chip_seed=None,
        seed=job.seed,
        compensation=mode,
        periphery=job.periphery,
        intra_op_threads=job.threads,
        strategy=job.strategy,
        programming=job.programming,
        providers=list(job.providers) if job.providers else None,
    )
    metric, name = resolve_metric(
        job.metric, data=job.data, proto=proto, digital_run=session.run_digital, batch_size=job.batch_size
    )
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


def _chips_accuracies(job: _Job, chips: list[int]):
    """``(chip, metric per time)`` for each of ``chips``: many (chip, t) pairs per onnxruntime call where
    the metric and model allow (:func:`~anacompile.evaluate.driver.batched_rows`), else one chip at a time."""
    w = _setup(job)
    if w["calib"] is not None:  # AdaBS: BatchNorm statistics of its own per (chip, t)
        return ((chip, _chip_accuracies(job, chip)) for chip in chips)
    return batched_rows(w["session"], chips, job.times_s, w["metric"], job.batch_memory_mb, w["name"])


def _chips_list(job: _Job, chips: list[int]) -> list[tuple[int, list[float]]]:
    """:func:`_chips_accuracies` as a list (what a worker process returns)."""
    return list(_chips_accuracies(job, chips))


def evaluate(
    model: ModelInput,
    data: str | os.PathLike[str] | None = "digits",
    times: str | list = "1s,1h,1d,1y",
    chips: int = 25,
    seed: int | None = None,
    compensation: str | None = None,
    periphery_overrides: dict | list[str] | None = None,
    workers: int = 1,
    progress=None,
    csv_path: str | os.PathLike[str] | None = None,
    batch_size: int = 4096,
    strategy: str | None = None,
    programming: str | None = None,
    threads: int | None = None,
    metric: str | Metric | None = None,
    resume: str | os.PathLike[str] | None = None,
    batch_memory_mb: float | None = None,
    scheduler: Any = None,
    providers: str | list[str] | None = None,
) -> EvaluationResult:
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
        batch_size: samples per ``session.run`` call (the session cuts a run into cache-sized parts itself,
            :mod:`anacompile.runtime.samples_per_run`).
        strategy: re-map the weights with another programming strategy (``single``, ``dual``, a .json).
        programming: chip programming method (``gaussian``, ``verify``; default: the compiled one).
        threads: onnxruntime threads per worker (default: the cores divided among the workers).
        metric: ``accuracy``, ``agreement``, ``cosine``, ``nmse``, ``"FILE.py:FUNCTION"`` or a callable
            ``metric(run) -> float`` (:mod:`anacompile.evaluate.metrics`); default ``accuracy`` when the data
            has labels, else ``agreement``. The FP32 baseline is the same metric on the FP32 model. With
            several workers a callable must be picklable (a module-level function).
        resume: a CSV an interrupted evaluation with the same model and options streamed (``csv_path``):
            its chips are taken from it, the others evaluated and appended to it; the result equals an
            uninterrupted run's. Rows of another evaluation are refused (the CSV's ``run`` column).
        batch_memory_mb: bound (MiB) on the estimated memory of one onnxruntime call that runs many (chip, t)
            pairs on a leading axis (:mod:`anacompile.runtime.chip_batch`; default: one core's L2 cache,
            :func:`~anacompile.runtime.chip_batch.default_batch_memory_mb`); 0 runs one pair per call.
            Results are identical either way (bit for bit); AdaBS, callable metrics and recurrent models
            always run one pair per call.
        scheduler: run the chips on an existing Dask cluster instead (``"dask://HOST:PORT"`` or a
            ``distributed.Client``; :mod:`anacompile.evaluate.cluster`): the tasks of ``workers`` (chunks of
            chips), the same result; ``workers`` is then ignored (the cluster's workers run the chips).
        providers: onnxruntime execution providers of the sessions (``"cuda"``, ``["cuda", "cpu"]``, full
            names; :mod:`anacompile.runtime.providers`); default the CPU. One that is not available is a
            one-line ConfigError naming the available ones.

    Interruption: every chip's rows are written with one ``write`` once the chip is done, so a Ctrl-C or a
    killed process leaves whole rows (a partial last line, from a kill during that write, is dropped on
    resume); Ctrl-C raises :class:`EvaluationInterrupted` naming the CSV, a worker that dies an
    :class:`~anacompile.errors.AnacompileError`; no JSON is written by either.
    """

    if is_in_memory(model):  # the session and the worker processes read the model by path
        with model_file(model, "model.analog.onnx") as path:
            result = evaluate(
                path,
                data,
                times,
                chips,
                seed,
                compensation,
                periphery_overrides,
                workers,
                progress,
                csv_path,
                batch_size,
                strategy,
                programming,
                threads,
                metric,
                resume,
                batch_memory_mb,
                scheduler,
                providers,
            )
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
            raise ConfigError(
                f"metric={metric!r} cannot be sent to worker processes ({type(err).__name__}); "
                "use workers=1, a module-level function, or 'FILE.py:FUNCTION'."
            ) from err
    resolved = tuple(resolve_providers(providers)) if providers is not None else None  # fail here, in one line
    overrides = parse_overrides(periphery_overrides)
    report = read_report(load_proto(model))
    stored = get_periphery(Periphery.from_dict(report.periphery), overrides or None)
    mode = compensation or stored.drift_compensation.value
    job = _Job(
        str(model),
        None if data is None else str(data),
        tuple(times_s),
        seed,
        mode,
        tuple(sorted(overrides.items())),
        batch_size,
        threads or (None if workers == 1 else max(1, (os.cpu_count() or 1) // workers)),
        strategy,
        programming,
        metric,
        None if batch_memory_mb is None else _check_memory(batch_memory_mb),
        resolved,
        stored if overrides else None,  # parsed once here; every worker's session gets this object
    )
    acc = np.zeros((chips, len(times_s)))
    if resume is not None:
        if csv_path is not None and Path(csv_path).resolve() != Path(resume).resolve():
            raise ConfigError(f"--resume {resume} continues that CSV; drop --csv {csv_path} or give the same file.")
        csv_path = resume
    run_key = _run_key(job) if csv_path is not None else ""
    done_rows = _read_rows(Path(resume), run_key, times_s, chips) if resume is not None else {}
    for chip, row in done_rows.items():
        acc[chip] = row
    todo = [c for c in range(chips) if c not in done_rows]
    handle = _csv_open(csv_path, append=resume is not None)
    if scheduler is not None and todo:  # the chips go to the Dask cluster, submitted before the baseline runs
        from anacompile.evaluate.cluster import ClusterPool

        cluster = ClusterPool(scheduler, _chips_list, job, todo, WORKER_CHUNK)
        pool = cluster, cluster.futures
    else:
        pool = _start_pool(job, todo, workers)  # workers start (and import) while the baseline runs here
    finished = len(done_rows)
    try:
        w = _setup(job)  # this process's session: the baseline here, and the chips too with one worker
        session = w["session"]
        notes = []
        if mode == "adabs" and not session.batchnorms:
            notes.append("adabs: the model has no BatchNormalization; adabs is global drift compensation here")
        baseline = score(w["metric"], session.run_digital, w["name"])
        experiment_seed = session.seed
        if pool is not None and scheduler is not None:
            results = pool[0].results()
        else:
            results = _collect(pool) if pool is not None else _chips_accuracies(job, todo)
        for chip, row in results:
            acc[chip] = row
            finished += 1
            if handle is not None:
                _write_rows(handle, chip, times_s, mode, row, run_key)
            if progress is not None:
                progress(finished * len(times_s), chips * len(times_s))  # (chip, time) evaluations
    except KeyboardInterrupt as err:
        where = (
            (
                f"; the rows of the {finished} finished chips are in {csv_path}: continue with --resume {csv_path} "
                "and the same options"
            )
            if csv_path is not None
            else " (stream rows with --csv to resume later)"
        )
        raise EvaluationInterrupted(
            f"evaluation interrupted after {finished} of {chips} chips{where}; no JSON or plot was written."
        ) from err
    finally:
        if handle is not None:
            handle.close()
        if pool is not None:
            pool[0].shutdown(cancel_futures=True)
    return EvaluationResult(
        model=str(model),
        data=str(data),
        chips=chips,
        seed=experiment_seed,
        compensation=mode,
        metric=w["name"],
        baseline=baseline,
        times_s=times_s,
        accuracy_mean=acc.mean(axis=0).tolist(),
        accuracy_std=acc.std(axis=0).tolist(),
        accuracy=acc.tolist(),
        periphery_overrides=overrides,
        notes=notes,
        strategy=strategy,
        programming=programming,
    )


def _start_pool(job: _Job, chips: list[int], workers: int):
    """For several workers: a process pool with every chip submitted; ``None`` for in-process evaluation."""
    if workers == 1 or not chips:
        return None
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # onnxruntime's threads do not survive fork
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    size = max(1, min(WORKER_CHUNK, -(-len(chips) // (2 * workers))))  # a few chunks per worker
    chunks = [chips[i : i + size] for i in range(0, len(chips), size)]
    return pool, {pool.submit(_chips_list, job, chunk): chunk for chunk in chunks}


WORKER_CHUNK = 16
"""Most chips a worker evaluates per task (their pairs share onnxruntime calls; rows return per task)."""


def _check_memory(value) -> float:
    try:
        bound = float(value)
    except (TypeError, ValueError):
        bound = float("nan")
    if not np.isfinite(bound) or bound < 0:
        raise ConfigError(f"--batch-memory {value!r}: give a bound in MiB >= 0 (0: one chip per call).")
    return bound


def _collect(pool):
    """Yield (chip, accuracies) as the pool's chips finish."""
    from concurrent.futures import as_completed
    from concurrent.futures.process import BrokenProcessPool

    _, futures = pool
    try:
        for fut in as_completed(futures):
            yield from fut.result()
    except BrokenProcessPool as err:
        raise AnacompileError(
            f"a worker process died ({err}); the rows of the chips finished so far are in the "
            "--csv file, if one was given: continue with --resume FILE."
        ) from err


CSV_COLUMNS = ("chip", "time_s", "compensation", "accuracy", "run")
"""Columns of the streamed CSV: one row per (chip, time); ``accuracy`` holds the metric's value, ``run`` a
key of the evaluation's settings (model file, data, times, seed, compensation, overrides, strategy,
programming, metric) that ``--resume`` checks."""


class EvaluationInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`evaluate`: the message says where the finished chips' rows are."""


def _run_key(job: _Job) -> str:
    """12 hex digits identifying an evaluation's settings (not the number of chips)."""
    h = hashlib.sha256()
    with open(job.model, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    metric = (
        job.metric
        if job.metric is None or isinstance(job.metric, str)
        else f"{getattr(job.metric, '__module__', '')}.{getattr(job.metric, '__qualname__', repr(job.metric))}"
    )
    settings = [
        job.data,
        [repr(t) for t in job.times_s],
        job.seed,
        job.compensation,
        repr(job.periphery_overrides),
        job.strategy,
        job.programming,
        metric,
    ]
    h.update(json.dumps(settings, default=str).encode())
    return h.hexdigest()[:12]


def _csv_open(path, append: bool):
    """The CSV as an unbuffered binary file (each chip's rows go out in one write); the header when new."""
    if path is None:
        return None
    handle = open(path, "ab" if append else "wb", buffering=0)  # noqa: SIM115 (closed by evaluate)
    if not append:
        handle.write((",".join(CSV_COLUMNS) + "\n").encode())
    return handle


def _write_rows(handle, chip: int, times_s, mode: str, row, run_key: str) -> None:
    text = "".join(f"{chip},{t!r},{mode},{float(a)!r},{run_key}\n" for t, a in zip(times_s, row, strict=True))
    handle.write(text.encode())


def _read_rows(path: Path, run_key: str, times_s: list[float], chips: int) -> dict[int, list[float]]:
    """The finished chips of a streamed CSV: chip -> metric per time (whole chips only).

    A partial last line (the process was killed while writing it) is cut off the file; anything else that
    does not fit this evaluation is refused with the line number.
    """
    if not path.is_file():
        raise ConfigError(f"--resume {path}: no such file.")
    raw = path.read_bytes()
    if not raw.endswith(b"\n") and b"\n" in raw:
        raw = raw[: raw.rindex(b"\n") + 1]  # a partial last line: cut below, with the rest of its chip
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ConfigError(f"--resume {path} is not a CSV written by evaluate --csv ({err}).") from err
    if not lines or lines[0].strip() != ",".join(CSV_COLUMNS):
        raise ConfigError(
            f"--resume {path}: the first line is not the header {','.join(CSV_COLUMNS)}; give the CSV "
            "that evaluate --csv wrote."
        )
    index = {repr(t): j for j, t in enumerate(times_s)}
    rows: dict[int, dict[int, float]] = {}
    for n, line in enumerate(lines[1:], start=2):
        parts = line.split(",")
        if len(parts) != len(CSV_COLUMNS):
            raise ConfigError(
                f"--resume {path}, line {n}: expected {len(CSV_COLUMNS)} columns; the file is not from evaluate --csv."
            )
        chip_text, t_text, _, value_text, key = parts
        if key != run_key:
            raise ConfigError(
                f"--resume {path}, line {n}: the rows are from another evaluation (other model, data, "
                "times, seed or options); resume with the options of the interrupted run."
            )
        try:
            chip, value = int(chip_text), float(value_text)
            t = repr(float(t_text))
        except ValueError as err:
            raise ConfigError(f"--resume {path}, line {n}: {line!r} is not chip,time,compensation,value.") from err
        if not 0 <= chip < chips or t not in index or not np.isfinite(value):
            raise ConfigError(
                f"--resume {path}, line {n}: chip {chip} at {t_text} s does not belong to this "
                f"evaluation of {chips} chips at {len(times_s)} times."
            )
        rows.setdefault(chip, {})[index[t]] = value
    done = {chip: [r[j] for j in range(len(times_s))] for chip, r in rows.items() if len(r) == len(times_s)}
    keep = [lines[0]] + [line for line in lines[1:] if int(line.split(",")[0]) in done]
    if len(keep) != len(lines) or raw != path.read_bytes():  # only whole chips stay (rewritten atomically)
        with atomic_output(path) as tmp:
            Path(tmp).write_text("".join(f"{line}\n" for line in keep), encoding="utf-8")
    return done
