"""A run in parts, concurrently (AnalogSession(parallel=k)): bit for bit its parts run one by one, for any k."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from anacompile.compiler import compile_model
from anacompile.errors import ConfigError
from anacompile.evaluate.datasets import load_digits_split
from anacompile.runtime.samples_per_run import MIN_PART_SAMPLES
from anacompile.runtime.session import AnalogSession
from tests.conftest import MODELS
from tests.runtime.test_chip_batch import _batch_mixing_model, _one_by_one, _pairs

SHAPES = {"mlp": (-1, 64), "cnn": (-1, 1, 8, 8), "lstm": (-1, 8, 8), "transformer": (-1, 8, 8)}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parallel")
    out = {}
    for name in SHAPES:
        out[name] = folder / f"{name}.onnx"
        compile_model(MODELS / f"digits_{name}_hwa.onnx", out[name], calibration="digits")
    return out


def _x(name: str, n: int) -> dict[str, np.ndarray]:
    x = load_digits_split()[1].x
    return {"input": np.resize(x, (n, x.shape[1])).reshape(SHAPES[name])}  # the test split, repeated to n


def _parts_one_by_one(session, feeds):
    outs = [session.run(part) for part in session.split(feeds, session.output_names)]
    return [np.concatenate([o[i] for o in outs], axis=0) for i in range(len(outs[0]))]


@pytest.mark.parametrize("name,n", [("cnn", 300), ("transformer", 300), ("mlp", 2000)])
def test_a_run_is_its_parts_run_one_by_one_for_any_parallel(compiled, name, n):
    feeds = _x(name, n)
    sessions = [
        AnalogSession(compiled[name], chip_seed=2, t_inference=3600.0, parallel=k, intra_op_threads=t)
        for k, t in ((1, 1), (2, None), (3, None), (1, 2))
    ]
    reference = AnalogSession(compiled[name], chip_seed=2, t_inference=3600.0, parallel=1, intra_op_threads=1)
    assert reference.split(feeds, reference.output_names) is not None
    for _ in range(3):  # successive runs: the parts draw their noise offsets in order, run after run
        want = _parts_one_by_one(reference, feeds)
        for s in sessions:
            got = s.run(feeds)
            assert len(got) == len(want)
            assert all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(got, want, strict=True))


def test_small_batches_and_other_outputs_run_whole(compiled):
    s = AnalogSession(compiled["cnn"], chip_seed=1, t_inference=1.0, parallel=2)
    one = AnalogSession(compiled["cnn"], chip_seed=1, t_inference=1.0, parallel=1)
    small = _x("cnn", MIN_PART_SAMPLES)
    assert s.split(small, s.output_names) is None
    assert np.array_equal(s.run(small)[0], one.run(small)[0])
    big = _x("cnn", 128)
    bn_input = s.batchnorms[0].input  # an intermediate tensor (AdaBS): whole
    assert s.split(big, [bn_input]) is None
    assert s.split(big, s.output_names) is not None


def test_a_model_that_mixes_samples_is_not_split(tmp_path):
    for mixing in (True, False):
        src = tmp_path / f"m{mixing}.onnx"
        _batch_mixing_model(src, width=2048)
        if not mixing:  # the same model without the batch mean: it splits
            m = onnx.load(src)
            del m.graph.node[1:]
            m.graph.node[0].output[0] = "logits"
            onnx.save(m, src)
        out = tmp_path / f"m{mixing}.analog.onnx"
        compile_model(src, out, calibration="digits")
        s = AnalogSession(out, 0, parallel=2)
        feeds = {"input": load_digits_split()[1].x[:300]}
        assert (s.split(feeds, s.output_names) is None) == mixing
        if mixing:
            assert np.array_equal(s.run(feeds)[0], AnalogSession(out, 0, parallel=1).run(feeds)[0])


def test_chip_batch_splits_as_the_session_does(compiled):
    s = AnalogSession(compiled["transformer"], chip_seed=None, parallel=2)
    feeds = _x("transformer", 300)
    assert s.split(feeds, s.output_names) is not None
    chips, times = [0, 1], [1.0, 86400.0]
    together = s.chip_batch().run(_pairs(s, chips, times), feeds)
    one = _one_by_one(s, chips, times, feeds)
    for a, b in zip(together, one, strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_parallel_must_be_positive(compiled):
    with pytest.raises(ConfigError, match="parallel"):
        AnalogSession(compiled["mlp"], parallel=0)


def test_default_parallel_follows_the_threads(compiled):
    from anacompile.runtime.session import usable_cores

    assert AnalogSession(compiled["mlp"], intra_op_threads=1).parallel == 1
    assert AnalogSession(compiled["mlp"]).parallel == usable_cores()
