"""One simulated chip's state: programming, drift + read noise at t, drift compensation, noise bank.

(Drift compensation itself is :mod:`anacompile.crossbar.compensation`; its two functions are re-exported.)

Everything here is plain numpy over the device model (:mod:`anacompile.devices`), shared by the compiler
(which bakes one programmed chip into the file) and the analog session (which programs chip k and computes
its effective weights once per (chip, t)). Every random draw derives from ``(seed, chip)`` through
:class:`numpy.random.SeedSequence` spawn keys, so a chip is the same wherever it is programmed.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from anacompile.crossbar.compensation import compensation_factors, compensation_reference
from anacompile.crossbar.periphery import DriftCompensation
from anacompile.devices import PCMDevice, TableDevice
from anacompile.mapping import decode_pairs
from anacompile.programming.chip import program_chip

__all__ = [
    "BLOCK_DEVICES",
    "SAMPLE_DTYPE",
    "bank_rng",
    "chip_rng",
    "compensation_factors",
    "compensation_reference",
    "experiment_noise_bank",
    "noise_bank",
    "program_layer",
    "read_noise_q",
    "read_weights",
]

_PROGRAM, _CALIBRATE, _READ, _BANK, _SHARED_BANK = 0, 1, 2, 3, 4

SAMPLE_DTYPE = np.float32
"""The float type a chip is sampled and stored in (programming, drift exponents, reads): float32, for the
devices whose kernels support it (:data:`anacompile.devices.pcm.SAMPLE_DTYPES`; the statistics are the
float64 ones, tests/devices/test_float32_sampling.py); other devices compute in float64, cast to it."""
BLOCK_DEVICES = 1 << 18
"""Devices per block of one conductance row (p, ±): the kernels run block by block, so their temporaries
stay in cache and the memory is bounded by a block, not a layer. Results do not depend on it: every
(pair, sign) has its own stream, consumed in C order (tests check a block size of 7 against one block)."""


def chip_rng(seed: int, chip: int, purpose: str, layer: int = 0, t_inference_s: float = 0.0) -> np.random.Generator:
    """Generator for one purpose (``program``, ``calibrate``, ``read``, ``bank``) of one layer of chip k.

    ``SeedSequence(seed, spawn_key=(chip, ...))`` equals ``SeedSequence(seed).spawn(n)[chip]``'s children,
    so chips are independent streams of one experiment seed; the read at t is keyed by t in microseconds.
    """
    code = {"program": _PROGRAM, "calibrate": _CALIBRATE, "read": _READ, "bank": _BANK}[purpose]
    key = (int(chip), code, int(layer), int(round(float(t_inference_s) * 1e6)))
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=key))


def bank_rng(seed: int, size: int) -> np.random.Generator:
    """Generator of the experiment's noise bank of ``size`` values, shared by every chip of ``seed``.

    Its key (chip 0, purpose code 4, layer 0, size) is no chip's: :func:`chip_rng` has codes 0..3 only.
    """
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(0, _SHARED_BANK, 0, int(size))))


def _float32_kernels(device) -> bool:
    """Whether the device's kernels take ``dtype=`` (the built-in PCM and table devices)."""
    return isinstance(device, (PCMDevice, TableDevice))


def _row_streams(rng: np.random.Generator, rows: int) -> list[np.random.Generator]:
    """One child generator per conductance row (pair p, sign ±) of a layer, spawned from ``rng``."""
    return rng.spawn(rows)


def _blocks(m: int, size: int = BLOCK_DEVICES):
    for j in range(0, m, size):
        yield slice(j, min(j + size, m))


def program_layer(
    g_target_us: NDArray,
    significance,
    gain_us: float,
    device,
    seed: int,
    chip: int,
    layer: int,
    compensation: DriftCompensation,
    method: str = "gaussian",
    block: int = BLOCK_DEVICES,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """Program layer ``layer`` of chip ``chip`` and take its drift-compensation calibration read.

    ``gaussian`` on a device with float32 kernels samples in float32, block by block (``block`` devices of
    one conductance row at a time; programming noise and drift exponents of row r from the r-th child of
    the chip's ``program`` stream and of r + 2P, so any block size gives the same chip). Other methods
    (``verify``, which verifies whole weights) and other devices run :func:`program_chip` in float64.

    Returns:
        ``(g_prog, nu, gdc_ref)``: programmed conductances and drift exponents (shape of ``g_target_us``,
        float32) and the reference of :func:`compensation_reference`, from a read right after programming.
    """
    rng = chip_rng(seed, chip, "program", layer)
    g_prog: NDArray[np.float32]
    nu: NDArray[np.float32]
    if method == "gaussian" and _float32_kernels(device):
        g = np.asarray(g_target_us, SAMPLE_DTYPE)
        flat = g.reshape(g.shape[0] * g.shape[1], -1)
        rows = flat.shape[0]
        streams = _row_streams(rng, 2 * rows)
        flat_prog, flat_nu = np.empty_like(flat), np.empty_like(flat)
        for r in range(rows):
            for part in _blocks(flat.shape[1], block):
                flat_prog[r, part] = device.program(flat[r, part], streams[r], dtype=SAMPLE_DTYPE)
                flat_nu[r, part] = device.drift_exponents(flat[r, part], streams[rows + r], dtype=SAMPLE_DTYPE)
        g_prog, nu = flat_prog.reshape(g.shape), flat_nu.reshape(g.shape)
    else:
        g64, nu64 = program_chip(np.asarray(g_target_us, np.float64), significance, gain_us, device, rng, method=method)
        g_prog, nu = g64.astype(SAMPLE_DTYPE), nu64.astype(SAMPLE_DTYPE)
    cal = chip_rng(seed, chip, "calibrate", layer)
    w0 = read_weights(g_prog, nu, 0.0, device, significance, gain_us, cal, block=block)
    return g_prog, nu, compensation_reference(w0, compensation)


def read_weights(
    g_prog: NDArray,
    nu: NDArray,
    t_inference_s: float,
    device,
    significance,
    gain_us: float,
    rng: np.random.Generator,
    block: int = BLOCK_DEVICES,
    q_s: NDArray[np.float32] | None = None,
) -> NDArray[np.float32]:
    """Normalised effective weights at t: decode the pairs of g(t) = device.read(g_prog, nu, t).

    On a device with float32 kernels the read is sampled in float32, block by block, row r of the
    conductances (pair p, sign ±) from the r-th child of ``rng`` (any ``block`` gives the same read), and
    the pairs are decoded in the same loop: sum_p F_p (G+_p - G-_p) / gain (:func:`decode_pairs`).

    Args:
        g_prog, nu: programmed conductances (µS) and drift exponents, shape (P, 2, [n_tiles,] rows, N).
        t_inference_s: seconds since programming.
        q_s: a PCM device's :func:`read_noise_q` of ``g_prog`` (t-independent), if the caller keeps it per
            programmed chip; otherwise every read computes it.

    Returns:
        u(t), shape ([n_tiles,] rows, N), float32.
    """
    if not _float32_kernels(device):
        g_t = device.read(g_prog, nu, t_inference_s, rng)
        return decode_pairs(g_t, significance, gain_us).astype(np.float32)
    g_prog, nu = np.asarray(g_prog), np.asarray(nu)
    pairs = g_prog.shape[0]
    flat_g = g_prog.reshape(pairs, 2, -1)
    flat_nu = nu.reshape(pairs, 2, -1)
    flat_q = None if q_s is None or not isinstance(device, PCMDevice) else np.asarray(q_s).reshape(pairs, 2, -1)

    def q(p: int, sign: int, part: slice) -> dict:
        return {} if flat_q is None else {"q_s": flat_q[p, sign, part]}

    streams = _row_streams(rng, 2 * pairs)
    u = np.zeros(flat_g.shape[2], SAMPLE_DTYPE)
    for p in range(pairs):
        f = np.float32(float(significance[p]) / float(gain_us))
        for part in _blocks(flat_g.shape[2], block):
            g_plus = device.read(
                flat_g[p, 0, part],
                flat_nu[p, 0, part],
                t_inference_s,
                streams[2 * p],
                dtype=SAMPLE_DTYPE,
                **q(p, 0, part),
            )
            g_minus = device.read(
                flat_g[p, 1, part],
                flat_nu[p, 1, part],
                t_inference_s,
                streams[2 * p + 1],
                dtype=SAMPLE_DTYPE,
                **q(p, 1, part),
            )
            g_plus -= g_minus
            g_plus *= f
            u[part] += g_plus
    return u.reshape(g_prog.shape[2:])


def read_noise_q(g_prog: NDArray[np.floating], device) -> NDArray[np.float32] | None:
    """A PCM device's 1/f read-noise amplitude Q_s(|g_prog|/g_max) in the sampling dtype, for
    :func:`read_weights` (``q_s``); None for other devices (their reads compute what they need)."""
    if not isinstance(device, PCMDevice):
        return None
    q: NDArray[np.float32] = device.read_noise_q(g_prog, dtype=SAMPLE_DTYPE).astype(SAMPLE_DTYPE, copy=False)
    return q


def noise_bank(size: int, rng: np.random.Generator) -> NDArray[np.float32]:
    """A bank of standard normals for per-MVM noise (sliced at random offsets inside the graph)."""
    return rng.standard_normal(int(size), dtype=np.float32)


BANK_CACHE_BYTES = 256 * 2**20
"""Most bytes of experiment noise banks kept per process (:func:`experiment_noise_bank`), least recently used
out first; a bank larger than this is drawn and not kept."""
_BANKS: dict[tuple[int, int, float], NDArray[np.float32]] = {}


def experiment_noise_bank(seed: int, size: int, scale: float = 1.0) -> NDArray[np.float32]:
    """The experiment's bank of ``size`` standard normals (:func:`noise_bank` from :func:`bank_rng`), times
    ``scale``, read-only and shared within the process.

    It is a function of (seed, size) alone, so every session of one experiment (each ``evaluate`` job, each
    chip batch, each sensitivity or placement session) would draw the same values again: at the digits CNN's
    540 test images the bank is 2^23 normals, ~60 ms a draw. Banks stay cached up to
    :data:`BANK_CACHE_BYTES`; the arrays are not writeable, so no caller can alter another's noise.
    """
    key = (int(seed), int(size), float(scale))
    bank = _BANKS.pop(key, None)
    if bank is None:
        if scale == 1.0:
            bank = noise_bank(size, bank_rng(seed, size))
        else:
            bank = experiment_noise_bank(seed, size) * np.float32(scale)
        bank.flags.writeable = False
    if bank.nbytes <= BANK_CACHE_BYTES:
        _BANKS[key] = bank  # most recently used last
        while sum(b.nbytes for b in _BANKS.values()) > BANK_CACHE_BYTES:
            _BANKS.pop(next(iter(_BANKS)))
    return bank
