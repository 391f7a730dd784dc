"""One simulated chip's state: programming, drift + read noise at t, drift compensation, noise bank.

Everything here is plain numpy over the device model (:mod:`anacompile.devices`), shared by the compiler
(which bakes one programmed chip into the file) and the analog session (which programs chip k and computes
its effective weights once per (chip, t)). Every random draw derives from ``(seed, chip)`` through
:class:`numpy.random.SeedSequence` spawn keys, so a chip is the same wherever it is programmed.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from anacompile.crossbar.periphery import DriftCompensation
from anacompile.mapping import decode_pairs

__all__ = [
    "chip_rng",
    "compensation_factors",
    "compensation_reference",
    "noise_bank",
    "program_layer",
    "read_weights",
]

_PROGRAM, _CALIBRATE, _READ, _BANK = 0, 1, 2, 3
GDC_EPS = 1e-12


def chip_rng(seed: int, chip: int, purpose: str, layer: int = 0, t_inference_s: float = 0.0) -> np.random.Generator:
    """Generator for one purpose (``program``, ``calibrate``, ``read``, ``bank``) of one layer of chip k.

    ``SeedSequence(seed, spawn_key=(chip, ...))`` equals ``SeedSequence(seed).spawn(n)[chip]``'s children,
    so chips are independent streams of one experiment seed; the read at t is keyed by t in microseconds.
    """
    code = {"program": _PROGRAM, "calibrate": _CALIBRATE, "read": _READ, "bank": _BANK}[purpose]
    key = (int(chip), code, int(layer), int(round(float(t_inference_s) * 1e6)))
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=key))


def program_layer(g_target_us: NDArray, significance, gain_us: float, device, seed: int, chip: int, layer: int,
                  compensation: DriftCompensation, method: str = "gaussian",
                  ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float32]]:
    """Program layer ``layer`` of chip ``chip`` and take its drift-compensation calibration read.

    Returns:
        ``(g_prog, nu, gdc_ref)``: programmed conductances and drift exponents (shape of ``g_target_us``) and
        the reference of :func:`compensation_reference`, from a read right after programming.
    """
    from anacompile.programming.chip import program_chip

    g_prog, nu = program_chip(np.asarray(g_target_us, np.float64), significance, gain_us, device,
                              chip_rng(seed, chip, "program", layer), method=method)
    w0 = read_weights(g_prog, nu, 0.0, device, significance, gain_us, chip_rng(seed, chip, "calibrate", layer))
    return g_prog, nu, compensation_reference(w0, compensation)


def read_weights(g_prog: NDArray, nu: NDArray, t_inference_s: float, device, significance, gain_us: float,
                 rng: np.random.Generator) -> NDArray[np.float32]:
    """Normalised effective weights at t: decode the pairs of g(t) = device.read(g_prog, nu, t).

    Args:
        g_prog, nu: programmed conductances (µS) and drift exponents, shape (P, 2, [n_tiles,] rows, N).
        t_inference_s: seconds since programming.

    Returns:
        u(t), shape ([n_tiles,] rows, N), float32.
    """
    g_t = device.read(g_prog, nu, t_inference_s, rng)
    return decode_pairs(g_t, significance, gain_us).astype(np.float32)


def compensation_reference(w0: NDArray, mode: DriftCompensation) -> NDArray[np.float32]:
    """Calibration read right after programming: sum |w| over the layer (global) or each column.

    aihwkit reads with one-hot inputs and averages |y| (reference/papers.md, "Drift compensation"); the
    sum over one-hot reads of |w_ij| is that read, up to a constant that cancels in the ratio.
    """
    w0 = np.abs(np.asarray(w0, np.float32))
    if mode is DriftCompensation.COLUMN:
        return np.sum(w0, axis=-2, keepdims=True)
    return np.asarray(np.sum(w0), np.float32)


def compensation_factors(w_t: NDArray, reference: NDArray, mode: DriftCompensation) -> NDArray[np.float32]:
    """alpha(t) = reference / (the same read at t), shape ([n_tiles,] 1, N); ones for ``none``."""
    w_t = np.asarray(w_t, np.float32)
    shape = w_t.shape[:-2] + (1, w_t.shape[-1])
    if mode is DriftCompensation.NONE:
        return np.ones(shape, np.float32)
    if mode is DriftCompensation.COLUMN:
        cur = np.sum(np.abs(w_t), axis=-2, keepdims=True)
        return (reference / np.maximum(cur, np.float32(GDC_EPS))).astype(np.float32)
    cur = np.sum(np.abs(w_t))
    return np.full(shape, reference / max(cur, GDC_EPS), np.float32)


def noise_bank(size: int, rng: np.random.Generator) -> NDArray[np.float32]:
    """A bank of standard normals for per-MVM noise (sliced at random offsets inside the graph)."""
    return rng.standard_normal(int(size), dtype=np.float32)
