"""Device presets by name, and device files (YAML or JSON) that override a preset.

A device file is a mapping::

    base: pcm            # preset to start from (optional, default "pcm")
    name: pcm-30us       # every other key is a field of the preset's dataclass
    g_max_us: 30
    drift: {t0_s: 20, drift_scale: 0.5}

Nested models (``programming``, ``drift``, ``read_noise``) are merged field by field onto the preset,
and the result is validated like any other device. A file with ``kind: table`` (or whose ``base`` is a
table preset such as ``rram_wan2022``) describes a :class:`~anacompile.devices.table.TableDevice` by
curves; a curve it gives replaces the base's curve whole (``kind: table`` without a table ``base`` starts
from the table defaults). Files are read by the one configuration loader (:func:`anacompile.config.load_config`).
Every problem raises :class:`anacompile.errors.DeviceError` naming the file and the key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from anacompile.config import CONFIG_FILE_SUFFIXES, load_config
from anacompile.devices._validate import merge_overrides
from anacompile.devices.pcm import PCM_JOSHI_2020, PCMDevice
from anacompile.devices.table import KIND as TABLE_KIND
from anacompile.devices.table import RRAM_WAN_2022, TableDevice
from anacompile.errors import DeviceError

__all__ = ["DEVICE_FILE_SUFFIXES", "AnyDevice", "available", "from_dict", "get", "load_device_file"]

AnyDevice = PCMDevice | TableDevice
_PRESETS: dict[str, AnyDevice] = {"pcm": PCM_JOSHI_2020, RRAM_WAN_2022.name: RRAM_WAN_2022}
DEVICE_FILE_SUFFIXES = CONFIG_FILE_SUFFIXES
_BASE_KEY = "base"
_KIND_KEY = "kind"


def available() -> list[str]:
    """Return the names of the device presets, sorted.

    Returns:
        The names :func:`get` accepts besides device files.
    """
    return sorted(_PRESETS)


def from_dict(data: Mapping[str, Any]) -> AnyDevice:
    """Rebuild a device from its ``to_dict()`` (as a compile report stores it): PCM, or ``kind: table``.

    Raises:
        DeviceError: an invalid mapping.
    """
    if data.get(_KIND_KEY) == TABLE_KIND:
        return TableDevice.from_dict(data)
    return PCMDevice.from_dict(data)


def _merge(base: AnyDevice, overrides: dict[str, Any], source: str) -> AnyDevice:
    try:
        if isinstance(base, TableDevice):
            return TableDevice.from_dict(overrides, base=base)
        if overrides.get(_KIND_KEY) == TABLE_KIND:
            return TableDevice.from_dict(overrides)
        if _KIND_KEY in overrides:
            raise DeviceError(
                f"{_KIND_KEY} = {overrides[_KIND_KEY]!r} is invalid; allowed: {TABLE_KIND!r} (or no kind: a PCM "
                "preset with overrides)."
            )
        return merge_overrides(base, overrides)
    except DeviceError as err:
        raise DeviceError(f"{source}: {err}") from err


def get(
    name_or_path: str | os.PathLike[str] | AnyDevice, overrides: dict[str, Any] | list[str] | None = None
) -> AnyDevice:
    """Return a device preset by name, or load a device file (.yaml, .yml or .json), with overrides.

    Args:
        name_or_path: a preset name (see :func:`available`), the path of a device file, or a device.
        overrides: per-key overrides applied last (``{"g_max_us": 30}`` or ``["drift.t0_s=10"]``).

    Returns:
        The validated device.

    Raises:
        DeviceError: unknown preset, or a device file that is missing, malformed or invalid.
    """
    if (
        isinstance(name_or_path, str)
        and name_or_path not in _PRESETS
        and not name_or_path.lower().endswith(DEVICE_FILE_SUFFIXES)
    ):
        raise DeviceError(
            f"Unknown device {name_or_path!r}; available presets: {', '.join(available())}, or the path of a "
            f"device file ending in {', '.join(DEVICE_FILE_SUFFIXES)}."
        )
    if isinstance(name_or_path, TableDevice):

        def merge_table(base: TableDevice, data: dict[str, Any], source: str) -> TableDevice:
            out = _merge(base, data, source)
            assert isinstance(out, TableDevice)
            return out

        return load_config(
            name_or_path,
            what="Device",
            cls=TableDevice,
            presets={},
            merge=merge_table,
            default_base="pcm",
            overrides=overrides,
            error=DeviceError,
        )
    return load_config(
        name_or_path,
        what="Device",
        cls=PCMDevice,
        presets=_PRESETS,
        merge=_merge,
        default_base="pcm",
        overrides=overrides,
        error=DeviceError,
    )


def load_device_file(path: str | os.PathLike[str]) -> AnyDevice:
    """Load a device file: a preset (key ``base``, default ``"pcm"``) with some parameters overridden.

    Args:
        path: a .yaml, .yml or .json file holding one mapping.

    Returns:
        The validated device.

    Raises:
        DeviceError: the file is missing, unreadable or malformed, or a key or value is invalid; the
            message names the file.
    """
    return get(Path(path))
