"""MatMul and Gemm on crossbar tiles: y = x W (+ b) is one analog layer with W of shape (K, N).

``MatMul`` with a constant right operand W (rank 2) and ``Gemm`` (``transA=0``; ``transB`` and ``alpha`` folded
into W, a constant C broadcast to the N outputs times ``beta`` as the bias; any other C is added digitally
after the analog op, times ``beta``).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from anacompile.passes._layer import DigitalBias, LayerPlan
from anacompile.passes.lowering import EmitContext, Lowering, StaysDigital, attr_value, const_array

__all__ = ["LOWERINGS", "emit_matmul", "plan_gemm", "plan_matmul"]


def plan_matmul(node: ir.Node, name: str) -> LayerPlan:
    """Plan a MatMul y = a W with a constant 2-D floating-point W."""
    w = const_array(node.inputs[1])
    if w is None:
        if const_array(node.inputs[0]) is not None:
            raise StaysDigital("constant is the left operand (x = W a); only y = a W is mapped")
        raise StaysDigital("activation x activation product (no constant weight)")
    if w.ndim != 2:
        raise StaysDigital(f"weight has rank {w.ndim}; only 2-D weights are mapped")
    if not np.issubdtype(w.dtype, np.floating):
        raise StaysDigital(f"weight dtype {w.dtype} is not floating point")
    # the weight as stored (a view: no copy of large or memory-mapped weights); mapping converts to float64
    return LayerPlan(name=name, source_op="MatMul", weight=w, bias=None, input=_input(node))


def plan_gemm(node: ir.Node, name: str) -> LayerPlan:
    """Plan a Gemm y = alpha a B' + beta C with a constant B (``transA=0``)."""
    if attr_value(node, "transA", 0):
        raise StaysDigital("transA=1 is not mapped")
    w = const_array(node.inputs[1])
    if w is None:
        raise StaysDigital("B is not a constant initializer")
    if not np.issubdtype(w.dtype, np.floating):
        raise StaysDigital(f"weight dtype {w.dtype} is not floating point")
    if attr_value(node, "transB", 0):
        w = w.T  # a view
    alpha = float(attr_value(node, "alpha", 1.0))
    if alpha != 1.0:
        w = w.astype(np.float64) * alpha
    beta = float(attr_value(node, "beta", 1.0))
    bias = None
    digital_bias = None
    c_value = node.inputs[2] if len(node.inputs) > 2 else None
    if c_value is not None:
        c = const_array(c_value)
        if c is not None:
            try:
                np.broadcast_shapes(c.shape, (1, w.shape[1]))
            except ValueError:
                raise StaysDigital(
                    f"C of shape {list(c.shape)} does not broadcast to the {w.shape[1]} outputs"
                ) from None
        if c is not None and c.size in (1, w.shape[1]) and (c.ndim <= 1 or c.shape[0] == 1):
            bias = np.broadcast_to(c.reshape(-1).astype(np.float64) * beta, (w.shape[1],)).copy()
        else:
            digital_bias = DigitalBias(c_value, beta)  # added digitally after the analog op
    return LayerPlan(name=name, source_op="Gemm", weight=w, bias=bias, input=_input(node), digital_bias=digital_bias)


def _input(node: ir.Node) -> ir.Value:
    x = node.inputs[0]
    if x is None:
        raise StaysDigital("the first input is empty")
    return x


def emit_matmul(ctx: EmitContext) -> tuple[list[ir.Node], ir.Value]:
    """MatMul and Gemm: y = AnalogMatMul(x), plus a digital ``beta * C`` where Gemm's C is not constant."""
    nodes, out = ctx.analog(ctx.plan.input)
    digital_bias = ctx.plan.digital_bias
    if digital_bias is not None:
        beta = np.asarray(digital_bias.scale, np.float32)
        scaled = ir.node("Mul", [digital_bias.value, ctx.initializer("beta", beta)])
        add = ir.node("Add", [out, scaled.outputs[0]])
        nodes += [scaled, add]
        out = add.outputs[0]
    return nodes, out


LOWERINGS = (Lowering("MatMul", plan_matmul, emit_matmul), Lowering("Gemm", plan_gemm, emit_matmul))
"""The lowerings of this module, listed in :data:`anacompile.passes.op_registry.LOWERINGS`."""
