"""Walking an onnx-ir graph with the iteration input of the enclosing Loop body (shared by the session passes)."""

from __future__ import annotations

from collections.abc import Iterator

import onnx_ir as ir

from anacompile import contract

__all__ = ["analog_matmuls", "graphs_with_iteration"]


def graphs_with_iteration(
    graph: ir.Graph, iteration: ir.Value | None = None
) -> Iterator[tuple[ir.Graph, ir.Value | None]]:
    """The graph and every subgraph, outermost first, each with the iteration-number input of its innermost
    enclosing Loop body (None outside Loops), as :func:`anacompile.graph_walk.walk_graphs` for protobuf."""
    yield graph, iteration
    for node in list(graph):
        is_loop = node.op_type == "Loop" and node.domain in ("", "ai.onnx")
        for attr in node.attributes.values():
            if attr.type == ir.AttributeType.GRAPH:
                subs = [attr.value]
            elif attr.type == ir.AttributeType.GRAPHS:
                subs = list(attr.value)
            else:
                continue
            for sub in subs:
                yield from graphs_with_iteration(sub, sub.inputs[0] if is_loop and sub.inputs else iteration)


def analog_matmuls(graph: ir.Graph, names) -> Iterator[tuple[ir.Graph, ir.Value | None, ir.Node]]:
    """Every ``AnalogMatMul`` node named in ``names``, with its graph and iteration input."""
    for g, iteration in graphs_with_iteration(graph):
        for node in list(g):
            if node.domain == contract.DOMAIN and node.op_type == contract.ANALOG_MATMUL and node.name in names:
                yield g, iteration, node
