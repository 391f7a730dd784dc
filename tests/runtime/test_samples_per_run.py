"""Samples per onnxruntime run fitted to the cache (runtime/samples_per_run.py, evaluate's default)."""

from __future__ import annotations

import numpy as np
import pytest

from anacompile.compiler import compile_model
from anacompile.crossbar.periphery import get_periphery
from anacompile.evaluate.datasets import load_digits_split
from anacompile.evaluate.metrics import DataMetric, fit_to_cache
from anacompile.evaluate.monte_carlo import evaluate
from anacompile.runtime.samples_per_run import (
    MIN_SAMPLES_PER_RUN,
    balanced_chunk,
    outputs_per_sample,
    periphery_copies,
    samples_per_run,
)
from anacompile.runtime.session import AnalogSession
from tests.conftest import MODELS

NOISE_OFF = ["read_noise=0", "ir_drop=0", "out_noise=0"]


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    out = tmp_path_factory.mktemp("spr") / "cnn.onnx"
    compile_model(MODELS / "digits_cnn_hwa.onnx", out, calibration="digits")
    return out


def _images(n: int) -> dict[str, np.ndarray]:
    return {"input": load_digits_split()[1].x[:n].reshape(-1, 1, 8, 8)}


def test_periphery_copies_count_the_output_sized_tensors_of_the_chain():
    standard = get_periphery("standard")
    assert periphery_copies(standard) == 5  # MVM, IR-drop MVM, its a, read-noise variance, noise
    lean = standard.replace(ir_drop=0.0, read_noise=0.0)
    assert periphery_copies(lean) == 2  # MVM, noise
    quiet = lean.replace(out_noise=0.0)
    assert periphery_copies(quiet) == 1


def test_outputs_per_sample_is_the_largest_layer_and_independent_of_the_probe(cnn):
    s = AnalogSession(cnn, chip_seed=1, t_inference=1.0, intra_op_threads=1)
    # conv2: 32 output channels at 8 x 8 positions; conv1 16 x 64; fc 10
    assert outputs_per_sample(s, _images(1), 1) == 32 * 64
    assert outputs_per_sample(s, _images(7), 7) == 32 * 64


@pytest.mark.parametrize("samples,most", [(540, 51), (540, 540), (100, 32), (33, 32), (1000, 64), (7, 3)])
def test_chunks_are_the_fewest_runs_and_the_smallest_such_chunk(samples, most):
    chunk = balanced_chunk(samples, most)
    runs = -(-samples // most)  # the fewest runs of at most `most` samples
    assert chunk <= most and -(-samples // chunk) == runs
    assert chunk == 1 or -(-samples // (chunk - 1)) > runs  # one sample fewer would need another run


def test_samples_per_run_follows_the_cache_bound(cnn):
    s = AnalogSession(cnn, chip_seed=1, t_inference=1.0, intra_op_threads=1)
    per, copies = 32 * 64, periphery_copies(s.periphery)
    # 2 MiB / (4 B x 5 copies x 2048 outputs) = 51 samples -> 540 in 11 balanced runs of at most 50
    assert samples_per_run(s, _images(1), 1, 540, bound_mb=2.0) == balanced_chunk(540, 2 * 2**20 // (4 * copies * per))
    assert samples_per_run(s, _images(1), 1, 540, bound_mb=2.0) == 50
    # a bound 4x larger: 4x the samples (204 -> 3 runs of 180)
    assert samples_per_run(s, _images(1), 1, 540, bound_mb=8.0) == 180
    # never below the minimum, never above the study
    assert samples_per_run(s, _images(1), 1, 540, bound_mb=0.01) == balanced_chunk(540, MIN_SAMPLES_PER_RUN)
    assert samples_per_run(s, _images(1), 1, 540, bound_mb=1e6) == 540
    assert samples_per_run(s, _images(1), 1, 20, bound_mb=0.01) == 20


def test_fit_to_cache_sets_the_metric_and_leaves_fixed_batch_models(cnn, tmp_path):
    s = AnalogSession(cnn, chip_seed=1, t_inference=1.0, intra_op_threads=1)
    split = load_digits_split()[1]
    m = DataMetric("accuracy", _images(540), split.y[:540].astype(np.int64))
    fit_to_cache(m, s, bound_mb=2.0)
    assert m.batch_size == 50 and len(m.batches()) == 11
    # a model whose input fixes the batch (specs say 1): batch_size is moot, left as is
    fixed = DataMetric("accuracy", _images(540), split.y[:540], specs=[("input", [1, 1, 8, 8], np.float32)])
    fit_to_cache(fixed, s, bound_mb=2.0)
    assert fixed.batch_size == 4096 and len(fixed.batches()) == 540


def test_evaluate_default_is_the_fitted_chunk_bit_for_bit(cnn, monkeypatch):
    from anacompile.runtime import samples_per_run as spr

    monkeypatch.setattr(spr, "default_batch_memory_mb", lambda: 2.0)
    # a continuous metric (cosine to the FP32 outputs), which sees every noise draw
    auto = evaluate(cnn, "digits", "1s,1d", chips=2, threads=1, metric="cosine")
    fixed = evaluate(cnn, "digits", "1s,1d", chips=2, threads=1, metric="cosine", batch_size=50)
    whole = evaluate(cnn, "digits", "1s,1d", chips=2, threads=1, metric="cosine", batch_size=4096)
    assert auto.to_dict() == fixed.to_dict()
    assert whole.to_dict() != fixed.to_dict()  # the chunking draws one noise offset per run


def test_chunking_changes_nothing_with_the_noise_off(tmp_path):
    out = tmp_path / "cnn_quiet.onnx"
    compile_model(MODELS / "digits_cnn_hwa.onnx", out, calibration="digits", periphery_overrides=NOISE_OFF)
    runs = {
        b: evaluate(out, "digits", "1s,1y", chips=2, threads=1, metric="cosine", batch_size=b).accuracy_mean
        for b in (None, 37, 4096)
    }
    assert runs[None] == runs[37] == runs[4096]
