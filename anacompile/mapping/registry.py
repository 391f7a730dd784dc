"""Look up a programming strategy (conductance mapping) by name, name with options, or strategy file.

Specs understood by :func:`get_mapping`:

- ``single``: one differential pair (:class:`~anacompile.mapping.differential_pair.SinglePairMapping`);
- ``dual`` or ``dual:F=2.5``: two pairs W = F (G+ - G-) + (g+ - g-), naive LSP-first fill, F = 2 by default
  (:func:`~anacompile.mapping.multi_pair.dual_pair`);
- ``npair:significance=1,2,4``: P naive pairs with the given F_p, least significant first;
- a path to a strategy ``.json`` file (:class:`~anacompile.mapping.piecewise.PiecewiseMapping`, as written by
  ``anacompile optimize``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from anacompile.errors import ConfigError
from anacompile.mapping.base import ConductanceMapping
from anacompile.mapping.differential_pair import SinglePairMapping
from anacompile.mapping.multi_pair import NPairMapping, dual_pair
from anacompile.mapping.piecewise import PiecewiseMapping

__all__ = ["STRATEGY_NAMES", "get_mapping", "mapping_from_dict"]

STRATEGY_NAMES = ("single", "dual", "npair", "piecewise")
"""Names a mapping's ``to_dict()["name"]`` can take."""

_USAGE = "use 'single', 'dual', 'dual:F=<F>', 'npair:significance=<F0>,<F1>,...' or a strategy .json file"


def _parse_options(spec: str, rest: str) -> dict[str, str]:
    opts: dict[str, str] = {}
    for item in filter(None, rest.split(";")):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"Programming strategy {spec!r}: option {item!r} is not KEY=VALUE; {_USAGE}.")
        opts[key.strip()] = value.strip()
    return opts


def _float(spec: str, key: str, value: str) -> float:
    try:
        return float(value)
    except ValueError as err:
        raise ConfigError(f"Programming strategy {spec!r}: {key}={value!r} is not a number.") from err


def get_mapping(spec: str | os.PathLike[str] | ConductanceMapping) -> ConductanceMapping:
    """Return the mapping named by ``spec`` (see the module docstring) or loaded from a strategy JSON file.

    Raises:
        ConfigError: unknown name, bad option, or an invalid strategy file.
    """
    if isinstance(spec, ConductanceMapping):
        return spec
    text = os.fspath(spec) if isinstance(spec, os.PathLike) else str(spec)
    if text.endswith(".json") or isinstance(spec, os.PathLike):
        return PiecewiseMapping.load(Path(text))
    base, _, rest = text.partition(":")
    opts = _parse_options(text, rest)
    if base == "single" and not opts:
        return SinglePairMapping()
    if base == "dual":
        unknown = set(opts) - {"F"}
        if unknown:
            raise ConfigError(f"Programming strategy {text!r}: unknown option(s) {sorted(unknown)}; dual takes F.")
        return dual_pair(_float(text, "F", opts["F"])) if "F" in opts else dual_pair()
    if base == "npair":
        if set(opts) != {"significance"}:
            raise ConfigError(f"Programming strategy {text!r}: npair takes exactly significance=F0,F1,...")
        f = tuple(_float(text, "significance", v) for v in opts["significance"].split(","))
        return NPairMapping(f)
    raise ConfigError(f"Unknown programming strategy {text!r}: {_USAGE}.")


def mapping_from_dict(d: dict[str, Any]) -> ConductanceMapping:
    """Rebuild a mapping from its ``to_dict()`` form (as embedded in a compiled model).

    Raises:
        ConfigError: unknown ``name`` or malformed fields.
    """
    if not isinstance(d, dict):
        raise ConfigError(f"Embedded programming strategy must be a JSON object, got {type(d).__name__}.")
    name = d.get("name")
    if name == "single":
        return SinglePairMapping()
    if name == "dual":
        if "F" not in d:
            raise ConfigError("Embedded 'dual' strategy lacks its significance factor 'F'.")
        return dual_pair(d["F"])
    if name == "npair":
        if "significance" not in d:
            raise ConfigError("Embedded 'npair' strategy lacks its 'significance' list.")
        return NPairMapping(tuple(d["significance"]))
    if name == "piecewise":
        return PiecewiseMapping.from_dict(d)
    raise ConfigError(f"Unknown embedded programming strategy {name!r}; known: {', '.join(STRATEGY_NAMES)}.")
