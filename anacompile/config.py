"""One loader for configuration: presets, files and overrides, for every kind of configuration.

Device, periphery, programming-strategy and input-range files are all read here, so that they behave alike:

* a file is ``.yaml``, ``.yml`` or ``.json`` and holds one mapping;
* YAML numbers are read as YAML 1.2 reads them: ``1e-7`` is the float 1e-7 (PyYAML's ``safe_load``, a YAML
  1.1 reader, returns the *string* ``"1e-7"`` for a float without a dot);
* an optional ``schema_version`` key is checked against the version this anacompile reads (and removed);
* a ``base`` key names the preset the file's other keys override;
* ``--set KEY=VALUE`` overrides are parsed as YAML scalars (``6`` an int, ``1e-7`` a float, ``none`` null,
  ``true`` a bool, anything else a string), so the command line reads numbers as files do.

This module sits at the bottom of the layers (beside :mod:`anacompile.errors`): it knows nothing about
devices or peripheries; each layer calls :func:`load_config` with its presets and its ``merge`` function.
Every problem raises :class:`~anacompile.errors.ConfigError` (or the ``error`` class the caller passes)
naming the file and the key.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from anacompile.errors import ConfigError

__all__ = [
    "CONFIG_FILE_SUFFIXES",
    "SCHEMA_VERSION",
    "YamlLoader",
    "check_schema_version",
    "is_config_file",
    "load_config",
    "parse_overrides",
    "parse_scalar",
    "read_config_file",
]

SCHEMA_VERSION = 1
"""The ``schema_version`` of device, periphery and input-range files this anacompile reads."""

CONFIG_FILE_SUFFIXES = (".yaml", ".yml", ".json")

_T = TypeVar("_T")


class YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats without a dot, such as ``1e-7`` (PyYAML reads a str)."""


YamlLoader.add_implicit_resolver(
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


def is_config_file(spec: object) -> bool:
    """Whether ``spec`` names a configuration file (a path ending in .yaml, .yml or .json)."""
    if isinstance(spec, os.PathLike):
        return True
    return isinstance(spec, str) and spec.lower().endswith(CONFIG_FILE_SUFFIXES)


def _format(path: Path) -> str:
    return "JSON" if path.suffix.lower() == ".json" else "YAML"


def check_schema_version(
    data: dict[str, Any],
    what: str,
    supported: int = SCHEMA_VERSION,
    *,
    required: bool = False,
    error: type[ConfigError] = ConfigError,
    hint: str = "",
) -> None:
    """Check and remove ``data["schema_version"]``.

    Args:
        data: a configuration mapping (changed in place: the key is removed).
        what: the file or object, for messages (``"Periphery file 'p.yaml'"``).
        supported: the version this anacompile reads.
        required: whether the key must be present.
        error: the exception class to raise.
        hint: what to do, appended to the message.

    Raises:
        ConfigError: the version is missing (when required), not an integer, or not ``supported``.
    """
    if "schema_version" not in data:
        if required:
            raise error(f"{what}: schema_version is missing; this anacompile reads schema_version {supported}.{hint}")
        return
    version = data.pop("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version != supported:
        raise error(
            f"{what}: schema_version {version!r} is not supported; this anacompile reads schema_version "
            f"{supported}.{hint}"
        )


def read_config_file(
    path: str | os.PathLike[str],
    what: str,
    *,
    suffixes: tuple[str, ...] = CONFIG_FILE_SUFFIXES,
    schema_version: int | None = SCHEMA_VERSION,
    error: type[ConfigError] = ConfigError,
) -> dict[str, Any]:
    """Read a YAML or JSON file holding one mapping.

    Args:
        path: the file.
        what: what it is, for messages (``"Periphery file"``).
        suffixes: the suffixes accepted.
        schema_version: the ``schema_version`` accepted (the key is optional and removed); ``None`` leaves
            the key alone for the caller to check.
        error: the exception class to raise.

    Returns:
        The mapping, with YAML 1.2 numbers read as numbers.

    Raises:
        ConfigError: the file is missing, unreadable, not valid YAML/JSON, not a mapping, or has an
            unsupported ``schema_version``; the message names the file.
    """
    path = Path(path)
    label = f"{what} {str(path)!r}"
    if path.suffix.lower() not in suffixes:
        raise error(f"{label}: the file name must end in {', '.join(suffixes)}.")
    try:
        if path.is_file() and path.stat().st_size > MAX_CONFIG_BYTES:
            raise error(
                f"{label} has {path.stat().st_size:,} bytes, more than the {MAX_CONFIG_BYTES:,} a "
                "configuration file may have; is it the right file?"
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise error(f"{label} does not exist.") from err
    except (OSError, UnicodeDecodeError) as err:
        raise error(f"{label} cannot be read: {' '.join(str(err).split())}.") from err
    try:
        data: Any = json.loads(text) if path.suffix.lower() == ".json" else yaml.load(text, Loader=YamlLoader)  # noqa: S506
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        detail = " ".join(str(err).split())
        raise error(f"{label} is not valid {_format(path)}: {detail}") from err
    except RecursionError as err:
        raise error(f"{label} is nested too deeply to read (at most {MAX_CONFIG_DEPTH} levels).") from err
    if not isinstance(data, Mapping):
        raise error(f"{label} must hold one mapping of keys to values, got {type(data).__name__}.")
    check_bounded(data, label, error=error)
    result: dict[str, Any] = dict(data)
    if schema_version is not None:
        check_schema_version(result, label, schema_version, error=error)
    return result


MAX_CONFIG_BYTES = 1 << 20
"""Largest configuration file read (1 MiB)."""
MAX_CONFIG_DEPTH = 32
"""Deepest nesting of mappings and lists in a configuration file."""
MAX_CONFIG_NODES = 100_000
"""Most values a configuration file may expand to, YAML aliases expanded (an alias bomb is refused)."""


def check_bounded(data: Any, label: str, *, error: type[ConfigError] = ConfigError) -> None:
    """Refuse a loaded document deeper than :data:`MAX_CONFIG_DEPTH` or expanding (aliases counted each
    time they are used) to more than :data:`MAX_CONFIG_NODES` values, and any NaN or infinite number,
    before anything formats or walks it; the walk stops at the first bound, so it is fast on any input."""
    stack = [(data, 0, "")]
    count = 0
    while stack:
        value, depth, where = stack.pop()
        count += 1
        if count > MAX_CONFIG_NODES:
            raise error(
                f"{label} expands to more than {MAX_CONFIG_NODES:,} values (YAML aliases?); a "
                "configuration file is a few keys."
            )
        if depth > MAX_CONFIG_DEPTH:
            raise error(f"{label} is nested more than {MAX_CONFIG_DEPTH} levels deep.")
        if isinstance(value, float) and not math.isfinite(value):
            shown = "NaN" if math.isnan(value) else "infinite"
            raise error(f"{label}: {where.lstrip('.') or 'value'} is {shown}; give a finite number.")
        if isinstance(value, Mapping):
            stack.extend((v, depth + 1, f"{where}.{k}") for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend((v, depth + 1, f"{where}[{i}]") for i, v in enumerate(value))


def parse_scalar(text: str) -> Any:
    """One ``--set`` value, read as a YAML 1.2 scalar: ``6`` -> 6, ``1e-7`` -> 1e-7, ``none`` -> None.

    ``none``, ``null`` and ``off`` are None; ``true``/``false`` are bools; a value that is not a YAML
    scalar stays the string given.
    """
    stripped = text.strip()
    if stripped.lower() in ("none", "null", "off", "~", ""):
        return None
    try:
        value = yaml.load(stripped, Loader=YamlLoader)  # noqa: S506
    except (yaml.YAMLError, RecursionError):
        return stripped
    if isinstance(value, (int, float, bool, str)):
        return value
    return stripped


def parse_overrides(
    overrides: Mapping[str, Any] | list[str] | tuple[str, ...] | None, what: str = "Override"
) -> dict[str, Any]:
    """Overrides as a dict: ``["adc_bits=6", "adc_bound=none"]`` -> ``{"adc_bits": 6, "adc_bound": None}``.

    A mapping is returned as a copy. A dotted key (``drift.t0_s=10``) becomes a nested mapping.

    Raises:
        ConfigError: an item is not KEY=VALUE.
    """
    if not overrides:
        return {}
    if isinstance(overrides, Mapping):
        return dict(overrides)
    parsed: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{what} {item!r}: write KEY=VALUE, e.g. adc_bits=6.")
        *parents, leaf = [k.strip() for k in key.split(".")]
        node = parsed
        for k in parents:
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{what} {item!r}: {k} is set both as a value and as a group.")
            node = child
        node[leaf] = parse_scalar(value)
    return parsed


def load_config(
    spec: str | os.PathLike[str] | _T,
    *,
    what: str,
    cls: type[_T],
    presets: Mapping[str, _T],
    merge: Callable[[_T, dict[str, Any], str], _T],
    default_base: str,
    overrides: Mapping[str, Any] | list[str] | None = None,
    error: type[ConfigError] = ConfigError,
    schema_version: int = SCHEMA_VERSION,
) -> _T:
    """Resolve a configuration: an instance, a preset name or a file, then per-key overrides.

    Args:
        spec: an instance of ``cls`` (used as is), a preset name, or a .yaml/.yml/.json file whose ``base``
            key (default ``default_base``) names the preset its other keys override.
        what: the kind of configuration, capitalised, for messages (``"Periphery"``).
        cls: the configuration class.
        presets: name -> instance.
        merge: ``merge(base, overrides, source)`` returns ``base`` with the keys of ``overrides`` changed,
            validated; ``source`` names where they came from, for messages.
        default_base: the preset a file starts from when it has no ``base`` key.
        overrides: ``{"adc_bits": 6}`` or command-line strings ``["adc_bits=6"]``, applied last.
        error: the exception class to raise.
        schema_version: the ``schema_version`` files may state.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: an unknown preset, a bad file (see :func:`read_config_file`), an unknown ``base``, or an
            invalid key or value.
    """
    if isinstance(spec, cls):
        base = spec
    elif isinstance(spec, str) and spec in presets:
        base = presets[spec]
    elif is_config_file(spec):
        path = os.fspath(spec)  # type: ignore[arg-type]
        label = f"{what} file {path!r}"
        data = read_config_file(path, f"{what} file", schema_version=schema_version, error=error)
        base_name = data.pop("base", default_base)
        if not isinstance(base_name, str) or base_name not in presets:
            raise error(f"{label}: base = {base_name!r} is not a preset; allowed: {', '.join(sorted(presets))}.")
        base = merge(presets[base_name], data, label)
    else:
        raise error(
            f"Unknown {what.lower()} {str(spec)!r}; use one of the presets {', '.join(sorted(presets))}, or the "
            f"path of a {what.lower()} file ending in {', '.join(CONFIG_FILE_SUFFIXES)}."
        )
    parsed = parse_overrides(overrides, what=f"{what} override")
    if not parsed:
        return base
    return merge(base, parsed, f"{what.lower()} override")
