"""ApplyPlacementPass: keep chosen layers digital and give chosen layers their own programming strategy.

A placement names layers by node name, analog layer name (a recurrent op's ``name_fwd``...), op type or a
glob pattern over those (:func:`fnmatch.fnmatchcase`), as ``compile --digital`` and ``--layer-strategy``
take them, or comes from a placement JSON file (``@placement.json``, written by ``compile
--accuracy-budget``, :func:`load_placement`) that both options replay. The pass runs right after
MarkAnalogOpsPass: a digital layer loses its plan and is noted with its reason; a layer strategy is stored
in the plan (its :class:`~anacompile.passes._layer.LayerStrategy` record) and read by the mapping,
programming and rewrite passes
(:func:`~anacompile.passes._layer.plan_mapping`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import onnx_ir as ir

from anacompile.errors import ConfigError
from anacompile.mapping.base import ConductanceMapping
from anacompile.mapping.registry import get_mapping, mapping_from_dict
from anacompile.passes._layer import DIGITAL_KEY, LAYER_KEY, LayerStrategy, node_plans

__all__ = ["PLACEMENT_FORMAT", "ApplyPlacementPass", "Placement", "load_placement", "parse_placement"]

PLACEMENT_FORMAT = "anacompile.placement"


@dataclass
class Placement:
    """Which layers stay digital (with a reason each) and which get their own programming strategy.

    Attributes:
        digital: names or patterns of layers to keep digital.
        layer_strategies: name or pattern -> strategy spec (``single``, ``dual``, ``npair:significance=1,2,4``,
            a strategy .json path, or a strategy's ``to_dict()`` form).
        reasons: name -> why it stays digital (reported; default: the option that asked for it).
    """

    digital: list[str] = field(default_factory=list)
    layer_strategies: dict[str, Any] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.digital or self.layer_strategies)

    def merge(self, other: Placement) -> Placement:
        """Both placements (``other`` wins where both give a layer a strategy)."""
        return Placement(
            [*self.digital, *(d for d in other.digital if d not in self.digital)],
            {**self.layer_strategies, **other.layer_strategies},
            {**self.reasons, **other.reasons},
        )

    def to_dict(self) -> dict[str, Any]:
        """The placement JSON's core fields."""
        return {
            "format": PLACEMENT_FORMAT,
            "version": 1,
            "digital": list(self.digital),
            "layer_strategies": dict(self.layer_strategies),
            "reasons": dict(self.reasons),
        }


def load_placement(path: str | os.PathLike[str]) -> Placement:
    """Read a placement JSON file (``{"digital": [...], "layer_strategies": {...}}``).

    Raises:
        ConfigError: no such file, not JSON, or fields of the wrong type.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"Placement file {p} does not exist.")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"Placement file {p} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"Placement file {p}: expected an object with 'digital' and 'layer_strategies'.")
    digital, strategies = data.get("digital", []), data.get("layer_strategies", {})
    reasons = data.get("reasons", {})
    if not isinstance(digital, list) or not all(isinstance(d, str) for d in digital):
        raise ConfigError(f"Placement file {p}: 'digital' must be a list of layer names.")
    if not isinstance(strategies, dict) or not isinstance(reasons, dict):
        raise ConfigError(f"Placement file {p}: 'layer_strategies' and 'reasons' must be objects keyed by layer.")
    return Placement(list(digital), dict(strategies), {str(k): str(v) for k, v in reasons.items()})


def parse_placement(
    digital: str | list[str] | Placement | None = None, layer_strategies: dict[str, Any] | list[str] | None = None
) -> Placement:
    """A placement from ``--digital`` values (names, patterns, ``@placement.json``; commas split names, or a
    :class:`Placement`) and
    ``--layer-strategy NAME=SPEC`` values (or a dict, or ``@placement.json``).

    Raises:
        ConfigError: a ``--layer-strategy`` without ``=``, or a bad placement file.
    """
    out = Placement()
    if isinstance(digital, Placement):
        out, digital = out.merge(digital), None
    items = [digital] if isinstance(digital, str) else list(digital or [])
    for item in items:
        for part in [s.strip() for s in str(item).split(",") if s.strip()]:
            if part.startswith("@"):
                out = out.merge(load_placement(part[1:]))
            elif part not in out.digital:
                out.digital.append(part)
    if isinstance(layer_strategies, dict):
        out.layer_strategies.update(layer_strategies)
    else:
        for item in layer_strategies or []:
            if str(item).startswith("@"):
                out = out.merge(load_placement(str(item)[1:]))
                continue
            name, sep, spec = str(item).partition("=")
            if not sep or not name.strip() or not spec.strip():
                raise ConfigError(f"--layer-strategy {item!r}: write NAME=SPEC, e.g. --layer-strategy fc1=dual.")
            out.layer_strategies[name.strip()] = spec.strip()
    return out


def strategy_of(spec: Any) -> ConductanceMapping:
    """A layer strategy spec (name, file, or ``to_dict()`` form) as a mapping."""
    return mapping_from_dict(spec) if isinstance(spec, dict) else get_mapping(spec)


def _matches(pattern: str, node: ir.Node, names: list[str]) -> bool:
    keys = [node.name or "", node.op_type, *names]
    return any(fnmatchcase(k, pattern) for k in keys if k)


class ApplyPlacementPass(ir.passes.InPlacePass):
    """Keep the placement's digital layers digital and set its per-layer strategies.

    Every name or pattern must match at least one analog-capable layer (else a :class:`ConfigError` lists
    the layers), so a typo never silently leaves a layer analog. A node whose analog layers (a recurrent op
    has several) are named only in part is kept digital whole: the op runs as one.
    """

    def __init__(self, placement: Placement) -> None:
        super().__init__()
        self.placement = placement
        self.mappings = {k: strategy_of(v) for k, v in placement.layer_strategies.items()}

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        used: set[str] = set()
        candidates = []
        for node in ir.traversal.RecursiveGraphIterator(model.graph):  # If/Loop bodies too
            plans = node_plans(node)
            if plans:
                candidates.append((node, plans))
        modified = False
        for node, plans in candidates:
            names = [p.name for p in plans]
            hit = next((d for d in self.placement.digital if _matches(d, node, names)), None)
            if hit is not None:
                used.add(hit)
                reason = self.placement.reasons.get(hit) or next(
                    (self.placement.reasons[n] for n in names if n in self.placement.reasons), None
                )
                del node.meta[LAYER_KEY]
                node.meta[DIGITAL_KEY] = reason or f"kept digital by --digital {hit}"
                modified = True
                continue
            for plan in plans:
                chosen = None
                for pattern, mapping in self.mappings.items():
                    if _matches(pattern, node, [plan.name]):  # the last matching pattern wins
                        used.add(pattern)
                        chosen = LayerStrategy(mapping, self.placement.layer_strategies[pattern])
                if chosen is not None:
                    plan.take(LayerStrategy)  # this pass's own record: a second run sets it again
                    plan.write(chosen)
                    modified = True
        unknown = [p for p in [*self.placement.digital, *self.mappings] if p not in used]
        if unknown:
            known = sorted({n for node, plans in candidates for n in [node.name, *(p.name for p in plans)] if n})
            shown = ", ".join(known[:30]) + (", ..." if len(known) > 30 else "")
            raise ConfigError(
                f"Placement names {unknown} match no analog-capable layer (layers: {shown}); names "
                "are node names, layer names, op types or glob patterns."
            )
        return ir.passes.PassResult(model, modified=modified)
