"""The one walker over an ONNX protobuf graph and its subgraphs (If/Loop/Scan bodies, at any depth).

onnx-ir code walks with :class:`onnx_ir.traversal.RecursiveGraphIterator`; code that edits
``onnx.ModelProto`` graphs walks with these functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import onnx

__all__ = ["FLAT", "all_nodes", "expose_values", "node_subgraphs", "walk_graphs"]


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


def replace_nodes(
    graph: onnx.GraphProto,
    select: Callable[[onnx.NodeProto], bool],
    replace: Callable[[onnx.NodeProto], list[onnx.NodeProto]],
) -> None:
    """Replace every node that ``select`` picks, in the graph and all its subgraphs, by the nodes ``replace``
    returns for it. Graphs are rewritten innermost first (their node lists rebuilt), so the subgraphs of a
    replacement are not visited again."""
    for sub, _ in reversed(list(walk_graphs(graph))):
        new_nodes: list[onnx.NodeProto] = []
        changed = False
        for node in sub.node:
            if select(node):
                new_nodes += replace(node)
                changed = True
            else:
                new_nodes.append(node)
        if changed:
            del sub.node[:]
            sub.node.extend(new_nodes)


def all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of the graph and of its subgraphs, each node before the nodes of its subgraphs."""
    for node in graph.node:
        yield node
        for sub in node_subgraphs(node):
            yield from all_nodes(sub)


def drop_unused_initializers(graph: onnx.GraphProto) -> None:
    """Remove the initializers of ``graph`` that no node reads (in the graph or any subgraph)."""
    used = {name for node in all_nodes(graph) for name in node.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def _defining_chains(graph: onnx.GraphProto, chain: tuple = ()) -> Iterator[tuple[str, tuple]]:
    """(value name, chain of (node, attribute name) from the main graph down to the graph defining it)."""
    for value in list(graph.input) + list(graph.initializer):
        yield value.name, chain
    for node in graph.node:
        for out in node.output:
            if out:
                yield out, chain
        for attr in node.attribute:
            subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for sub in subs:
                yield from _defining_chains(sub, (*chain, (node, attr.name, sub)))


FLAT = -1
""":func:`expose_values` depth of a value seen through an ``If`` inside a Loop or Scan body: the calls' values
flattened and concatenated (1-D), since the branch taken, and so the shape, may change between iterations."""


def expose_values(
    graph: onnx.GraphProto, names: dict[str, str] | list[tuple[str, str]], dtypes: dict[str, int] | None = None
) -> dict[str, int]:
    """Make values computed inside subgraphs (If branches, Loop and Scan bodies, at any depth) main-graph
    values, so that a session can fetch them (calibration, a layer's ideal inputs).

    ``names`` maps a value's name to the main-graph value name it gets, or lists (value, target) pairs (a
    value that several targets copy); a value of the main graph itself gets an ``Identity`` under that name.
    Level by level up to the main graph, the value becomes an extra output of its graph and of the node that
    holds the graph: a Loop or Scan body adds it as a scan output (stacked over the iterations, one leading
    axis per level), an ``If`` branch as an output whose other branch gives an empty tensor (shape (0,)) when
    it runs. Below an ``If`` that sits inside a Loop or Scan body, the shape may change between iterations,
    so from that ``If`` up the value is flattened and the Loop/Scan levels concatenate it in a carried state
    (depth :data:`FLAT`). ``dtypes`` gives a value's element type (default float). The caller adds the
    main-graph values as graph outputs where it wants them.

    Returns:
        main-graph value name -> number of stacked leading axes (Loop/Scan levels), or :data:`FLAT`; a
        value not found, or held by a node of another kind of control flow, is left out.
    """
    dtypes = dtypes or {}
    defining: dict[str, tuple] = {}
    for name, chain in _defining_chains(graph):
        defining.setdefault(name, chain)
    depths: dict[str, int] = {}
    exposed: dict[str, tuple[str, int]] = {}  # value name -> (main-graph name, depth), one exposure per value
    for name, target in names.items() if isinstance(names, dict) else names:
        found_chain = defining.get(name)
        if found_chain is None:
            continue
        chain = found_chain
        if name in exposed:
            current, depth = exposed[name]
        else:
            found = _expose(graph, name, chain, dtypes.get(name, onnx.TensorProto.FLOAT))
            if found is None:
                continue
            current, depth = found
            exposed[name] = found
        graph.node.append(onnx.helper.make_node("Identity", [current], [target], name=f"{target}.exposed"))
        depths[target] = depth
    return depths


def _expose(graph: onnx.GraphProto, name: str, chain: tuple, dtype: int) -> tuple[str, int] | None:
    if any(node.op_type not in ("If", "Loop", "Scan") or node.domain not in ("", "ai.onnx") for node, _, _ in chain):
        return None
    make = onnx.helper.make_node
    current, depth, flat = name, 0, False
    for level in range(len(chain) - 1, -1, -1):
        node, attr_name, sub = chain[level]
        inner = f"{name}.exposed{level}"
        outer = f"{name}.up{level}"
        if node.op_type == "If":
            if not flat and any(n.op_type != "If" for n, _, _ in chain[:level]):  # an iterating body above
                flat, depth = True, FLAT
                shape = f"{inner}.flat_shape"
                sub.node.append(make("Constant", [], [shape], value=onnx.helper.make_tensor(shape, 7, [1], [-1])))
                sub.node.append(make("Reshape", [current, shape], [inner], name=f"{inner}.flatten"))
            else:
                sub.node.append(make("Identity", [current], [inner], name=f"{inner}.identity"))
            absent = f"{inner}.absent"
            empty = onnx.helper.make_tensor(absent, dtype, [0], [])
            for a in node.attribute:
                if a.type != onnx.AttributeProto.GRAPH:
                    continue
                if a.name != attr_name:  # the other branch: an empty tensor when it runs
                    a.g.node.append(make("Constant", [], [absent], name=absent, value=empty))
                out = inner if a.name == attr_name else absent
                a.g.output.append(onnx.helper.make_tensor_value_info(out, dtype, None))
            node.output.append(outer)
        elif flat:  # concatenated over the iterations in a carried 1-D state
            n_states = len(node.input) - 2 if node.op_type == "Loop" else len(node.input) - _num_scan_inputs(node)
            first_in = 2 if node.op_type == "Loop" else 0  # body inputs before the states: Loop's i and cond
            first_out = 1 if node.op_type == "Loop" else 0  # body outputs before the states: Loop's cond
            init, state_in = f"{inner}.init", f"{inner}.state_in"
            graph_of_node = chain[level - 1][2] if level else graph
            empty = onnx.helper.make_tensor(init, dtype, [0], [])
            graph_of_node.node.insert(0, make("Constant", [], [init], name=init, value=empty))
            node.input.insert(first_in + n_states if node.op_type == "Loop" else n_states, init)
            sub.input.insert(first_in + n_states, onnx.helper.make_tensor_value_info(state_in, dtype, None))
            sub.node.append(make("Concat", [state_in, current], [inner], axis=0, name=f"{inner}.concat"))
            sub.output.insert(first_out + n_states, onnx.helper.make_tensor_value_info(inner, dtype, None))
            node.output.insert(n_states, outer)
        else:
            sub.node.append(make("Identity", [current], [inner], name=f"{inner}.identity"))
            sub.output.append(onnx.helper.make_tensor_value_info(inner, dtype, None))
            depth += 1
            if node.op_type == "Scan":
                for a in node.attribute:
                    if a.name in ("scan_output_axes", "scan_output_directions"):
                        a.ints.append(0)
            node.output.append(outer)
        current = outer
    return current, depth


def _num_scan_inputs(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "num_scan_inputs"), 0)
