"""Programming one simulated chip: target conductances -> programmed conductances and drift exponents."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from anacompile.errors import ConfigError

__all__ = ["PROGRAMMING_METHODS", "program_chip"]

PROGRAMMING_METHODS = ("gaussian",)


def program_chip(g_target_us: NDArray[np.float64], significance: tuple[float, ...], gain_us: float,
                 device, rng: np.random.Generator, method: str = "gaussian",
                 ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Program every device of a layer once; return ``(g_prog_us, nu)`` with the shape of ``g_target_us``.

    Args:
        g_target_us: target conductances, shape ``(P, 2, ...)`` (see :mod:`anacompile.mapping.base`).
        significance: F_p of the pairs (used by closed-loop programming, which verifies whole weights).
        gain_us: µS per unit normalised weight of the mapping.
        device: the device model (``anacompile.devices.get(...)``).
        rng: the chip's generator.
        method: ``gaussian``: the device's statistical programming-noise model (program-and-verify residual
            of Joshi et al. 2020, reference/papers.md, "Common PCM device model", item 1).

    Returns:
        Programmed conductances and per-device drift exponents nu (drawn once, from the targets).
    """
    if method == "gaussian":
        g_prog = device.program(g_target_us, rng)
    else:
        raise ConfigError(f"Unknown programming method {method!r}; available: {', '.join(PROGRAMMING_METHODS)}.")
    nu = device.drift_exponents(g_target_us, rng)
    return g_prog, nu
