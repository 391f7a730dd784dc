"""BatchNormalization statistics the analog session feeds, so AdaBS can re-estimate them at time t.

AdaBS (Joshi et al. 2020, Nat. Commun. 11, 2473): after drift, re-estimate every BatchNormalization's running
mean and variance on calibration data passed through the drifted analog network; gamma and beta stay.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

__all__ = ["BatchNormStats", "expose_batchnorm_statistics"]


@dataclass
class BatchNormStats:
    """One BatchNormalization whose running statistics the session feeds (AdaBS), with their defaults."""

    input: str
    mean: str
    var: str
    default_mean: np.ndarray
    default_var: np.ndarray

    def feeds(self, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The statistics to run with: recalibrated ones where present, else the stored ones."""
        return {self.mean: state.get(self.mean, self.default_mean), self.var: state.get(self.var, self.default_var)}


def expose_batchnorm_statistics(m: onnx.ModelProto) -> list[BatchNormStats]:
    """Turn each top-level BatchNormalization's mean/var initializers into inputs and its X into an output."""
    inits = {t.name: t for t in m.graph.initializer}
    found, outputs = [], {o.name for o in m.graph.output}
    for node in m.graph.node:
        if node.op_type != "BatchNormalization" or node.domain not in ("", "ai.onnx") or len(node.input) < 5:
            continue
        mean, var = node.input[3], node.input[4]
        if mean not in inits or var not in inits or mean == var:
            continue
        found.append(
            BatchNormStats(
                node.input[0],
                mean,
                var,
                onnx.numpy_helper.to_array(inits[mean]),
                onnx.numpy_helper.to_array(inits[var]),
            )
        )
        if node.input[0] not in outputs:
            m.graph.output.append(onnx.helper.make_tensor_value_info(node.input[0], onnx.TensorProto.FLOAT, None))
            outputs.add(node.input[0])
    names = {n for bn in found for n in (bn.mean, bn.var)}
    keep = [t for t in m.graph.initializer if t.name not in names]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)
    for bn in found:
        for name, arr in ((bn.mean, bn.default_mean), (bn.var, bn.default_var)):
            m.graph.input.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, list(arr.shape)))
    return found
