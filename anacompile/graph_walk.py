"""The one walker over an ONNX protobuf graph and its subgraphs (If/Loop/Scan bodies, at any depth).

onnx-ir code walks with :class:`onnx_ir.traversal.RecursiveGraphIterator`; code that edits
``onnx.ModelProto`` graphs walks with these functions.
"""

from __future__ import annotations

from collections.abc import Iterator

import onnx

__all__ = ["all_nodes", "node_subgraphs", "walk_graphs"]


def node_subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    """The subgraphs held by a node's attributes (an If's two branches, a Loop's body, ...)."""
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def walk_graphs(graph: onnx.GraphProto, iteration: str | None = None) -> Iterator[tuple[onnx.GraphProto, str | None]]:
    """The graph and every subgraph, outermost first, each with the iteration-number input of its innermost
    enclosing Loop body (``None`` outside Loops)."""
    yield graph, iteration
    for node in graph.node:
        is_loop = node.op_type == "Loop" and node.domain in ("", "ai.onnx")
        for sub in node_subgraphs(node):
            yield from walk_graphs(sub, sub.input[0].name if is_loop and sub.input else iteration)


def all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of the graph and of its subgraphs, each node before the nodes of its subgraphs."""
    for node in graph.node:
        yield node
        for sub in node_subgraphs(node):
            yield from all_nodes(sub)
