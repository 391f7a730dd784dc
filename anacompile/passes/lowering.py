"""The op-lowering interface: how a weight-bearing ONNX op becomes analog layers, and the registry of them.

A :class:`Lowering` pairs, for one ``(domain, op_type)``, the *planner* that
:class:`~anacompile.passes.mark_analog_ops.MarkAnalogOpsPass` runs on a node (it returns the node's
:class:`~anacompile.passes._layer.LayerPlan` or plans, or raises :class:`StaysDigital` with the reason) and the
*emitter* that :class:`~anacompile.passes.rewrite_to_analog_ops.RewriteToAnalogOpsPass` runs to replace the
node by analog ops. Both passes look the node up by the same key in the same :class:`LoweringRegistry`; the
compiler's registry is :data:`anacompile.passes.op_registry.LOWERINGS`, which lists every op module's
lowerings explicitly (no registration by import side effect).

This module also holds the helpers every planner shares (:func:`const_array`, :func:`attr_value`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from anacompile.passes._layer import LayerPlan

__all__ = [
    "EmitContext",
    "Emitter",
    "Lowering",
    "LoweringRegistry",
    "Planner",
    "StaysDigital",
    "attr_value",
    "const_array",
]


class StaysDigital(Exception):
    """Raised by a planner: the node stays digital, for the reason given (recorded in the compile report)."""


def const_array(value: ir.Value | None) -> np.ndarray | None:
    """The constant array behind ``value`` (an initializer or a Constant's output), or None."""
    if value is None:
        return None
    tensor = ir.convenience.get_const_tensor(value)
    return None if tensor is None else tensor.numpy()


def attr_value(node: ir.Node, name: str, default):
    """The value of attribute ``name`` of ``node``, or ``default`` where it is not set."""
    a = node.attributes.get(name)
    return default if a is None else a.value


@dataclass
class EmitContext:
    """What an emitter gets: the graph, the source node and its plans, and ``analog(x, plan)``.

    ``analog(x, plan=None)`` adds the initializers of ``plan`` (default: ``plans[0]``) and returns
    ``(nodes, y)``: ``[AnalogChipWeights, AnalogMatMul]`` computing y = x W + b on the tiles for x of shape
    (..., K). The AnalogChipWeights node belongs in the main graph, before every user of its outputs; the
    AnalogMatMul node may be placed in a subgraph instead (a recurrent op's Loop body), since it reads the
    chip stage's outputs and the layer's initializers as outer-scope values.
    """

    graph: ir.Graph
    node: ir.Node
    plan: LayerPlan
    analog: Callable[..., tuple[list[ir.Node], ir.Value]]
    initializer: Callable[[str, np.ndarray], ir.Value]
    plans: list[LayerPlan] = field(default_factory=list)


Planner = Callable[[ir.Node, str], "LayerPlan | list[LayerPlan]"]
"""``planner(node, layer_name)``: the node's plan (a list for an op that becomes several analog layers), or
:class:`StaysDigital`."""

Emitter = Callable[[EmitContext], "tuple[list[ir.Node], ir.Value | list[ir.Value | None]]"]
"""Returns the main-graph nodes replacing the source node, and its new output (or one per source output,
``None`` where a source output is absent or unused)."""


@dataclass(frozen=True)
class Lowering:
    """How one op type becomes analog: its planner and its emitter, under one key ``(domain, op_type)``."""

    op_type: str
    plan: Planner
    emit: Emitter
    domain: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """``(domain, op_type)``: the key of the registry, for planning and emitting alike."""
        return (self.domain, self.op_type)


class LoweringRegistry:
    """The analog-capable ops, by ``(domain, op_type)``; an op type is registered once (explicitly)."""

    def __init__(self, lowerings: Iterable[Lowering] = ()) -> None:
        self._by_key: dict[tuple[str, str], Lowering] = {}
        for lowering in lowerings:
            self.register(lowering)

    def register(self, lowering: Lowering) -> None:
        """Add ``lowering``; registering a second lowering for the same op is a programming error."""
        if lowering.key in self._by_key:
            raise ValueError(
                f"op {lowering.key} already has a lowering ({self._by_key[lowering.key].plan.__qualname__})"
            )
        self._by_key[lowering.key] = lowering

    def get(self, node: ir.Node) -> Lowering | None:
        """The lowering of ``node``'s op, or None (the node is no weight-bearing op: it stays as it is)."""
        return self._by_key.get((node.domain, node.op_type))

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def __iter__(self) -> Iterator[Lowering]:
        return iter(self._by_key.values())

    def op_types(self) -> list[str]:
        """The registered op types, sorted (for messages)."""
        return sorted({op for _, op in self._by_key})
