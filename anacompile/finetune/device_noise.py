"""The training-noise level the device implies: ``eta = "device"`` (no torch here).

Hardware-aware training injects additive Gaussian weight noise of std ``eta max|W|`` per column (Joshi et al.
2020, Nat. Commun. 11, 2473: eta_tr = 3.8 %, the PCM chip's programming noise; reference/papers.md, (d)
"Hardware-aware training"). Instead of a constant, ``eta = "device"`` measures what the chip the model will be
compiled for does to *this model's* weights: the weights are normalised per column as the compiler maps them
(u = W / max|W| per column), programmed on ``repeats`` simulated chips with the device model and programming
strategy of ``compile``, read at each time (drift + 1/f read noise), globally drift-compensated, and

    eta = sqrt( mean_{t, chips} mean_ij (alpha(t) u~_ij(t) - u_ij)^2 )

the RMS weight error relative to the column max, i.e. the square root of the time-averaged normalised weight
error (TNMSE) that Mackin et al. 2022 (Nat. Commun. 13, 3765) minimise when they optimise programming
(:mod:`anacompile.programming.weight_error`). Its default time grid is theirs: 1 s, 1 min, 1 h, 1 d, 30 d, 1 y
after programming, so the network is trained for the error it will meet over a year of use; a single time
(``device_times="1d"``) trains for that time. For the PCM preset and our digits models this gives 0.040 / 0.050 /
0.053 / 0.070 at 1 s / 1 h / 1 d / 1 y (see docs/finetune.md). The short-term read noise, DAC/ADC and output
noise are not part of it: the tile model simulates them separately.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from anacompile.errors import ConfigError

__all__ = ["DEVICE_TIMES", "device_eta", "device_etas", "parse_device_times"]

DEVICE_TIMES = "1s,1min,1h,1d,30d,1y"
"""Default times of ``eta = "device"``: the grid of Mackin et al.'s programming objective (aihwkit example 33)."""


def parse_device_times(text: str | Sequence[float]) -> tuple[float, ...]:
    """``"1s,1d"`` or seconds -> seconds (each > 0)."""
    from anacompile.evaluate.times import parse_times

    times = tuple(float(t) for t in (text if not isinstance(text, str) else parse_times(text)))
    if not times or any(not np.isfinite(t) or t <= 0 for t in times):
        raise ConfigError(f"finetune device_times={text!r}: give one or more times > 0, e.g. 1d or 1s,1h,1d,1y.")
    return times


def device_eta(
    matrices: Sequence[np.ndarray],
    device: Any = "pcm",
    strategy: Any = "single",
    times: str | Sequence[float] = DEVICE_TIMES,
    repeats: int = 8,
    seed: int = 0,
) -> float:
    """RMS weight error, relative to the column max, that ``device`` leaves on these crossbar matrices.

    Args:
        matrices: the analog layers' weights as crossbar matrices (rows = inputs, columns = outputs).
        device: device preset, file or device (as ``compile --device``).
        strategy: programming strategy (as ``compile --strategy``).
        times: times after programming; the error is averaged (in the mean square) over them.
        repeats: simulated chips.
        seed: seed of the chips.

    Returns:
        eta, a fraction of the per-column max |W|.
    """
    from anacompile import devices
    from anacompile.mapping import get_mapping
    from anacompile.programming.weight_error import evaluate_strategy_error, normalised_weights

    mats = [np.asarray(m, np.float64) for m in matrices if np.asarray(m).size]
    if not mats:
        raise ConfigError("finetune eta=device: the model has no analog weights to measure the device error on.")
    err = evaluate_strategy_error(
        get_mapping(strategy),
        normalised_weights(mats),
        devices.get(device),
        np.random.default_rng(seed),
        parse_device_times(times),
        n_repeats=repeats,
    )
    return float(np.sqrt(err.tnmse))


def device_etas(
    matrices: dict[str, np.ndarray],
    device: Any = "pcm",
    strategy: Any = "single",
    times: str | Sequence[float] = DEVICE_TIMES,
    repeats: int = 8,
    seed: int = 0,
) -> dict[str, float]:
    """:func:`device_eta` of every layer on its own (layer name -> eta).

    The error relative to the column max depends on the layer's weight distribution (how many weights sit at
    high conductance, where the programming noise is largest; how many at low conductance, where drift varies
    most) and on its own drift compensation, so each layer is trained at the error the chip gives it."""
    return {
        key: device_eta([m], device, strategy, times, repeats, seed + k)
        for k, (key, m) in enumerate(sorted(matrices.items()))
    }
