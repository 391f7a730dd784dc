"""AddAnalogFunctionsPass: add the model-local FunctionProtos that define the analog ops.

With the functions inside the file, the model is plain ONNX: ``onnx.checker`` (full check) accepts it and
a stock onnxruntime inlines and runs it (:mod:`anacompile.runtime.functions`).
"""

from __future__ import annotations

import onnx_ir as ir

from anacompile import ops
from anacompile.crossbar.periphery import DriftCompensation, Periphery
from anacompile.runtime.functions import build_analog_matmul_function, build_chip_weights_function

__all__ = ["MIN_IR_VERSION", "AddAnalogFunctionsPass"]

MIN_IR_VERSION = 8  # model-local functions


class AddAnalogFunctionsPass(ir.passes.InPlacePass):
    """Declare domain ``ai.anacompile`` and add its functions when analog nodes use them."""

    def __init__(self, periphery: Periphery, compensation: DriftCompensation) -> None:
        super().__init__()
        self.periphery = periphery
        self.compensation = compensation

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        used = {n.op_type for n in model.graph if n.domain == ops.DOMAIN}
        missing = used - {f.name for f in model.functions.values() if f.domain == ops.DOMAIN}
        if not missing:
            return ir.passes.PassResult(model, modified=False)
        opset = model.opset_imports.get("", 13)
        builders = {
            ops.ANALOG_MATMUL: lambda: build_analog_matmul_function(self.periphery, opset),
            ops.CHIP_WEIGHTS: lambda: build_chip_weights_function(self.compensation, opset),
        }
        for name in sorted(missing):
            fn = ir.serde.deserialize_function(builders[name]())
            model.functions[fn.identifier()] = fn
        model.opset_imports[ops.DOMAIN] = ops.DOMAIN_VERSION
        model.graph.opset_imports[ops.DOMAIN] = ops.DOMAIN_VERSION
        model.ir_version = max(model.ir_version or MIN_IR_VERSION, MIN_IR_VERSION)
        return ir.passes.PassResult(model, modified=True)
