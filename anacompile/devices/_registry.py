"""Device presets by name, and device files (YAML or JSON) that override a preset.

A device file is a mapping::

    base: pcm            # preset to start from (optional, default "pcm")
    name: pcm-30us       # every other key is a field of the preset's dataclass
    g_max_us: 30
    drift: {t0_s: 20, drift_scale: 0.5}

Nested models (``programming``, ``drift``, ``read_noise``) are merged field by field onto the preset,
and the result is validated like any other device. A file with ``kind: table`` (or whose ``base`` is a
table preset such as ``rram_wan2022``) describes a :class:`~anacompile.devices.table.TableDevice` by
curves; a curve it gives replaces the base's curve whole. Every problem raises
:class:`anacompile.errors.DeviceError` naming the file and the key.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from anacompile.devices._validate import merge_overrides
from anacompile.devices.pcm import PCM_JOSHI_2020, PCMDevice
from anacompile.devices.table import KIND as TABLE_KIND
from anacompile.devices.table import RRAM_WAN_2022, TableDevice
from anacompile.errors import DeviceError

__all__ = ["DEVICE_FILE_SUFFIXES", "AnyDevice", "available", "from_dict", "get", "load_device_file"]

AnyDevice = PCMDevice | TableDevice
_PRESETS: dict[str, AnyDevice] = {"pcm": PCM_JOSHI_2020, RRAM_WAN_2022.name: RRAM_WAN_2022}
_KIND_KEY = "kind"
DEVICE_FILE_SUFFIXES = (".yaml", ".yml", ".json")
_BASE_KEY = "base"


class _Yaml12FloatLoader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats without a dot, such as ``1e-7`` (PyYAML reads a str)."""


_Yaml12FloatLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


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


def get(name_or_path: str | os.PathLike[str]) -> AnyDevice:
    """Return a device preset by name, or load a device file (.yaml, .yml or .json).

    Args:
        name_or_path: a preset name (see :func:`available`) or the path of a device file.

    Returns:
        The validated device.

    Raises:
        DeviceError: unknown preset, or a device file that is missing, malformed or invalid.
    """
    if isinstance(name_or_path, str) and name_or_path in _PRESETS:
        return _PRESETS[name_or_path]
    if isinstance(name_or_path, (str, os.PathLike)):
        path = Path(name_or_path)
        if path.suffix.lower() in DEVICE_FILE_SUFFIXES:
            return load_device_file(path)
    raise DeviceError(
        f"Unknown device {name_or_path!r}; available presets: {', '.join(available())}, or the path of a "
        f"device file ending in {', '.join(DEVICE_FILE_SUFFIXES)}."
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
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise DeviceError(f"Device file {str(path)!r} does not exist.") from err
    except (OSError, UnicodeDecodeError) as err:
        raise DeviceError(f"Device file {str(path)!r} cannot be read: {err}.") from err
    try:
        if path.suffix.lower() == ".json":
            data: Any = json.loads(text)
        else:
            data = yaml.load(text, Loader=_Yaml12FloatLoader)  # noqa: S506 - a SafeLoader subclass
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        detail = " ".join(str(err).split())
        raise DeviceError(f"Device file {str(path)!r} is not valid {_format(path)}: {detail}") from err
    if not isinstance(data, Mapping):
        raise DeviceError(
            f"Device file {str(path)!r} must hold one mapping (keys {_BASE_KEY!r}, "
            f"{', '.join(repr(k) for k in PCMDevice().to_dict())}), got {type(data).__name__}."
        )
    overrides = dict(data)
    table = overrides.get(_KIND_KEY) == TABLE_KIND
    base_name = overrides.pop(_BASE_KEY, None if table else "pcm")
    if base_name is not None and (not isinstance(base_name, str) or base_name not in _PRESETS):
        raise DeviceError(
            f"Device file {str(path)!r}: {_BASE_KEY} = {base_name!r} is not a preset; allowed: "
            f"{', '.join(available())}."
        )
    base = _PRESETS[base_name] if base_name is not None else None
    try:
        if table or isinstance(base, TableDevice):
            if base is not None and not isinstance(base, TableDevice):
                raise DeviceError(
                    f"{_BASE_KEY} = {base_name!r} is not a table device; a kind: table file takes a table "
                    f"preset as base ({', '.join(n for n, d in _PRESETS.items() if isinstance(d, TableDevice))})."
                )
            return TableDevice.from_dict(overrides, base=base)
        if _KIND_KEY in overrides:
            raise DeviceError(
                f"{_KIND_KEY} = {overrides[_KIND_KEY]!r} is invalid; allowed: {TABLE_KIND!r} (or no kind: a "
                "PCM preset with overrides)."
            )
        assert base is not None
        return merge_overrides(base, overrides)
    except DeviceError as err:
        raise DeviceError(f"Device file {str(path)!r}: {err}") from err


def _format(path: Path) -> str:
    return "JSON" if path.suffix.lower() == ".json" else "YAML"
