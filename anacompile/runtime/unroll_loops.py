"""Recurrent Loops unrolled in the analog session's model, for the sequence length at hand.

A recurrent layer compiles to a ``Loop`` over time steps whose body holds its ``AnalogMatMul`` nodes
(:mod:`anacompile.passes.recurrent`). In onnxruntime every iteration of a Loop pays for the body's own
frame, and an AnalogMatMul in a Loop body computes its noise slice in the graph (``step_noise``: ~15 small
nodes per step, then a Slice and a Reshape of the noise bank; :mod:`anacompile.runtime.passes.noise_inputs`).
When the trip count is known for the inputs at hand, the session runs a copy of its model with such Loops
unrolled instead: T copies of the body in the main graph, each step's AnalogMatMul fed its noise as a
tensor (the ``fed`` overload, as a main-graph layer), so onnxruntime also plans memory across steps and
shares what the steps compute alike (the derived weights |W|, W_ir). The compiled file is not changed.

**Same numbers.** Step i of a Loop reads the bank slice [s + i step, s + (i + 1) step) of the layer's
reserved range [s, s + T step) (the modulo of the in-graph offsets never wraps inside the reserved range),
so the unrolled model is fed exactly those slices, in the layout of the fed bodies: the unrolled session
gives bit for bit the Loop's outputs, noise on (tests/runtime/test_unroll_loops.py), and the noise law,
the per-(chip, t) offset streams and everything built on them are unchanged.

**Zero initial states.** Where a Loop's carried state starts as zeros (a ``ConstantOfShape`` of +0: no
initial state given), step 0's MVM input [x_0, 0] becomes x_0 and its weights (and IR row weights) their
x rows, so that step multiplies K = input size rows instead of input + hidden (the digits LSTM: 8 of 72).
The same numbers: every other use of X in an untiled body is elementwise, or a max of |X| over the row,
and the tile MVM's sums start from +0, to which a +0 or -0 product adds nothing (tests: bytes equal).

**When.** A main-graph Loop is unrolled when its iteration count depends on the input shapes only (the
trip count's producers are Shape/Size of any value, constants and shape arithmetic), it has no loop
condition (every iteration runs), its analog layers sit in its body directly (or under the session's
digital switch), and the count for the inputs at hand, read once per input shapes from the digital model,
is between 1 and ``max_steps`` (:data:`MAX_UNROLL_STEPS`, the ``AnalogSession(unroll_steps=...)``
parameter; 0 never unrolls). Longer or unknown sequences run the Loop. The unrolled session of some input
shapes is built at their second run (:data:`UNROLL_AFTER_RUNS`; the first runs the Loop), for at most
:data:`MAX_UNROLLED_SESSIONS` input shapes per session; other shapes run the Loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from anacompile import contract
from anacompile.contract import TILED
from anacompile.crossbar.functions import NoiseSource, overload_name
from anacompile.graph_walk import node_subgraphs
from anacompile.runtime.passes.noise_inputs import NOISE_INPUT

__all__ = [
    "MAX_UNROLLED_SESSIONS",
    "MAX_UNROLL_STEPS",
    "UNROLL_AFTER_RUNS",
    "LoopSite",
    "LoopUnroller",
    "loop_sites",
    "unroll_model",
]

logger = logging.getLogger(__name__)

MAX_UNROLL_STEPS = 32
"""Default largest trip count that is unrolled (``AnalogSession(unroll_steps=...)``). An unrolled step adds
~60 nodes (the AnalogMatMul body inlined) to the session's model, which onnxruntime builds once per input
shapes (~0.3 s at T = 8, ~0.7 s at 32, ~1.5 s at 64 for a one-layer LSTM on this project's machine), while
the run gains most where the steps are small (the digits LSTM: 0.5-0.8x the Loop's time at batch 1, 0.8-1.0x
at 256; a batch-32 LSTM: 0.98-1.06x at T = 8 ... 128; bench/README.md, issue 14, item 2); longer sequences
keep the Loop."""
MAX_UNROLLED_SESSIONS = 4
"""Unrolled sessions an AnalogSession builds (one per input shapes: sequence lengths); input shapes beyond
them run the Loop (nothing is evicted, so inputs of many lengths never rebuild sessions over and over)."""
UNROLL_AFTER_RUNS = 2
"""Runs with the same input shapes before their unrolled session is built (a one-off shape runs the Loop)."""
MAX_COUNTED_SHAPES = 1024
"""Input shapes whose runs are counted at once (the counts restart beyond)."""

STEP_NOISE = "noise_step"
"""Suffix of an unrolled step's fed noise input: ``<layer>.noise_step<i>``."""

# ops whose output depends only on their inputs' values; with Shape/Size/constants at the leaves, a trip
# count computed from them depends on the input shapes only
_SHAPE_ARITHMETIC = {
    "Gather",
    "Slice",
    "Concat",
    "Squeeze",
    "Unsqueeze",
    "Cast",
    "Reshape",
    "Identity",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "ReduceProd",
    "ReduceSum",
    "Max",
    "Min",
    "Abs",
}


@dataclass(frozen=True)
class LoopSite:
    """A main-graph Loop the session may unroll: its node name, trip-count value and analog layers."""

    name: str
    trip: str
    layers: tuple[str, ...]


def _is_loop(node: onnx.NodeProto) -> bool:
    return node.op_type == "Loop" and node.domain in ("", "ai.onnx")


def _is_analog(node: onnx.NodeProto) -> bool:
    return node.domain == contract.DOMAIN and node.op_type == contract.ANALOG_MATMUL


def _shape_derived(graph: onnx.GraphProto, value: str) -> bool:
    """Whether main-graph ``value`` is computed from input shapes and constants only."""
    producers = {out: node for node in graph.node for out in node.output if out}
    constants = {t.name for t in graph.initializer}
    inputs = {v.name for v in graph.input}
    seen: set[str] = set()
    todo = [value]
    while todo:
        name = todo.pop()
        if name in seen or name == "":
            continue
        seen.add(name)
        if name in constants and name not in inputs:
            continue
        node = producers.get(name)
        if node is None or node.domain not in ("", "ai.onnx"):
            return False  # a graph input's value, an outer value or a custom op
        if node.op_type in ("Shape", "Size", "Constant"):
            continue
        if node.op_type not in _SHAPE_ARITHMETIC:
            return False
        todo.extend(node.input)
    return True


def _body_layers(body: onnx.GraphProto, names: set[str]) -> list[str] | None:
    """The session layers in a Loop body: directly in it, or alone under the session's digital switch (an If
    whose then branch is the layer); None when a layer sits deeper (a user's If or a nested Loop), where the
    session's digital model flattens its inputs and the steps' shapes are unknown."""
    found: list[str] = []

    def deeper(graph: onnx.GraphProto) -> bool:
        for node in graph.node:
            if _is_analog(node) and node.name in names:
                return True
            if any(deeper(sub) for sub in node_subgraphs(node)):
                return True
        return False

    for node in body.node:
        if _is_analog(node) and node.name in names:
            found.append(node.name)
            continue
        subs = list(node_subgraphs(node))
        if node.op_type == "If" and node.name.endswith(".switch") and subs:
            then = next(a.g for a in node.attribute if a.name == "then_branch")
            inner = [n.name for n in then.node if _is_analog(n) and n.name in names]
            if len(then.node) == 1 and inner:
                found.extend(inner)
                if any(deeper(a.g) for a in node.attribute if a.name == "else_branch"):
                    return None
                continue
        if any(deeper(sub) for sub in subs):
            return None
    return found


def loop_sites(proto: onnx.ModelProto, layer_names) -> list[LoopSite]:
    """The main-graph Loops of the session's model that can be unrolled (module docstring: when)."""
    graph = proto.graph
    names = set(layer_names)
    sites = []
    for node in graph.node:
        if not _is_loop(node) or len(node.input) < 2 or not node.input[0] or node.input[1]:
            continue
        body = next(a.g for a in node.attribute if a.name == "body")
        if len(body.input) < 2 or not body.output:
            continue
        cond_in, cond_out = body.input[1].name, body.output[0].name
        producer = next((n for n in body.node if cond_out in n.output), None)
        if cond_out != cond_in and not (
            producer is not None and producer.op_type == "Identity" and list(producer.input) == [cond_in]
        ):
            continue  # the body decides whether to go on: the count is not the trip count
        layers = _body_layers(body, names)
        if not layers or not _shape_derived(graph, node.input[0]):
            continue
        sites.append(LoopSite(node.name, node.input[0], tuple(layers)))
    return sites


class _Names:
    """Renames the values defined in one copy of a Loop body (suffix ``.u<i>``), at any depth."""

    def __init__(self, suffix: str, mapping: dict[str, str]) -> None:
        self.suffix = suffix
        self.mapping = mapping

    def define(self, name: str) -> str:
        if not name:
            return name
        new = f"{name}{self.suffix}"
        self.mapping[name] = new
        return new

    def use(self, name: str) -> str:
        return self.mapping.get(name, name)

    def child(self) -> _Names:
        return _Names(self.suffix, dict(self.mapping))


def _copy_nodes(nodes, names: _Names, edit) -> list[onnx.NodeProto]:
    """Copies of ``nodes`` with every value defined in them renamed (subgraphs included) and ``edit``
    applied to each copy (before its outputs are renamed)."""
    out = []
    for node in nodes:
        new = onnx.NodeProto()
        new.CopyFrom(node)
        del new.input[:]
        new.input.extend(names.use(i) if i else "" for i in node.input)
        for attr in new.attribute:
            subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for sub in subs:
                _rename_subgraph(sub, names.child(), edit)
        edit(new, node)
        del new.output[:]
        new.output.extend(names.define(o) for o in node.output)
        if new.name:
            new.name = f"{new.name}{names.suffix}"
        out.append(new)
    return out


def _rename_subgraph(graph: onnx.GraphProto, names: _Names, edit) -> None:
    for value in graph.input:
        value.name = names.define(value.name)
    for init in graph.initializer:
        init.name = names.define(init.name)
    nodes = _copy_nodes(list(graph.node), names, edit)
    del graph.node[:]
    graph.node.extend(nodes)
    for value in graph.output:
        value.name = names.use(value.name)
    del graph.value_info[:]


def _step_noise_shape(lead: tuple[int, ...], n_tiles: int, tiled: bool, n_out: int, passes: int) -> tuple[int, ...]:
    """Shape of one step's fed noise, as the fed bodies take it (session._noise_shapes for a fed layer)."""
    head = (passes,) if passes > 1 else ()
    if tiled:
        return (*head, n_tiles, int(np.prod(lead)), n_out)
    return (*head, *lead, n_out)


def unroll_model(
    proto: onnx.ModelProto, steps: dict[str, int], layers: dict, noise_shapes: dict[str, tuple[int, ...]] | None
) -> onnx.ModelProto:
    """``proto`` with the Loops named in ``steps`` (Loop name -> trip count >= 1) unrolled.

    ``layers`` maps the unrolled Loops' layer names to the session's ``ChipLayer``; ``noise_shapes`` maps
    them to one step's fed noise shape (None: the periphery has no per-MVM noise). Each step's
    AnalogMatMul reads graph input ``<layer>.noise_step<i>`` through the fed overload; the Loop outputs keep
    their names (final states; scan outputs stacked on a new axis 0).
    """
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    g = m.graph
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 17)
    new_nodes: list[onnx.NodeProto] = []
    zeros = _zero_values(g)
    for node in g.node:
        if not (_is_loop(node) and node.name in steps):
            new_nodes.append(node)
            continue
        n_steps = steps[node.name]
        body = next(a.g for a in node.attribute if a.name == "body")
        n_carried = len(body.input) - 2
        n_scan = len(body.output) - 1 - n_carried
        carried = list(node.input[2:])
        scans: list[list[str]] = [[] for _ in range(n_scan)]
        p = f"{node.name}.unrolled"
        true = f"{p}.true"
        new_nodes.append(
            helper.make_node("Constant", [], [true], value=helper.make_tensor(true, onnx.TensorProto.BOOL, [], [True]))
        )
        for i in range(n_steps):
            names = _Names(f".u{i}", {})
            it = f"{p}.i{i}"
            new_nodes.append(
                helper.make_node("Constant", [], [it], value=helper.make_tensor(it, onnx.TensorProto.INT64, [], [i]))
            )
            names.mapping[body.input[0].name] = it
            names.mapping[body.input[1].name] = true
            for value, outer in zip(body.input[2:], carried, strict=True):
                names.mapping[value.name] = outer

            zero_row_nodes: dict[str, list[onnx.NodeProto]] = {}  # step 0's MVM output -> its weight slices

            def edit(
                new: onnx.NodeProto,
                old: onnx.NodeProto,
                i: int = i,
                names: _Names = names,
                body=body,
                rows=zero_row_nodes,
            ) -> None:
                if not (_is_analog(old) and old.name in layers):
                    return
                if i == 0:
                    _drop_zero_rows(new, old, body, names, zeros, rows, opset)
                if noise_shapes is None:
                    return
                fed = f"{old.name}.{STEP_NOISE}{i}"
                rest = list(new.input[NOISE_INPUT + 3 :])  # the calibrated output gains stay the last input
                del new.input[NOISE_INPUT:]
                new.input.extend([fed, "", ""] + rest if rest else [fed])
                new.overload = overload_name(old.overload == TILED, NoiseSource.FED)

            for init in body.initializer:
                copy = onnx.TensorProto()
                copy.CopyFrom(init)
                copy.name = names.define(init.name)
                g.initializer.append(copy)
            for copy in _copy_nodes(list(body.node), names, edit):
                new_nodes += zero_row_nodes.get(copy.output[0], []) if copy.output else []
                new_nodes.append(copy)
            outs = [names.use(v.name) for v in body.output]
            carried = outs[1 : 1 + n_carried]
            for k in range(n_scan):
                scans[k].append(outs[1 + n_carried + k])
        finals = list(node.output[:n_carried])
        for final, value in zip(finals, carried, strict=True):
            if final:
                new_nodes.append(helper.make_node("Identity", [value], [final], name=f"{final}.unrolled"))
        axes = f"{p}.axes"
        if opset >= 13:
            new_nodes.append(
                helper.make_node(
                    "Constant", [], [axes], value=helper.make_tensor(axes, onnx.TensorProto.INT64, [1], [0])
                )
            )
        for k, values in enumerate(scans):
            out = node.output[n_carried + k] if len(node.output) > n_carried + k else ""
            if not out:
                continue
            parts = []
            for i, v in enumerate(values):
                part = f"{out}.step{i}"
                if opset >= 13:
                    new_nodes.append(helper.make_node("Unsqueeze", [v, axes], [part]))
                else:
                    new_nodes.append(helper.make_node("Unsqueeze", [v], [part], axes=[0]))
                parts.append(part)
            new_nodes.append(helper.make_node("Concat", parts, [out], axis=0, name=f"{out}.stacked"))
    del g.node[:]
    g.node.extend(_live(new_nodes, {o.name for o in g.output}))
    _add_step_inputs(g, steps, layers, noise_shapes, proto)
    return m


def _zero_values(graph: onnx.GraphProto) -> set[str]:
    """Main-graph values that are float tensors of +0 only: ``ConstantOfShape`` of +0 and such initializers."""
    zeros = set()
    for init in graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT and not init.data_location:
            a = numpy_helper.to_array(init)
            if a.size and not a.view(np.uint32).any():  # +0.0 is the all-zero bit pattern (-0.0 is not)
                zeros.add(init.name)
    for node in graph.node:
        if node.op_type != "ConstantOfShape" or node.domain not in ("", "ai.onnx"):
            continue
        value = next((a.t for a in node.attribute if a.name == "value"), None)  # default: float +0
        if value is None or (
            value.data_type == onnx.TensorProto.FLOAT
            and not numpy_helper.to_array(value).astype(np.float32).view(np.uint32).any()
        ):
            zeros.add(node.output[0])
    return zeros


def _int64s(name: str, values: list[int]) -> onnx.NodeProto:
    return helper.make_node(
        "Constant", [], [name], value=helper.make_tensor(name, onnx.TensorProto.INT64, [len(values)], values)
    )


def _drop_zero_rows(new, old, body, names: _Names, zeros: set[str], out: dict, opset: int) -> None:
    """Step 0's copy ``new`` of the body's AnalogMatMul ``old``: when its X is Concat([x, h], last axis) of an
    input x and a carried state h that starts as zeros (or [h, x]), X becomes x and W and the IR row weights
    their x rows (module docstring: zero initial states); the slicing nodes go to ``out[Y]``."""
    if opset < 10 or new.overload not in ("", overload_name(False, NoiseSource.FED)) or len(new.input) < 6:
        return  # row-tiled bodies pad and reshape X: their rows are not W's rows
    if not any(n is old for n in body.node):
        return  # under the session's digital switch (an If branch): left as it is
    concat = next((n for n in body.node if old.input[0] in n.output), None)
    if concat is None or concat.op_type != "Concat" or concat.domain not in ("", "ai.onnx") or len(concat.input) != 2:
        return
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in body.input[2:] if v.type.tensor_type.HasField("shape")}
    axis = next((a.i for a in concat.attribute if a.name == "axis"), None)
    for k in (0, 1):
        state = concat.input[1 - k]
        if state not in ranks or names.use(state) not in zeros or axis not in (-1, ranks[state] - 1):
            continue  # not a carried state of known rank starting as zeros, or not concatenated on its rows
        x, y = names.use(concat.input[k]), f"{old.output[0]}{names.suffix}"  # Y as it will be renamed
        p = f"{y}.x_rows"
        nodes = [
            _int64s(f"{p}.last", [-1]),
            _int64s(f"{p}.end", [2**62]),
            _int64s(f"{p}.axis", [0]),
            helper.make_node("Shape", [x], [f"{p}.shape"]),
            helper.make_node("Slice", [f"{p}.shape", f"{p}.last", f"{p}.end"], [f"{p}.n"]),
        ]
        if k == 0:  # [x, h]: rows [0, n)
            nodes.append(_int64s(f"{p}.start", [0]))
            bounds = [f"{p}.start", f"{p}.n"]
        else:  # [h, x]: the last n rows
            nodes.append(helper.make_node("Neg", [f"{p}.n"], [f"{p}.start"]))
            bounds = [f"{p}.start", f"{p}.end"]
        for pos, tag in ((1, "w"), (5, "ir")):
            if new.input[pos]:
                nodes.append(helper.make_node("Slice", [new.input[pos], *bounds, f"{p}.axis"], [f"{p}.{tag}"]))
                new.input[pos] = f"{p}.{tag}"
        new.input[0] = x
        out[y] = nodes
        return


def _add_step_inputs(g, steps, layers, noise_shapes, proto) -> None:
    """Graph inputs of the steps' fed noise; the noise inputs no node reads any more are dropped."""
    if noise_shapes is not None:
        trips = {}
        for node in proto.graph.node:
            if _is_loop(node) and node.name in steps:
                body = next(a.g for a in node.attribute if a.name == "body")
                for name in _body_layers(body, set(layers)) or []:
                    trips[name] = steps[node.name]
        # no declared shape: with a known (M, N) noise onnxruntime fuses a step's MatMul and its noise Add into
        # one Gemm (MatMulAddFusion; the lean body), whose rounding differs from the Loop body's MatMul + Add
        for name, n_steps in trips.items():
            for i in range(n_steps):
                g.input.append(helper.make_tensor_value_info(f"{name}.{STEP_NOISE}{i}", onnx.TensorProto.FLOAT, None))
    used = {i for n in _all(g) for i in n.input}
    outputs = {o.name for o in g.output}
    keep = [v for v in g.input if v.name in used or v.name in outputs]
    del g.input[:]
    g.input.extend(keep)


def _all(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for sub in node_subgraphs(node):
            yield from _all(sub)


def _live(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """``nodes`` without those whose outputs nothing reads (the steps' dead in-graph noise offsets)."""
    needed = set(outputs)
    keep = []
    for node in reversed(nodes):
        if any(o in needed for o in node.output if o):
            keep.append(node)
            needed.update(i for i in node.input if i)
            for sub in node_subgraphs(node):
                needed.update(_outer_reads(sub))
    return keep[::-1]


def _outer_reads(graph: onnx.GraphProto) -> set[str]:
    """Names a subgraph reads (from its scope or an outer one), conservatively: every input of its nodes."""
    reads: set[str] = set()
    for node in _all(graph):
        reads.update(i for i in node.input if i)
    reads.update(o.name for o in graph.output)
    return reads


class LoopUnroller:
    """Picks, per input shapes, the session's model with its Loops unrolled (or the Loop model) and turns
    the run's bank offsets into the steps' fed noise.

    Args:
        session: the :class:`~anacompile.runtime.session.AnalogSession` (its model, layers, periphery,
            options and providers).
        max_steps: largest trip count unrolled (0: never).
    """

    def __init__(self, session, max_steps: int = MAX_UNROLL_STEPS) -> None:
        self.session = session
        self.max_steps = int(max_steps)
        self.sites = loop_sites(session._session_proto, [layer.name for layer in session.layers])
        self._by_shapes: dict[tuple, tuple | None] = {}  # input shapes -> unrolled session, or None: the Loop
        self._runs: dict[tuple, int] = {}  # runs per input shapes not decided yet
        self._input_names: frozenset[str] | None = None  # the session's model inputs (set after this is made)

    def __bool__(self) -> bool:
        return self.max_steps > 0 and bool(self.sites)

    def prepare(self, feeds: dict[str, np.ndarray], run_feeds: dict[str, np.ndarray], single: bool = False):
        """(onnxruntime session, feeds) for this run: the unrolled model's where the inputs' shapes allow
        (``single``: sessions of one intra-op thread, for the concurrent parts of a split run)."""
        names = self._input_names
        if names is None:
            names = self._input_names = frozenset(self.session.input_names)
        key = (tuple((k, np.shape(v)) for k, v in feeds.items() if k in names), single)
        if key not in self._by_shapes:
            runs = self._runs.get(key, 0) + 1
            if len(self._runs) >= MAX_COUNTED_SHAPES:
                self._runs.clear()
            self._runs[key] = runs
            if runs < UNROLL_AFTER_RUNS:
                return self.session.ort_session_for(single), run_feeds
            if len(self._by_shapes) >= MAX_COUNTED_SHAPES:  # forget the shapes decided for the Loop
                self._by_shapes = {k: e for k, e in self._by_shapes.items() if e is not None}
            built = sum(e is not None for e in self._by_shapes.values())
            self._by_shapes[key] = self._build(feeds, single) if built < MAX_UNROLLED_SESSIONS else None
        entry = self._by_shapes[key]
        if entry is None:
            return self.session.ort_session_for(single), run_feeds
        ort_sess, inputs, plan, _ = entry
        out = {k: v for k, v in run_feeds.items() if k in inputs}
        if plan:
            bank = self.session._fed_bank
            for start_name, size, shape, step_names in plan:
                s = int(run_feeds[start_name][0])
                steps = bank[s : s + size * len(step_names)].reshape((len(step_names), *shape))
                for i, name in enumerate(step_names):
                    out[name] = steps[i]  # a contiguous view: step i's slice of the layer's reserved range
        return ort_sess, out

    def _build(self, feeds: dict[str, np.ndarray], single: bool = False):
        from anacompile.runtime.ort_session import ort_session

        s = self.session
        xs = s.layer_inputs(feeds)
        by_name = {layer.name: layer for layer in s.layers}
        steps: dict[str, int] = {}
        lead: dict[str, tuple[int, ...]] = {}
        for site in self.sites:
            trips = {int(xs[name].shape[0]) for name in site.layers if xs[name].ndim >= 2}
            if len(trips) != 1 or len({name for name in site.layers}) != len(site.layers):
                continue
            n_steps = trips.pop()
            if not 1 <= n_steps <= self.max_steps:
                logger.debug("Loop %s keeps its %d steps (unroll_steps=%d)", site.name, n_steps, self.max_steps)
                continue
            steps[site.name] = n_steps
            for name in site.layers:
                lead[name] = tuple(int(d) for d in xs[name].shape[1:-1])
        if not steps:
            return None
        layers = {name: by_name[name] for site in self.sites if site.name in steps for name in site.layers}
        noisy = s.periphery.has_mvm_noise
        passes = s.periphery.bm_passes
        shapes = (
            {
                name: _step_noise_shape(lead[name], layer.n_tiles, layer.spec.tiled, layer.n_out, passes)
                for name, layer in layers.items()
            }
            if noisy
            else None
        )
        proto = unroll_model(s._session_proto, steps, layers, shapes)
        ort_sess = ort_session(proto, s._session_options(single), s._providers, label=f"{s.path} (unrolled)")
        inputs = {i.name for i in ort_sess.get_inputs()}
        trip_of = {name: steps[site.name] for site in self.sites if site.name in steps for name in site.layers}
        plan = (
            [
                (
                    f"{name}.{contract.NOISE_START}",
                    int(np.prod(shapes[name])),
                    shapes[name],
                    [f"{name}.{STEP_NOISE}{i}" for i in range(trip_of[name])],
                )
                for name in layers
            ]
            if shapes is not None
            else []
        )
        zero_rows = sum(n.op_type == "Slice" and n.output[0].endswith(".x_rows.w") for n in proto.graph.node)
        logger.debug(
            "unrolled %s for input shapes %s (%d step-0 MVMs on x rows)",
            steps,
            {k: np.shape(v) for k, v in feeds.items()},
            zero_rows,
        )
        return ort_sess, inputs, plan, zero_rows
