"""VerifyAnalogModelPass: the compiled model must pass ``onnx.checker`` with full check (shape inference)."""

from __future__ import annotations

import logging
import os

import onnx
import onnx_ir as ir

from anacompile.errors import UnsupportedModelError

__all__ = ["VerifyAnalogModelPass"]

logger = logging.getLogger(__name__)

CHECK_LIMIT_BYTES = 1 << 31  # protobuf limit: larger models are checked after saving, by path


class VerifyAnalogModelPass(ir.passes.InPlacePass):
    """Run ``onnx.checker.check_model(full_check=True)`` on the model or on its saved file; changes nothing.

    Args:
        path: the saved model. Given, the file is checked by path, which works at any size and checks its
            external data files too; this is how the compiler verifies what it wrote. Without it, the model
            is serialized and checked in memory, which needs every tensor in memory and under protobuf's
            2 GB: a model holding external (memory-mapped) tensors, or a larger one, is then skipped with a
            log message and must be checked by path.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, full_check: bool = True) -> None:
        super().__init__()
        self.path = path
        self.full_check = full_check

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        if self.path is not None:
            _check(str(self.path), self.full_check)
            return ir.passes.PassResult(model, modified=False)
        if any(isinstance(v.const_value, ir.ExternalTensor) for g in model.graphs() for v in g.initializers.values()):
            logger.info("model has external data: checked by path after saving, not in memory")
            return ir.passes.PassResult(model, modified=False)
        proto = ir.serde.serialize_model(model)
        if proto.ByteSize() < CHECK_LIMIT_BYTES:
            _check(proto, self.full_check)
        else:
            logger.info("model over 2 GB: checked by path after saving, not in memory")
        return ir.passes.PassResult(model, modified=False)


def _check(model: onnx.ModelProto | str, full_check: bool = True) -> None:
    try:
        onnx.checker.check_model(model, full_check=full_check)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise UnsupportedModelError(
            f"The compiled model fails the ONNX checker: {str(err).splitlines()[0]} "
            "(please report this as an anacompile bug, with the source model)."
        ) from err
