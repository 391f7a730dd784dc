"""Device presets by name, and device files (YAML or JSON) that override a preset.

A device file is a mapping::

    base: pcm            # preset to start from (optional, default "pcm")
    name: pcm-30us       # every other key is a field of the preset's dataclass
    g_max_us: 30
    drift: {t0_s: 20, drift_scale: 0.5}

Nested models (``programming``, ``drift``, ``read_noise``) are merged field by field onto the preset,
and the result is validated like any other device. Every problem raises
:class:`anacompile.errors.DeviceError` naming the file and the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from anacompile.config import CONFIG_FILE_SUFFIXES, load_config
from anacompile.devices._validate import merge_overrides
from anacompile.devices.pcm import PCM_JOSHI_2020, PCMDevice
from anacompile.errors import DeviceError

__all__ = ["DEVICE_FILE_SUFFIXES", "available", "get", "load_device_file"]

_PRESETS: dict[str, PCMDevice] = {"pcm": PCM_JOSHI_2020}
DEVICE_FILE_SUFFIXES = CONFIG_FILE_SUFFIXES
_BASE_KEY = "base"


def available() -> list[str]:
    """Return the names of the device presets, sorted.

    Returns:
        The names :func:`get` accepts besides device files.
    """
    return sorted(_PRESETS)


def _merge(base: PCMDevice, overrides: dict[str, Any], source: str) -> PCMDevice:
    try:
        return merge_overrides(base, overrides)
    except DeviceError as err:
        raise DeviceError(f"{source}: {err}") from err


def get(name_or_path: str | os.PathLike[str] | PCMDevice,
        overrides: dict[str, Any] | list[str] | None = None) -> PCMDevice:
    """Return a device preset by name, or load a device file (.yaml, .yml or .json), with overrides.

    Args:
        name_or_path: a preset name (see :func:`available`), the path of a device file, or a device.
        overrides: per-key overrides applied last (``{"g_max_us": 30}`` or ``["drift.t0_s=10"]``).

    Returns:
        The validated device.

    Raises:
        DeviceError: unknown preset, or a device file that is missing, malformed or invalid.
    """
    if isinstance(name_or_path, str) and name_or_path not in _PRESETS and not name_or_path.lower().endswith(
            DEVICE_FILE_SUFFIXES):
        raise DeviceError(
            f"Unknown device {name_or_path!r}; available presets: {', '.join(available())}, or the path of a "
            f"device file ending in {', '.join(DEVICE_FILE_SUFFIXES)}."
        )
    return load_config(name_or_path, what="Device", cls=PCMDevice, presets=_PRESETS, merge=_merge,
                       default_base="pcm", overrides=overrides, error=DeviceError)


def load_device_file(path: str | os.PathLike[str]) -> PCMDevice:
    """Load a device file: a preset (key ``base``, default ``"pcm"``) with some parameters overridden.

    Args:
        path: a .yaml, .yml or .json file holding one mapping.

    Returns:
        The validated device.

    Raises:
        DeviceError: the file is missing, unreadable or malformed, or a key or value is invalid; the
            message names the file.
    """
    return load_config(Path(path), what="Device", cls=PCMDevice, presets=_PRESETS, merge=_merge,
                       default_base="pcm", error=DeviceError)
