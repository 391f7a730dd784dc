"""Programming one simulated chip: target conductances -> programmed conductances and drift exponents."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from anacompile.errors import ConfigError
from anacompile.programming.program_verify import program_verify_conductances

__all__ = ["PROGRAMMING_METHODS", "program_chip"]

PROGRAMMING_METHODS = ("gaussian", "verify")


def program_chip(
    g_target_us: NDArray[np.float64],
    significance: tuple[float, ...],
    gain_us: float,
    device,
    rng: np.random.Generator,
    method: str = "gaussian",
    verify_params=None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Program every device of a layer once; return ``(g_prog_us, nu)`` with the shape of ``g_target_us``.

    Args:
        g_target_us: target conductances, shape ``(P, 2, ...)`` (see :mod:`anacompile.mapping.base`).
        significance: F_p of the pairs (used by closed-loop programming, which verifies whole weights).
        gain_us: µS per unit normalised weight of the mapping.
        device: the device model (``anacompile.devices.get(...)``).
        rng: the chip's generator.
        method: ``gaussian``: the device's statistical programming-noise model (program-and-verify residual
            of Joshi et al. 2020, reference/papers.md, "Common PCM device model", item 1), with nu drawn from
            the targets. ``verify``: simulate row-parallel closed-loop program-and-verify
            (:mod:`anacompile.programming.program_verify`, Mackin et al. 2019, papers.md (b)); the residual
            of the simulation replaces the Gaussian noise, and nu is drawn from the conductances actually
            reached (the controller may lift both devices of a pair above their targets).
        verify_params: :class:`~anacompile.programming.program_verify.ProgramVerifyParams` for ``verify``
            (defaults when None).

    Returns:
        Programmed conductances and per-device drift exponents nu (drawn once).

    Raises:
        ConfigError: unknown method.
    """
    if method == "gaussian":
        g_prog = device.program(g_target_us, rng)
        nu = device.drift_exponents(g_target_us, rng)
    elif method == "verify":
        res = program_verify_conductances(
            g_target_us,
            significance,
            gain_us,
            float(device.g_max_us),
            rng,
            verify_params,
            g_min_us=float(device.g_min_us),
        )
        g_prog = res.g_prog_us
        nu = device.drift_exponents(g_prog, rng)
    else:
        raise ConfigError(f"Unknown programming method {method!r}; available: {', '.join(PROGRAMMING_METHODS)}.")
    return g_prog, nu
