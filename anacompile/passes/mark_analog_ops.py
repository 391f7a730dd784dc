"""MarkAnalogOpsPass: find the weight-bearing ops whose weight is a constant and plan them as analog.

The ops are those of an op-lowering registry (:data:`anacompile.passes.op_registry.LOWERINGS` by default),
by ``(domain, op_type)``; each lowering's planner returns a :class:`LayerPlan` for a node that can run on
crossbar tiles or raises :class:`~anacompile.passes.lowering.StaysDigital` with the reason it stays digital.
Ops with no lowering stay as they are.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

from anacompile.errors import AnacompileError, ConfigError, UnsupportedModelError
from anacompile.passes._layer import DIGITAL_KEY, LAYER_KEY, NAME_KEY, LayerPlan, walk_nodes
from anacompile.passes._names import unique_name
from anacompile.passes.lowering import LoweringRegistry, StaysDigital, attr_value
from anacompile.passes.op_registry import LOWERINGS

__all__ = ["SHARED_WEIGHTS", "MarkAnalogOpsPass"]

logger = logging.getLogger(__name__)


def _check_weight(node: ir.Node, plan: LayerPlan) -> None:
    """An empty weight stays digital; a NaN or infinite weight or bias is refused, naming the tensor."""
    w = plan.weight
    if w is None:
        return
    if w.size == 0:
        raise StaysDigital(f"weight of shape {list(w.shape)} has no elements")
    if plan.bias is not None and w.ndim == 2 and np.size(plan.bias) != w.shape[1]:
        raise StaysDigital(f"bias of {np.size(plan.bias)} values does not match the {w.shape[1]} outputs")
    consts = [v.name for v in node.inputs if v is not None and v.const_value is not None]
    for what, array in (("weight", w), ("bias", plan.bias)):
        if array is not None and np.issubdtype(np.asarray(array).dtype, np.floating) and not np.isfinite(array).all():
            bad = int(np.size(array) - np.isfinite(array).sum())
            raise UnsupportedModelError(
                f"node {node.name or node.op_type!r}: its {what} (from {', '.join(consts) or 'a constant'}) holds "
                f"{bad} NaN or infinite values; fix the model's weights (e.g. retrain or re-export) before compiling."
            )


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
    return (id(weight), int(attr_value(node, "transB", 0)), float(attr_value(node, "alpha", 1.0)))


class MarkAnalogOpsPass(ir.passes.InPlacePass):
    """Mark every MatMul/Gemm with a constant 2-D weight as an analog layer; note why others stay digital.

    Ops inside If branches and Loop/Scan bodies, at any depth, are planned like the main graph's (their
    weights are initializers or outer-scope values; Constant-node weights are lifted to initializers by
    :class:`~anacompile.passes.fold_constant_weights.FoldConstantWeightsPass`); every op gets its own layer
    and tiles, and a layer's graph path is kept (``LayerPlan.graph``). Names are unique
    over the whole model, the main graph's first.

    A stored weight that several MatMul/Gemm ops read is planned once, by the first of them in graph order;
    the others become *uses* of its tiles (``LayerPlan.tiles_of``, :func:`~anacompile.passes._layer.is_use`)
    unless ``shared_weights="replicate"``.

    A second run changes nothing: nodes already marked, or already rewritten to the analog domain, are
    skipped.
    """

    def __init__(self, shared_weights: str = "share", lowerings: LoweringRegistry = LOWERINGS) -> None:
        super().__init__()
        if shared_weights not in SHARED_WEIGHTS:
            raise ConfigError(f"shared_weights={shared_weights!r}: must be one of {', '.join(SHARED_WEIGHTS)}.")
        self.shared_weights = shared_weights
        self.lowerings = lowerings

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        # no layer is named after the prefix of a graph input or output "x.y": its tensors are named "<layer>.y"
        used = {v.name.split(".", 1)[0] for v in [*model.graph.inputs, *model.graph.outputs] if "." in (v.name or "")}
        owners: dict[tuple, LayerPlan] = {}
        for index, (node, path) in enumerate(walk_nodes(model.graph)):  # If/Loop/Scan bodies too, any depth
            lowering = self.lowerings.get(node)
            if lowering is None or LAYER_KEY in node.meta or DIGITAL_KEY in node.meta:
                continue
            name = unique_name(node.name or f"{node.op_type.lower()}_{index}", used, sanitize=True)
            if path:  # a subgraph op's row keeps its unique layer name even when it stays digital
                node.meta[NAME_KEY] = name
            try:
                plans = lowering.plan(node, name)
                for plan in plans if isinstance(plans, list) else [plans]:
                    _check_weight(node, plan)
                    plan.graph = path
                for plan in plans if isinstance(plans, list) else []:
                    if plan.name != name:  # a recurrent op's extra layers (name_fwd, name_bwd, ...)
                        plan.name = unique_name(plan.name, used, sanitize=True)
                weight = node.inputs[1] if len(node.inputs) > 1 else None
                if weight is not None and weight.const_value is not None:  # the op's compute type T
                    for plan in plans if isinstance(plans, list) else [plans]:
                        if plan.io_dtype is None:
                            plan.io_dtype = weight.const_value.dtype
                key = _share_key(node) if self.shared_weights == "share" else None
                if key is not None and isinstance(plans, LayerPlan):
                    owner = owners.setdefault(key, plans)
                    if owner is not plans:  # programmed once: this op reads the owner's tiles
                        plans.weight_shape = (owner.k, owner.n_out)
                        plans.weight = None
                        plans.tiles_of = owner
                        if not owner.uses:
                            owner.uses.append(owner.name)
                        owner.uses.append(plans.name)
                node.meta[LAYER_KEY] = plans
            except StaysDigital as reason:
                node.meta[DIGITAL_KEY] = str(reason)
            except AnacompileError:
                raise
            except Exception as err:  # an op form no planner foresaw: keep it digital, say why, never crash
                logger.warning("node %r (%s) stays digital: %s: %s", node.name, node.op_type, type(err).__name__, err)
                node.meta[DIGITAL_KEY] = f"could not be mapped ({type(err).__name__}: {err}); please report it"
            modified = True
        return ir.passes.PassResult(model, modified=modified)
