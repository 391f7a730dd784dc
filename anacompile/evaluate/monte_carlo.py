"""``evaluate``: task accuracy over time since programming, over many simulated chips.

A chip is one programming of the compiled model with its own seed (chip k of experiment ``seed``). For
each chip and each time t the chip's effective weights are computed once (drift, 1/f read noise, drift
compensation) and the whole data set runs through onnxruntime. Results are mean +- std over chips per t,
beside the FP32 baseline of the source model (Joshi et al. 2020 and Mackin et al. 2022 report 25 chips).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anacompile.errors import DataError
from anacompile.evaluate.data import load_feeds
from anacompile.evaluate.times import format_time, parse_times
from anacompile.model_io import atomic_output, load_proto
from anacompile.runtime.session import AnalogSession

__all__ = ["EvaluationResult", "accuracy", "evaluate"]


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
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        raise DataError(f"Output of shape {list(logits.shape)} does not fit {labels.shape[0]} labels; "
                        "evaluate expects class scores (N, classes).")
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def evaluate(model: str | os.PathLike[str], data: str | os.PathLike[str] = "digits",
             times: str | list = "1s,1h,1d,1y", chips: int = 25, seed: int | None = None,
             compensation: str | None = None, progress=None, batch_size: int = 4096) -> EvaluationResult:
    """Program ``chips`` chips and measure the task accuracy of each at every time.

    Args:
        model: compiled model.
        data: built-in set (``digits``: its fixed test split) or an .npz with the model inputs and ``labels``.
        times: times since programming (``"1s,1h,1d,1y"`` or seconds).
        chips: number of simulated chips.
        seed: experiment seed (default: the compile seed).
        compensation: drift compensation override (``none``, ``global``, ``column``).
        progress: optional callable ``progress(done, total)`` called after every (chip, time).
        batch_size: samples per onnxruntime run.
    """
    times_s = parse_times(times)
    if chips < 1:
        raise DataError(f"--chips {chips}: need at least one chip.")
    proto = load_proto(model)
    feeds, labels = load_feeds(data, proto, part="test")
    if labels is None:
        raise DataError(f"Data {data!r} has no 'labels' array; accuracy needs labels.")
    session = AnalogSession(model, chip_seed=0, seed=seed, compensation=compensation)
    out = session.output_names[0]

    def run(fn) -> np.ndarray:
        n = labels.shape[0]
        parts = [fn({k: v[i:i + batch_size] for k, v in feeds.items()})[0] for i in range(0, n, batch_size)]
        return np.concatenate(parts, axis=0)

    baseline = accuracy(run(session.run_digital), labels)
    acc = np.zeros((chips, len(times_s)))
    total, done = chips * len(times_s), 0
    for chip in range(chips):
        session.program(chip)
        for j, t in enumerate(times_s):
            session.set_time(t)
            acc[chip, j] = accuracy(run(lambda f: session.run(f, [out])), labels)
            done += 1
            if progress is not None:
                progress(done, total)
    return EvaluationResult(
        model=str(model), data=str(data), chips=chips, seed=session.seed,
        compensation=session.compensation.value, baseline=baseline, times_s=times_s,
        accuracy_mean=acc.mean(axis=0).tolist(), accuracy_std=acc.std(axis=0).tolist(), accuracy=acc.tolist(),
    )
