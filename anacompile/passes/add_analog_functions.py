"""AddAnalogFunctionsPass: add the model-local FunctionProtos that define the analog ops.

With the functions inside the file, the model is plain ONNX: ``onnx.checker`` (full check) accepts it and
a stock onnxruntime inlines and runs it (:mod:`anacompile.crossbar.functions`).
"""

from __future__ import annotations

import onnx_ir as ir

from anacompile import contract
from anacompile.contract import TILED
from anacompile.crossbar.functions import build_analog_matmul_function, build_chip_weights_function
from anacompile.crossbar.periphery import DriftCompensation, Periphery

__all__ = ["MIN_IR_VERSION", "AddAnalogFunctionsPass"]

MIN_IR_VERSION = 8  # model-local functions
OVERLOAD_IR_VERSION = 10  # function overloads (AnalogMatMul's ``tiled`` body)


class AddAnalogFunctionsPass(ir.passes.InPlacePass):
    """Declare domain ``ai.anacompile`` and add its functions when analog nodes use them."""

    def __init__(self, periphery: Periphery, compensation: DriftCompensation, device=None) -> None:
        super().__init__()
        self.periphery = periphery
        self.compensation = compensation
        self.device = device  # None: the PCM body with device constants as node attributes

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        # also inside subgraphs: a recurrent op's AnalogMatMul nodes sit in its Loop body
        used = {
            (n.op_type, n.overload)
            for n in ir.traversal.RecursiveGraphIterator(model.graph)
            if n.domain == contract.DOMAIN
        }
        missing = used - {(f.name, f.overload) for f in model.functions.values() if f.domain == contract.DOMAIN}
        if not missing:
            return ir.passes.PassResult(model, modified=False)
        opset = model.opset_imports.get("", 13)
        builders = {
            (contract.ANALOG_MATMUL, ""): lambda: build_analog_matmul_function(self.periphery, opset),
            (contract.ANALOG_MATMUL, TILED): lambda: build_analog_matmul_function(self.periphery, opset, tiled=True),
            (contract.CHIP_WEIGHTS, ""): lambda: build_chip_weights_function(self.compensation, opset, self.device),
        }
        for key in sorted(missing):
            fn = ir.serde.deserialize_function(builders[key]())
            model.functions[fn.identifier()] = fn
        model.opset_imports[contract.DOMAIN] = contract.DOMAIN_VERSION
        model.graph.opset_imports[contract.DOMAIN] = contract.DOMAIN_VERSION
        needed = OVERLOAD_IR_VERSION if any(overload for _, overload in used) else MIN_IR_VERSION
        model.ir_version = max(model.ir_version or needed, needed)
        return ir.passes.PassResult(model, modified=True)
