"""How many samples one onnxruntime run of an analog session takes (cache blocking of the periphery).

An analog layer's periphery is a chain of elementwise passes over its MVM outputs (IR-drop polynomial,
read-noise amplitude, noise, ADC, scales), each a full read and write of output-sized float32 tensors that
onnxruntime's CPU provider does not fuse. While the tensors of one run fit one core's L2 cache, a pass costs
about 0.2 ns per element; once they spill, every pass streams from memory (1.3 ns per element at 11 MB,
bench/README.md, issue 14). A study that scores N samples per (chip, t) therefore runs them in chunks:

    samples per run = clamp(bound / (4 bytes x copies x outputs per sample), MIN_SAMPLES_PER_RUN, N)

where ``outputs per sample`` is the largest top-level analog layer's MVM outputs for one sample (conv layers:
every output position; with bound management every pass), ``copies`` the output-sized float32 tensors the
periphery chain holds at once (:func:`periphery_copies`) and ``bound`` one core's L2 cache
(:func:`~anacompile.runtime.chip_batch.default_batch_memory_mb`). Layers inside Loop bodies (recurrent cells)
run one vector per sample and step, so their working set does not grow with the sequence and they do not
bound the chunk. Below :data:`MIN_SAMPLES_PER_RUN` samples the run's fixed cost (Python, onnxruntime's
per-node dispatch) outweighs the cache. The chunk is the smallest that needs no more runs than the bound
allows (:func:`balanced_chunk`: 540 samples at most 51 per run are 11 runs of 50, the last 40), so a study
sees at most two input shapes.

The samples of a chunk are the same samples, in the same order; only which noise-bank offsets a run draws
changes with the chunking (one draw per run), so results are reproducible from the seed for a given
chunking, and a metric's value changes only within its Monte Carlo spread.
"""

from __future__ import annotations

import math

import numpy as np

from anacompile.crossbar.periphery import Periphery
from anacompile.runtime.chip_batch import default_batch_memory_mb

__all__ = ["MIN_SAMPLES_PER_RUN", "balanced_chunk", "outputs_per_sample", "periphery_copies", "samples_per_run"]

MIN_SAMPLES_PER_RUN = 32
"""Fewest samples per run the automatic choice gives: on the digits CNN (one thread, 10 chips x 4 times, 540
test images) 32 and 16 samples per run were 1.1-1.3x slower than 64 (bench/README.md, issue 14)."""


def periphery_copies(periphery: Periphery) -> int:
    """Output-sized float32 tensors the periphery chain of one tile MVM holds at once: the MVM itself, the
    IR-drop MVM and its a (ir_drop > 0), the read-noise variance (read_noise > 0) and the fed noise."""
    return (
        1
        + (2 if periphery.ir_drop > 0 else 0)
        + (1 if periphery.read_noise > 0 else 0)
        + (1 if periphery.has_mvm_noise else 0)
    )


def outputs_per_sample(session, feeds: dict[str, np.ndarray], samples: int) -> int:
    """The largest top-level analog layer's MVM outputs for one sample of ``feeds`` (``samples`` samples)."""
    xs = session.layer_inputs(feeds)
    passes = session.periphery.bm_passes
    best = 0
    for layer in session.layers:
        if not layer.fed:  # inside a Loop body: one vector per sample and step (module docstring)
            continue
        vectors = int(np.prod(xs[layer.name].shape[:-1]))
        best = max(best, passes * layer.n_tiles * layer.n_out * vectors // max(samples, 1))
    return best


def balanced_chunk(samples: int, most: int) -> int:
    """The smallest chunk that splits ``samples`` into as few runs as chunks of ``most`` samples would."""
    runs = math.ceil(samples / max(1, most))
    return math.ceil(samples / max(1, runs))


def samples_per_run(
    session, probe: dict[str, np.ndarray], probe_samples: int, samples: int, bound_mb: float | None = None
) -> int:
    """Samples per onnxruntime run for a study over ``samples`` samples (module docstring).

    Args:
        session: an :class:`~anacompile.runtime.session.AnalogSession`.
        probe: feeds of ``probe_samples`` samples (e.g. the study's first run): its layer shapes give the
            outputs per sample.
        samples: the samples of the whole study, split into balanced runs.
        bound_mb: the cache bound, MiB (default: one core's L2 cache).
    """
    n = int(samples)
    if n <= MIN_SAMPLES_PER_RUN:
        return max(1, n)
    per = outputs_per_sample(session, probe, probe_samples)
    if per <= 0:
        return n
    bound = default_batch_memory_mb() if bound_mb is None else float(bound_mb)
    most = int(bound * 2**20 // (4 * periphery_copies(session.periphery) * per))
    return balanced_chunk(n, min(n, max(MIN_SAMPLES_PER_RUN, most)))
