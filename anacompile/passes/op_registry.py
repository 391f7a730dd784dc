"""The compiler's op-lowering registry: every analog-capable op, registered explicitly in one place.

:class:`~anacompile.passes.mark_analog_ops.MarkAnalogOpsPass` plans, and
:class:`~anacompile.passes.rewrite_to_analog_ops.RewriteToAnalogOpsPass` emits, the ops of this registry
(both take another registry as an argument). A new op type: write its planner and emitter in a module of its
own (as :mod:`~anacompile.passes.conv` does), export them as ``LOWERINGS`` and add them to the list below.
"""

from __future__ import annotations

from anacompile.passes import conv, matmul, recurrent
from anacompile.passes.lowering import LoweringRegistry

__all__ = ["LOWERINGS"]

LOWERINGS = LoweringRegistry([*matmul.LOWERINGS, *conv.LOWERINGS, *recurrent.LOWERINGS])
"""MatMul, Gemm (:mod:`~anacompile.passes.matmul`), Conv, ConvTranspose (:mod:`~anacompile.passes.conv`), LSTM,
GRU, RNN (:mod:`~anacompile.passes.recurrent`), by ``(domain, op_type)``."""
