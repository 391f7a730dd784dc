"""MarkAnalogOpsPass: find the weight-bearing ops whose weight is a constant and plan them as analog.

Handlers are registered per ``(domain, op_type)``; each returns a :class:`LayerPlan` for a node that can
run on crossbar tiles or raises :class:`_Digital` with the reason it stays digital. Ops with no handler
stay as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import onnx_ir as ir

from anacompile.errors import AnacompileError, UnsupportedModelError
from anacompile.passes._layer import DIGITAL_KEY, GRAPH_KEY, LAYER_KEY, SHARED_KEY, LayerPlan, walk_nodes
from anacompile.passes._names import unique_name

__all__ = ["HANDLERS", "SHARED_WEIGHTS", "MarkAnalogOpsPass"]

logger = logging.getLogger(__name__)


class _Digital(Exception):
    """A weight-bearing node that stays digital, with the reason."""


def _const(value: ir.Value | None) -> np.ndarray | None:
    if value is None:
        return None
    tensor = ir.convenience.get_const_tensor(value)
    return None if tensor is None else tensor.numpy()


def _attr(node: ir.Node, name: str, default):
    a = node.attributes.get(name)
    return default if a is None else a.value


def _plan_matmul(node: ir.Node, name: str) -> LayerPlan:
    w = _const(node.inputs[1])
    if w is None:
        if _const(node.inputs[0]) is not None:
            raise _Digital("constant is the left operand (x = W a); only y = a W is mapped")
        raise _Digital("activation x activation product (no constant weight)")
    if w.ndim != 2:
        raise _Digital(f"weight has rank {w.ndim}; only 2-D weights are mapped")
    if not np.issubdtype(w.dtype, np.floating):
        raise _Digital(f"weight dtype {w.dtype} is not floating point")
    # the weight as stored (a view: no copy of large or memory-mapped weights); mapping converts to float64
    return LayerPlan(name=name, source_op="MatMul", weight=w, bias=None, input=node.inputs[0])


def _plan_gemm(node: ir.Node, name: str) -> LayerPlan:
    if _attr(node, "transA", 0):
        raise _Digital("transA=1 is not mapped")
    w = _const(node.inputs[1])
    if w is None:
        raise _Digital("B is not a constant initializer")
    if not np.issubdtype(w.dtype, np.floating):
        raise _Digital(f"weight dtype {w.dtype} is not floating point")
    if _attr(node, "transB", 0):
        w = w.T  # a view
    alpha = float(_attr(node, "alpha", 1.0))
    if alpha != 1.0:
        w = w.astype(np.float64) * alpha
    beta = float(_attr(node, "beta", 1.0))
    bias = None
    extra = {}
    c_value = node.inputs[2] if len(node.inputs) > 2 else None
    if c_value is not None:
        c = _const(c_value)
        if c is not None:
            try:
                np.broadcast_shapes(c.shape, (1, w.shape[1]))
            except ValueError:
                raise _Digital(f"C of shape {list(c.shape)} does not broadcast to the {w.shape[1]} outputs") from None
        if c is not None and c.size in (1, w.shape[1]) and (c.ndim <= 1 or c.shape[0] == 1):
            bias = np.broadcast_to(c.reshape(-1).astype(np.float64) * beta, (w.shape[1],)).copy()
        else:
            extra["digital_bias"] = (c_value, beta)  # added digitally after the analog op
    return LayerPlan(name=name, source_op="Gemm", weight=w, bias=bias, input=node.inputs[0], extra=extra)


def _check_weight(node: ir.Node, plan: LayerPlan) -> None:
    """An empty weight stays digital; a NaN or infinite weight or bias is refused, naming the tensor."""
    w = plan.weight
    if w is None:
        return
    if w.size == 0:
        raise _Digital(f"weight of shape {list(w.shape)} has no elements")
    if plan.bias is not None and w.ndim == 2 and np.size(plan.bias) != w.shape[1]:
        raise _Digital(f"bias of {np.size(plan.bias)} values does not match the {w.shape[1]} outputs")
    consts = [v.name for v in node.inputs if v is not None and v.const_value is not None]
    for what, array in (("weight", w), ("bias", plan.bias)):
        if array is not None and np.issubdtype(np.asarray(array).dtype, np.floating) and not np.isfinite(array).all():
            bad = int(np.size(array) - np.isfinite(array).sum())
            raise UnsupportedModelError(
                f"node {node.name or node.op_type!r}: its {what} (from {', '.join(consts) or 'a constant'}) holds "
                f"{bad} NaN or infinite values; fix the model's weights (e.g. retrain or re-export) before compiling."
            )


HANDLERS: dict[tuple[str, str], Callable[[ir.Node, str], LayerPlan | list[LayerPlan]]] = {
    ("", "MatMul"): _plan_matmul,
    ("", "Gemm"): _plan_gemm,
}
"""Analog-capable ops by (domain, op_type); a handler returns one plan, or a list for an op that becomes
several analog layers (LSTM/GRU/RNN, :mod:`anacompile.passes.recurrent`, registers itself here)."""


SHARED_WEIGHTS = ("share", "replicate")
"""What the compiler does with a stored weight read by several MatMul/Gemm ops: ``share`` programs it once on
one set of tiles that every use reads (a crossbar stores a weight once and is read again at every step);
``replicate`` programs a copy on its own tiles for every use."""


def _share_key(node: ir.Node) -> tuple | None:
    """Ops with equal keys compute x W with the same stored matrix W (same tensor, same transpose, alpha)."""
    if (node.domain, node.op_type) not in (("", "MatMul"), ("", "Gemm")) or len(node.inputs) < 2:
        return None
    weight = node.inputs[1]
    if weight is None or weight.const_value is None:
        return None
    if node.op_type == "MatMul":
        return (id(weight), 0, 1.0)
    return (id(weight), int(_attr(node, "transB", 0)), float(_attr(node, "alpha", 1.0)))


class MarkAnalogOpsPass(ir.passes.InPlacePass):
    """Mark every MatMul/Gemm with a constant 2-D weight as an analog layer; note why others stay digital.

    Ops inside If branches and Loop/Scan bodies, at any depth, are planned like the main graph's (their
    weights are initializers or outer-scope values; Constant-node weights are lifted to initializers by
    :class:`~anacompile.passes.fold_constant_weights.FoldConstantWeightsPass`); every op gets its own layer
    and tiles, and a layer's graph path is kept (:data:`~anacompile.passes._layer.GRAPH_KEY`). Names are unique
    over the whole model, the main graph's first.

    A stored weight that several MatMul/Gemm ops read is planned once, by the first of them in graph order;
    the others become *uses* of its tiles (``extra["tiles_of"]``, :func:`~anacompile.passes._layer.is_use`)
    unless ``shared_weights="replicate"``.

    A second run changes nothing: nodes already marked, or already rewritten to the analog domain, are
    skipped.
    """

    def __init__(self, shared_weights: str = "share") -> None:
        super().__init__()
        if shared_weights not in SHARED_WEIGHTS:
            from anacompile.errors import ConfigError

            raise ConfigError(f"shared_weights={shared_weights!r}: must be one of {', '.join(SHARED_WEIGHTS)}.")
        self.shared_weights = shared_weights

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        used: set[str] = set()
        owners: dict[tuple, LayerPlan] = {}
        for index, (node, path) in enumerate(walk_nodes(model.graph)):  # If/Loop/Scan bodies too, any depth
            handler = HANDLERS.get((node.domain, node.op_type))
            if handler is None or LAYER_KEY in node.meta or DIGITAL_KEY in node.meta:
                continue
            name = unique_name(node.name or f"{node.op_type.lower()}_{index}", used, sanitize=True)
            try:
                plans = handler(node, name)
                for plan in plans if isinstance(plans, list) else [plans]:
                    _check_weight(node, plan)
                    plan.extra[GRAPH_KEY] = path
                for plan in plans if isinstance(plans, list) else []:
                    if plan.name != name:  # a recurrent op's extra layers (name_fwd, name_bwd, ...)
                        plan.name = unique_name(plan.name, used, sanitize=True)
                weight = node.inputs[1] if len(node.inputs) > 1 else None
                if weight is not None and weight.const_value is not None:  # the op's compute type T
                    for plan in plans if isinstance(plans, list) else [plans]:
                        plan.extra.setdefault("io_dtype", weight.const_value.dtype)
                key = _share_key(node) if self.shared_weights == "share" else None
                if key is not None and isinstance(plans, LayerPlan):
                    owner = owners.setdefault(key, plans)
                    if owner is not plans:  # programmed once: this op reads the owner's tiles
                        plans.weight_shape = (owner.k, owner.n_out)
                        plans.weight = None
                        plans.extra[SHARED_KEY] = owner
                        owner.extra.setdefault("uses", [owner.name]).append(plans.name)
                node.meta[LAYER_KEY] = plans
            except _Digital as reason:
                node.meta[DIGITAL_KEY] = str(reason)
            except AnacompileError:
                raise
            except Exception as err:  # an op form no handler foresaw: keep it digital, say why, never crash
                logger.warning("node %r (%s) stays digital: %s: %s", node.name, node.op_type, type(err).__name__, err)
                node.meta[DIGITAL_KEY] = f"could not be mapped ({type(err).__name__}: {err}); please report it"
            modified = True
        return ir.passes.PassResult(model, modified=modified)
