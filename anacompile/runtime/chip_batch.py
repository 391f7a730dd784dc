"""Many chips per onnxruntime call: (chip, t) pairs on a leading axis of one run (:class:`ChipBatch`).

An :class:`~anacompile.runtime.session.AnalogSession` runs one programmed chip at one time per
onnxruntime call, so a small model pays onnxruntime's per-node cost once per (chip, t). A ``ChipBatch``
runs P pairs in one call: the model's inputs are repeated P times along the batch axis (axis 0), every
``AnalogMatMul`` sees its input as (P, vectors, K) and multiplies it with the pairs' stacked effective
weights (P, K, N) (a batched MatMul; tiled layers (P, n_tiles, rows, N)), the digital ops run on the
folded batch unchanged, and the outputs are cut back into P parts.

Each pair keeps what makes it that chip at that time: its effective weights and output scales (computed by
the session's numpy stage, :meth:`AnalogSession.snapshot`) and its own stream of noise-bank offsets, keyed
by (seed, chip, t). The noise of pair p is the slice of the experiment's noise bank its stream points to,
exactly as a one-pair run draws it, so a pair's outputs are the same (bit for bit) whichever pairs share
its call, in whatever order.

What cannot be batched this way is refused with the reason (:func:`batch_obstacle`); the drivers then run
one pair per call:

* analog layers inside Loop bodies (recurrent ops: their noise is sliced per step inside the loop);
* models that mix samples along axis 0 (checked once per input shape on the digital model: two different
  halves of a doubled batch must give the two halves' own layer inputs and outputs);
* per-pair BatchNormalization statistics (AdaBS re-estimates them per (chip, t));
* convolutions the session runs as native ``Conv`` ops of the fed weights (:mod:`anacompile.runtime.native_conv`:
  a Conv's kernel cannot vary along the batch); the patch path (abs-max input ranges, switchable sessions)
  batches.

**Memory bound.** The pairs per call P are chosen by :func:`pairs_per_call` so that the estimated memory of
one call stays under a bound (``batch_memory_mb``): per pair, :data:`ACTIVATION_COPIES` float32 copies of
every analog layer's input and of its noise-sized outputs (quantised input, |q|, q^2, the MVM, IR-drop and
read-noise outputs, noise, ADC), plus the pair's fed state and noise and its copy of the inputs.
``batch_memory_mb=0`` runs one pair per call, and so does a bound that fits fewer than
:data:`MIN_PAIRS_PER_CALL` pairs.

The default bound is the size of one core's L2 cache (:func:`default_batch_memory_mb`; 2 MiB where the
system does not say), not the machine's memory: the periphery is a chain of elementwise passes, and once a
call's tensors leave the cache every pass streams from memory (onnxruntime, one thread: 0.2 ns per element
and op at 0.3 MB, 1.3 ns at 11 MB). Pairs then gain nothing from sharing a call, so a call that already fills
the cache with one pair (the digits CNN on its 540 test images) runs one pair per call, and many pairs share
a call where one pair's tensors are small (few samples per call, small layers): bench/README.md, issue 14.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from anacompile import contract
from anacompile.contract import TILED
from anacompile.crossbar.functions import NoiseSource, build_analog_matmul_function
from anacompile.errors import ConfigError, DataError, UnsupportedModelError
from anacompile.graph_walk import replace_nodes
from anacompile.runtime.ort_session import ort_session
from anacompile.runtime.samples_per_run import join_parts

__all__ = [
    "ACTIVATION_COPIES",
    "FALLBACK_BATCH_MEMORY_MB",
    "MAX_PAIRS_PER_CALL",
    "MIN_PAIRS_PER_CALL",
    "ChipBatch",
    "ChipState",
    "batch_obstacle",
    "default_batch_memory_mb",
    "pair_bytes",
    "pairs_per_call",
]

logger = logging.getLogger(__name__)
FALLBACK_BATCH_MEMORY_MB = 2.0
"""The bound where the system does not tell its L2 cache size, MiB."""
ACTIVATION_COPIES = 8
"""Float32 copies of each analog layer's input and noise-sized outputs one pair holds during a run."""
MIN_PAIRS_PER_CALL = 4
"""Fewer pairs than this per call run one per call: 2 pairs per call were 10-39 % slower than one pair per
call on the digits models, 4-40 small pairs (16 samples of the MLP) 0.94-1.15x (bench/README.md, issue 14)."""
MAX_PAIRS_PER_CALL = 256
"""Most (chip, t) pairs in one call (beyond a few dozen pairs small models gain nothing more)."""


@dataclass
class ChipState:
    """One (chip, t) pair as a session computed it: the fed state and the pair's noise-offset stream."""

    chip: int
    t: float
    state: dict[str, np.ndarray]
    offsets: np.random.Generator | None


@functools.cache
def default_batch_memory_mb() -> float:
    """One core's L2 cache size in MiB (Linux sysfs), else :data:`FALLBACK_BATCH_MEMORY_MB`."""
    root = Path("/sys/devices/system/cpu/cpu0/cache")
    try:
        for index in sorted(root.glob("index*")):
            if (index / "level").read_text().strip() == "2":
                text = (index / "size").read_text().strip().upper()
                units = {"K": 2**-10, "M": 1.0, "G": 2**10}
                value = float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text) / 2**20
                if value > 0:
                    return value
    except (OSError, ValueError):
        pass
    return FALLBACK_BATCH_MEMORY_MB


def batch_obstacle(session) -> str | None:
    """Why ``session``'s model cannot run pairs on a leading axis (None: it can), before any data is seen."""
    if not all(layer.fed for layer in session.layers) and session.periphery.has_mvm_noise:
        inner = [layer.name for layer in session.layers if not layer.fed]
        return f"layers inside Loop bodies ({', '.join(inner[:3])}) slice their noise per step"
    if getattr(session, "native_convs", None):
        return f"convolutions run as native Convs of the fed weights ({', '.join(session.native_convs[:3])})"
    if session._bn_state:
        return "BatchNormalization statistics were re-estimated on this chip (AdaBS)"
    return None


def pair_bytes(session, feeds: dict[str, np.ndarray]) -> int:
    """Estimated memory one (chip, t) pair adds to a batched call on ``feeds`` (see the module docstring)."""
    xs = session.layer_inputs(feeds)
    elements = 0
    noisy = session.periphery.has_mvm_noise
    for layer in session.layers:
        x = xs[layer.name]
        outputs = session.periphery.bm_passes * layer.n_tiles * int(np.prod(x.shape[:-1])) * layer.n_out
        elements += ACTIVATION_COPIES * (int(x.size) + outputs) + (outputs if noisy else 0)  # + the fed noise
    elements += sum(int(np.asarray(v).size) for v in feeds.values())
    state = sum(int(v.nbytes) for v in session._state.values() if isinstance(v, np.ndarray))
    return 4 * elements + state


def pairs_per_call(session, feeds: dict[str, np.ndarray], batch_memory_mb: float | None, pairs: int) -> int:
    """(chip, t) pairs per onnxruntime call for ``pairs`` pairs on ``feeds`` under the memory bound (MiB)."""
    bound = default_batch_memory_mb() if batch_memory_mb is None else float(batch_memory_mb)
    if not np.isfinite(bound) or bound < 0:
        raise ConfigError(f"batch_memory_mb={batch_memory_mb!r}: give a bound in MiB >= 0 (0: one pair per call).")
    if bound == 0 or pairs <= 1:
        return 1
    why = batch_obstacle(session)
    if why is not None:
        logger.info("one (chip, t) pair per call: %s", why)
        return 1
    per = pair_bytes(session, feeds)
    chosen = int(max(1, min(pairs, MAX_PAIRS_PER_CALL, (bound * 2**20) // max(per, 1))))
    if chosen < min(MIN_PAIRS_PER_CALL, pairs):
        chosen = 1
    if chosen > 1:
        try:
            session.chip_batch().check_fold(feeds)
        except UnsupportedModelError as err:
            logger.info("one (chip, t) pair per call: %s", err)
            return 1
    logger.debug("%d (chip, t) pairs per call (%.2f MiB each, bound %.2f MiB)", chosen, per / 2**20, bound)
    return chosen


class ChipBatch:
    """Runs (chip, t) pairs of one session on a leading axis of one onnxruntime call.

    Args:
        session: the :class:`~anacompile.runtime.session.AnalogSession` whose chips are run (its
            programming, periphery, overrides, strategy and switches apply).

    Raises:
        UnsupportedModelError: the model cannot be batched (:func:`batch_obstacle`).
    """

    def __init__(self, session) -> None:
        why = batch_obstacle(session)
        if why is not None:
            raise UnsupportedModelError(f"{session.path}: chips cannot share an onnxruntime call: {why}.")
        self.session = session
        self._noisy = session.periphery.has_mvm_noise
        proto = _batched_model(session._session_proto, session.layers, session.periphery)
        self._ort = ort_session(proto, session._session_options(), session._providers, label=f"{session.path} (chips)")
        self._checked: set[tuple] = set()

    def run(
        self, pairs: Sequence[ChipState], feeds: dict[str, np.ndarray], output_names: list[str] | None = None
    ) -> list[list[np.ndarray]]:
        """Run every pair on ``feeds``: ``out[p]`` is what ``session.run(feeds, output_names)`` gives for pair p.

        Each pair draws its noise offsets from its own stream, as a one-pair run does.
        """
        s = self.session
        if not pairs:
            return []
        missing = [n for n in s.input_names if n not in feeds]
        if missing:
            raise DataError(f"Missing model input(s) {missing}; the model takes {s.input_names}.")
        feeds = {k: v for k, v in feeds.items() if k in s.input_names}
        self.check_fold(feeds)
        names = output_names or s.output_names
        pieces = s.split(feeds, names)  # as session.run cuts a batch: part by part
        if pieces is None:
            return self._run(pairs, feeds, names)
        runs = [self._run(pairs, piece, names) for piece in pieces]
        return [join_parts([run[p] for run in runs]) for p in range(len(pairs))]

    def _run(
        self, pairs: Sequence[ChipState], feeds: dict[str, np.ndarray], names: list[str]
    ) -> list[list[np.ndarray]]:
        s = self.session
        n = len(pairs)
        run_feeds: dict[str, np.ndarray] = {k: np.concatenate([np.asarray(v)] * n, axis=0) for k, v in feeds.items()}
        first = pairs[0].state
        for name, value in first.items():
            if name.endswith(f".{SWITCH}"):  # a placement: the same for every pair of the call
                if any(not np.array_equal(p.state[name], value) for p in pairs[1:]):
                    raise ConfigError(f"pairs of one call must switch the same layers digitally ({name} differs).")
                run_feeds[name] = value
            else:
                run_feeds[name] = np.stack([p.state[name] for p in pairs])
        if self._noisy:
            passes = s.periphery.bm_passes
            shapes = s._noise_shapes(feeds)
            per_pair = []
            for p in pairs:
                if p.offsets is None:
                    raise ConfigError("a ChipState without its noise stream: take it with session.snapshot().")
                per_pair.append(s._noise_offsets(feeds, p.offsets))
            for i, layer in enumerate(s.layers):
                name = s._noise_names[i][0]
                shape = shapes[i]
                body = shape[-3:] if layer.spec.tiled else (int(np.prod(shape[(passes > 1) : -1])), shape[-1])
                lead = (passes,) if passes > 1 else ()
                run_feeds[name] = np.stack([o[name].reshape(lead + tuple(body)) for o in per_pair], axis=len(lead))
        for b in s.batchnorms:
            run_feeds.update(b.feeds(s._bn_state))
        try:
            outs = self._ort.run(names, run_feeds)
        except Exception as err:  # onnxruntime's own exception types (shape or type errors)
            raise DataError(f"{s.path}: onnxruntime could not run these inputs: {err}") from err
        parts: list[list[np.ndarray]] = [[] for _ in pairs]
        for name, out in zip(names, outs, strict=True):
            if out.ndim == 0 or out.shape[0] % n:
                raise UnsupportedModelError(
                    f"{s.path}: output {name!r} of shape {list(out.shape)} is not batched along axis 0; "
                    "run one chip per call (batch_memory_mb=0)."
                )
            for part, piece in zip(parts, np.split(out, n, axis=0), strict=True):
                part.append(piece)
        return parts

    def check_fold(self, feeds: dict[str, np.ndarray]) -> None:
        """Once per input shapes: the model keeps samples apart along axis 0 (else chips would mix)."""
        key = tuple((k, v.shape, v.dtype.str) for k, v in feeds.items())
        if key in self._checked:
            return
        s = self.session
        if any(np.ndim(v) == 0 for v in feeds.values()):
            raise UnsupportedModelError(f"{s.path}: an input without a batch axis; chips cannot share a call.")
        other = {k: _other_half(np.asarray(v)) for k, v in feeds.items()}
        both = {k: np.concatenate([feeds[k], other[k]], axis=0) for k in feeds}
        try:
            a, b, ab = s.layer_inputs(feeds), s.layer_inputs(other), s.layer_inputs(both)
            ya, yb, yab = s.run_digital(feeds), s.run_digital(other), s.run_digital(both)
        except Exception as err:  # noqa: BLE001 - onnxruntime's own types: e.g. a batch fixed by the model
            first = (str(err).strip().splitlines() or [""])[0][:200]
            raise UnsupportedModelError(
                f"{s.path}: the model does not take a doubled batch ({first}); chips cannot share a call."
            ) from err
        pairs = [(ab[n], a[n], b[n], f"the input of layer {n!r}") for n in a]
        pairs += [(y2, y1, y3, "an output") for y2, y1, y3 in zip(yab, ya, yb, strict=True)]
        for joint, first, second, what in pairs:
            expected = np.concatenate([first, second], axis=0) if first.ndim else None
            if expected is None or joint.shape != expected.shape or not np.allclose(joint, expected, 1e-4, 1e-5):
                raise UnsupportedModelError(
                    f"{s.path}: {what} mixes samples along axis 0 (or has no batch axis); chips cannot share an "
                    "onnxruntime call: run one chip per call (batch_memory_mb=0)."
                )
        self._checked.add(key)


SWITCH = "analog_on"  # the switchable session's per-layer switch suffix (runtime.session.SWITCH)


def _other_half(x: np.ndarray) -> np.ndarray:
    """Different samples of the same shape: the batch reversed (and, for float inputs, scaled)."""
    y = x[::-1]
    if x.shape[0] == 1 and x.dtype.kind == "f":
        y = y * np.asarray(0.5, x.dtype) + np.asarray(0.25, x.dtype)
    elif x.dtype.kind == "f":
        y = y * np.asarray(0.75, x.dtype)
    return np.ascontiguousarray(y)


def _batched_model(proto: onnx.ModelProto, layers, periphery) -> onnx.ModelProto:
    """The session's model with a leading pair axis on every AnalogMatMul's weights, scales and noise."""
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    by_name = {layer.name: layer for layer in layers}
    i64 = onnx.TensorProto.INT64

    def batched(node: onnx.NodeProto) -> list[onnx.NodeProto]:
        new_nodes: list[onnx.NodeProto] = []
        p, x, w, y = f"{node.name}.chips.", node.input[0], node.input[1], node.output[0]

        def const(name: str, values: list[int], p: str = p) -> onnx.NodeProto:
            return onnx.helper.make_node(
                "Constant", [], [p + name], value=onnx.helper.make_tensor(p + name, i64, [len(values)], values)
            )

        new_nodes += [
            const("zero", [0]),
            const("one", [1]),
            const("minus_one", [-1]),
            const("end", [2**62]),
            onnx.helper.make_node("Shape", [w], [p + "w_shape"]),
            onnx.helper.make_node("Slice", [p + "w_shape", p + "zero", p + "one"], [p + "pairs"]),
            onnx.helper.make_node("Shape", [x], [p + "x_shape"]),
            onnx.helper.make_node("Slice", [p + "x_shape", p + "minus_one", p + "end"], [p + "k"]),
            onnx.helper.make_node("Slice", [p + "x_shape", p + "zero", p + "minus_one"], [p + "lead"]),
            onnx.helper.make_node("Concat", [p + "pairs", p + "minus_one", p + "k"], [p + "x3_shape"], axis=0),
            onnx.helper.make_node("Reshape", [x, p + "x3_shape"], [p + "x"]),
        ]
        node.input[0] = p + "x"
        node.output[0] = p + "y"
        new_nodes.append(node)
        new_nodes += [
            onnx.helper.make_node("Shape", [p + "y"], [p + "y_shape"]),
            onnx.helper.make_node("Slice", [p + "y_shape", p + "minus_one", p + "end"], [p + "n"]),
            onnx.helper.make_node("Concat", [p + "lead", p + "n"], [p + "y_out_shape"], axis=0),
            onnx.helper.make_node("Reshape", [p + "y", p + "y_out_shape"], [y]),
        ]
        return new_nodes

    replace_nodes(
        m.graph,
        lambda n: n.domain == contract.DOMAIN and n.op_type == contract.ANALOG_MATMUL and n.name in by_name,
        batched,
    )
    state = {f"{layer.name}.{suffix}" for layer in layers for suffix in (contract.W_EFF, contract.SCALE)}
    for value in m.graph.input:
        if value.name in state:  # a leading pair axis
            dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
            value.CopyFrom(onnx.helper.make_tensor_value_info(value.name, onnx.TensorProto.FLOAT, ["pairs", *dims]))
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 17)
    funcs = []
    for fn in m.functions:
        if fn.domain == contract.DOMAIN and fn.name == contract.ANALOG_MATMUL and fn.overload.startswith(TILED):
            source = NoiseSource.FED if fn.overload.endswith("_fed") else NoiseSource.BANK
            fn = build_analog_matmul_function(periphery, opset, source, tiled=True, pairs=True)
        funcs.append(fn)
    del m.functions[:]
    m.functions.extend(funcs)
    return m
