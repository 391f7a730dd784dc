"""How many samples one onnxruntime run of an analog session takes: a large batch runs in cache-sized parts.

An analog layer's periphery is a chain of elementwise passes over its MVM outputs (IR-drop polynomial,
read-noise amplitude, noise, ADC, scales), each a full read and write of output-sized float32 tensors that
onnxruntime's CPU provider does not fuse. While one run's tensors fit a core's L2 cache a pass costs about
0.2 ns per element; once they spill, every pass streams from memory (1.3 ns per element at 11 MB; the digits
CNN's 10 chips x 4 times loop on its 540 test images ran 1.3-1.4x faster in runs of 50-64 images than in one
run, bench/README.md, issue 14). :meth:`AnalogSession.run` therefore cuts a batch of N samples into parts of

    part = max(RUN_BLOCK_MB / (4 bytes x copies x outputs per sample), MIN_PART_SAMPLES,
               MIN_PART_MACS / MACs per sample)

samples (:func:`part_samples`), balanced over the fewest parts (:func:`part_bounds`), where ``outputs per
sample`` is the largest top-level analog layer's MVM outputs of one sample (a conv layer's at every output
position; with bound management every pass), ``copies`` the output-sized tensors the periphery chain holds
at once (:func:`periphery_copies`) and ``MACs per sample`` the model's tile MVMs (one product each). Layers
inside Loop bodies (recurrent cells) run one vector per sample and step, so their working set does not grow
with the sequence and they do not bound the part; a batch of a small model (little work per sample) runs
whole, whatever its size in the cache.

Each part is a run of its own (its own noise offsets, drawn in order), so the parts can also run
concurrently, one onnxruntime thread each (``AnalogSession(parallel=k)``). The rule's constants are fixed,
not read from the machine, so a chip's outputs for a batch are the same on every machine and for any
``parallel``, ``workers`` or thread count.
"""

from __future__ import annotations

import math

import numpy as np

from anacompile.crossbar.periphery import Periphery

__all__ = [
    "MIN_PART_MACS",
    "MIN_PART_SAMPLES",
    "RUN_BLOCK_MB",
    "join_parts",
    "part_bounds",
    "parts",
    "part_samples",
    "periphery_copies",
]

RUN_BLOCK_MB = 2.0
"""The working set one part aims at, MiB: the L2 cache of one core of current x86 server CPUs (1-2 MiB;
2 MiB here). A fixed number, not the machine's, so that outputs do not depend on the machine."""
MIN_PART_SAMPLES = 32
"""Fewest samples of a part: on the digits CNN (one thread, 10 chips x 4 times, 540 test images) runs of 32 and
16 samples were 1.1-1.3x slower than runs of 64: below, a run's fixed cost (Python, onnxruntime's per-node
dispatch) outweighs the cache (bench/README.md, issue 14)."""
MIN_PART_MACS = 2**24
"""Fewest multiply-accumulates of a part's tile MVMs (one product each): 16.8 M, about a millisecond of a
core's MVMs, tens of times a run's fixed cost, so a small model (the digits MLP: 9.5 k per sample) runs a batch
of a few hundred samples whole."""


def periphery_copies(periphery: Periphery) -> int:
    """Output-sized float32 tensors the periphery chain of one tile MVM holds at once: the MVM itself, the
    IR-drop MVM and its a (ir_drop > 0), the read-noise variance (read_noise > 0) and the fed noise."""
    return (
        1
        + (2 if periphery.ir_drop > 0 else 0)
        + (1 if periphery.read_noise > 0 else 0)
        + (1 if periphery.has_mvm_noise else 0)
    )


def part_samples(outputs_per_sample: int, macs_per_sample: int, periphery: Periphery) -> int:
    """Samples of one part: as many as keep the largest top-level layer's ``outputs_per_sample`` MVM outputs
    (x their copies) in :data:`RUN_BLOCK_MB`, at least :data:`MIN_PART_SAMPLES` and enough for
    :data:`MIN_PART_MACS` of the model's ``macs_per_sample`` (one product per tile MVM)."""
    work = math.ceil(MIN_PART_MACS / macs_per_sample) if macs_per_sample > 0 else 2**62  # no work: whole
    if outputs_per_sample <= 0:  # no top-level layer bounds the cache
        return max(MIN_PART_SAMPLES, work)
    fit = int(RUN_BLOCK_MB * 2**20 // (4 * periphery_copies(periphery) * outputs_per_sample))
    return max(MIN_PART_SAMPLES, fit, work)


def part_bounds(samples: int, part: int) -> list[int]:
    """Start indices of the parts and the end, ``[0, ..., samples]``: the fewest parts of at most ``part``
    samples, their sizes differing by at most one (one or two input shapes)."""
    k = max(1, math.ceil(samples / max(1, part)))
    return [samples * i // k for i in range(k + 1)]


def parts(feeds: dict[str, np.ndarray], bounds: list[int]) -> list[dict[str, np.ndarray]]:
    """``feeds`` cut along axis 0 at ``bounds`` (:func:`part_bounds`): views, one dict per part."""
    return [{name: v[a:b] for name, v in feeds.items()} for a, b in zip(bounds, bounds[1:], strict=False)]


def join_parts(outs: list[list[np.ndarray]]) -> list[np.ndarray]:
    """The outputs of a run from its parts' outputs (``outs[part][output]``), joined along axis 0."""
    return [np.concatenate([out[i] for out in outs], axis=0) for i in range(len(outs[0]))]
