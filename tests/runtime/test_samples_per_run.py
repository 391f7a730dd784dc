"""A large batch runs in cache-sized parts (runtime/samples_per_run.py, AnalogSession.split)."""

from __future__ import annotations

import numpy as np
import pytest

from anacompile.compiler import compile_model
from anacompile.crossbar.periphery import get_periphery
from anacompile.evaluate.datasets import load_digits_split
from anacompile.runtime.samples_per_run import (
    MAX_PART_SAMPLES,
    MIN_PART_SAMPLES,
    RUN_BLOCK_MB,
    part_bounds,
    part_samples,
    periphery_copies,
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
    assert periphery_copies(lean.replace(out_noise=0.0)) == 1


def test_part_samples_follow_the_block_between_the_bounds():
    standard = get_periphery("standard")
    # the digits CNN's conv2: 32 channels x 64 positions; 2 MiB / (4 B x 5 x 2048) = 51 samples
    assert part_samples(2048, standard) == int(RUN_BLOCK_MB * 2**20 // (4 * 5 * 2048)) == 51
    assert part_samples(2048, standard.replace(ir_drop=0.0, read_noise=0.0)) == 128  # 2 copies: 128 (the most)
    assert part_samples(10**6, standard) == MIN_PART_SAMPLES
    assert part_samples(10, standard) == MAX_PART_SAMPLES
    assert part_samples(0, standard) == MAX_PART_SAMPLES


@pytest.mark.parametrize("samples,part", [(540, 51), (540, 540), (100, 32), (33, 32), (1000, 64), (7, 3), (1, 32)])
def test_part_bounds_are_the_fewest_parts_differing_by_at_most_one(samples, part):
    bounds = part_bounds(samples, part)
    sizes = np.diff(bounds)
    assert bounds[0] == 0 and bounds[-1] == samples
    assert len(sizes) == -(-samples // part) and sizes.max() <= part and sizes.max() - sizes.min() <= 1


def test_the_session_splits_the_digits_cnn_in_parts_of_its_rule(cnn):
    s = AnalogSession(cnn, chip_seed=1, t_inference=1.0, intra_op_threads=1)
    parts = s.split(_images(540), s.output_names)
    assert [len(p["input"]) for p in parts] == list(np.diff(part_bounds(540, 51)))
    assert s.split(_images(51), s.output_names) is None  # one part: whole
    assert s.split(_images(MIN_PART_SAMPLES), s.output_names) is None


def test_parts_change_nothing_with_the_noise_off(tmp_path):
    out = tmp_path / "cnn_quiet.onnx"
    compile_model(MODELS / "digits_cnn_hwa.onnx", out, calibration="digits", periphery_overrides=NOISE_OFF)
    s = AnalogSession(out, chip_seed=4, t_inference=86400.0, intra_op_threads=1)
    x = _images(540)
    assert s.split(x, s.output_names) is not None
    whole = s.run(x)[0]  # 11 parts of 49-50
    by_30 = np.concatenate([s.run({"input": x["input"][i : i + 30]})[0] for i in range(0, 540, 30)])  # never split
    assert np.array_equal(whole, by_30)
