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
from anacompile.mapping import decode_pairs
from anacompile.programming.chip import program_chip

__all__ = [
    "bank_rng",
    "chip_rng",
    "compensation_factors",
    "compensation_reference",
    "noise_bank",
    "program_layer",
    "read_weights",
]

_PROGRAM, _CALIBRATE, _READ, _BANK, _SHARED_BANK = 0, 1, 2, 3, 4


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
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float32]]:
    """Program layer ``layer`` of chip ``chip`` and take its drift-compensation calibration read.

    Returns:
        ``(g_prog, nu, gdc_ref)``: programmed conductances and drift exponents (shape of ``g_target_us``) and
        the reference of :func:`compensation_reference`, from a read right after programming.
    """
    g_prog, nu = program_chip(
        np.asarray(g_target_us, np.float64),
        significance,
        gain_us,
        device,
        chip_rng(seed, chip, "program", layer),
        method=method,
    )
    w0 = read_weights(g_prog, nu, 0.0, device, significance, gain_us, chip_rng(seed, chip, "calibrate", layer))
    return g_prog, nu, compensation_reference(w0, compensation)


def read_weights(
    g_prog: NDArray, nu: NDArray, t_inference_s: float, device, significance, gain_us: float, rng: np.random.Generator
) -> NDArray[np.float32]:
    """Normalised effective weights at t: decode the pairs of g(t) = device.read(g_prog, nu, t).

    Args:
        g_prog, nu: programmed conductances (µS) and drift exponents, shape (P, 2, [n_tiles,] rows, N).
        t_inference_s: seconds since programming.

    Returns:
        u(t), shape ([n_tiles,] rows, N), float32.
    """
    g_t = device.read(g_prog, nu, t_inference_s, rng)
    return decode_pairs(g_t, significance, gain_us).astype(np.float32)


def noise_bank(size: int, rng: np.random.Generator) -> NDArray[np.float32]:
    """A bank of standard normals for per-MVM noise (sliced at random offsets inside the graph)."""
    return rng.standard_normal(int(size), dtype=np.float32)
