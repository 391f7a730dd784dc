"""VerifyAnalogModelPass: the compiled model must pass ``onnx.checker`` with full check (shape inference)."""

from __future__ import annotations

import onnx
import onnx_ir as ir

from anacompile.errors import UnsupportedModelError

__all__ = ["VerifyAnalogModelPass"]

CHECK_LIMIT_BYTES = 1 << 31  # protobuf limit: larger models are checked after saving, by path


class VerifyAnalogModelPass(ir.passes.InPlacePass):
    """Serialize the model and run ``onnx.checker.check_model(full_check=True)``; changes nothing."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        proto = ir.serde.serialize_model(model)
        if proto.ByteSize() < CHECK_LIMIT_BYTES:
            try:
                onnx.checker.check_model(proto, full_check=True)
            except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
                raise UnsupportedModelError(
                    f"The compiled model fails the ONNX checker: {str(err).splitlines()[0]} "
                    "(please report this as an anacompile bug, with the source model)."
                ) from err
        return ir.passes.PassResult(model, modified=False)
