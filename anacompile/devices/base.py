"""The interface every device model offers to the compiler, the programming simulation and the runtime.

A device model turns target conductances into programmed ones (``program``), draws the per-device drift
exponents once at programming (``drift_exponents``), and evaluates the conductance at a time after
programming, deterministically (``drift``) or with read noise (``read``). Conductances are in µS, times
in s. All methods are pure and take an explicit :class:`numpy.random.Generator` where they draw.

The PCM model (:class:`anacompile.devices.pcm.PCMDevice`) is the first implementation; other device
families (ReRAM, ECRAM, ...) implement the same protocol (cf. aihwkit's ``BaseNoiseModel`` hooks
``apply_programming_noise_to_conductance``, ``generate_drift_coefficients`` and
``apply_drift_noise_to_conductance``; reference/papers.md, "Common PCM device model").
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["Device"]


@runtime_checkable
class Device(Protocol):
    """Statistical model of one kind of analog memory device (conductances in µS, times in s)."""

    @property
    def name(self) -> str:
        """Short name of the device (preset name or the name given in a device file)."""
        ...

    @property
    def g_max_us(self) -> float:
        """Largest programmable conductance, µS (the full-scale of the weight mapping)."""
        ...

    @property
    def g_min_us(self) -> float:
        """Smallest conductance the mapping uses, µS (the floor added to both devices of a pair)."""
        ...

    def program(self, g_target_us: ArrayLike, rng: np.random.Generator) -> NDArray[np.float64]:
        """Program target conductances and return the conductances reached, µS (same shape)."""
        ...

    def drift_exponents(self, g_target_us: ArrayLike, rng: np.random.Generator) -> NDArray[np.float64]:
        """Draw one drift exponent per device, at programming, from the target conductance (same shape)."""
        ...

    def drift(self, g_prog_us: ArrayLike, nu: ArrayLike, t_inference_s: float) -> NDArray[np.float64]:
        """Return the noiseless drifted conductance at ``t_inference_s`` after programming, µS."""
        ...

    def read(
        self, g_prog_us: ArrayLike, nu: ArrayLike, t_inference_s: float, rng: np.random.Generator
    ) -> NDArray[np.float64]:
        """Return one noisy read of the conductance at ``t_inference_s`` after programming, µS."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """Return every parameter as plain JSON/YAML-serialisable nested dicts."""
        ...
