"""Look up a programming strategy (conductance mapping) by name or strategy file."""

from __future__ import annotations

import os

from anacompile.errors import ConfigError
from anacompile.mapping.base import ConductanceMapping
from anacompile.mapping.differential_pair import SinglePairMapping

__all__ = ["get_mapping", "mapping_from_dict"]


def get_mapping(spec: str | os.PathLike[str] | ConductanceMapping) -> ConductanceMapping:
    """Return the mapping named ``spec`` (``single``) or loaded from a strategy JSON file."""
    if isinstance(spec, ConductanceMapping):
        return spec
    if str(spec) == "single":
        return SinglePairMapping()
    raise ConfigError(f"Unknown programming strategy {str(spec)!r}: use 'single' or a strategy .json file.")


def mapping_from_dict(d: dict) -> ConductanceMapping:
    """Rebuild a mapping from its ``to_dict()`` form (as embedded in a compiled model)."""
    if d.get("name") == "single":
        return SinglePairMapping()
    raise ConfigError(f"Unknown embedded programming strategy {d.get('name')!r}.")
