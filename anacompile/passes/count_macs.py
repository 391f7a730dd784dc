"""Multiply-accumulates per weight-bearing op, from the source model's shapes (for the placement report).

MACs per inference of an op y = f(x; W), from ONNX shape inference with dynamic dimensions taken as 1
(one sample), or fixed from one calibration sample's shapes: MatMul prod(y.shape[:-1]) * K * N; Gemm M * K * N;
Conv prod(y.shape) * |W| / C_out (every output value is one dot product over C_in/group x kernel);
ConvTranspose prod(x.shape[2:]) * B * |W| (every input pixel meets the whole kernel); LSTM/GRU/RNN
T * B * (|W| + |R|). An op whose shapes cannot be inferred counts its parameters once, and is flagged.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx

from anacompile.graph_walk import walk_graphs

__all__ = ["node_macs"]

logger = logging.getLogger(__name__)
_RECURRENT = ("LSTM", "GRU", "RNN")


def _dims(vi) -> list[int] | None:
    if vi is None or not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in vi.type.tensor_type.shape.dim]


def node_macs(
    proto: onnx.ModelProto,
    input_shapes: dict[str, list[int]] | None = None,
) -> dict[str, tuple[int, bool]]:
    """``{first output name: (MACs per inference, exact)}`` of every MatMul/Gemm/Conv/ConvTranspose/LSTM/GRU/RNN
    whose weight is an initializer or a Constant, in the main graph and in If branches and Loop/Scan bodies
    (one call of the op: a branch counts as if it runs, a body per iteration) (``exact`` False: shapes
    unknown, parameters counted).

    ``input_shapes`` (e.g. one calibration sample's) fixes the dynamic dimensions of the model inputs first, so
    that convolutions over images of variable size count their real output positions.
    """
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    del probe.graph.value_info[:]  # exporters' stale shapes (unk__ dims) would stop the inference
    for vi in probe.graph.input:
        dims = (input_shapes or {}).get(vi.name)
        if dims is not None and len(dims) == len(vi.type.tensor_type.shape.dim):
            for d, n in zip(vi.type.tensor_type.shape.dim, dims, strict=True):
                d.Clear()
                d.dim_value = int(n)
    try:
        inferred = onnx.shape_inference.infer_shapes(probe, strict_mode=False)
    except Exception as err:  # onnx raises several types; MACs are only reported, never needed
        logger.debug("shape inference failed (%s); MACs counted as parameters", err)
        inferred = proto
    graphs = [g for g, _ in walk_graphs(inferred.graph)]  # If branches and Loop/Scan bodies too
    shapes = {vi.name: _dims(vi) for g in graphs for vi in [*g.value_info, *g.input, *g.output]}
    sizes = {t.name: (int(np.prod(t.dims)) if t.dims else 1, list(t.dims)) for g in graphs for t in g.initializer}
    for node in (n for g in graphs for n in g.node):  # Constant weights
        if node.op_type == "Constant" and node.attribute and node.attribute[0].type == onnx.AttributeProto.TENSOR:
            dims = list(node.attribute[0].t.dims)
            sizes[node.output[0]] = (int(np.prod(dims)) if dims else 1, dims)
    out: dict[str, tuple[int, bool]] = {}
    for node in (n for g in graphs for n in g.node):
        if node.op_type not in ("MatMul", "Gemm", "Conv", "ConvTranspose", *_RECURRENT) or len(node.input) < 2:
            continue
        if node.input[1] not in sizes or not node.output:
            continue
        w_size, w_dims = sizes[node.input[1]]
        y = shapes.get(node.output[0]) if node.output[0] else None
        x = shapes.get(node.input[0])
        macs = None
        if node.op_type == "MatMul" and y and len(w_dims) == 2:
            macs = int(np.prod(y[:-1])) * w_size
        elif node.op_type == "Gemm" and y:
            macs = y[0] * w_size
        elif node.op_type == "Conv" and y and w_dims:
            macs = int(np.prod(y)) * w_size // max(w_dims[0], 1)
        elif node.op_type == "ConvTranspose" and x and len(x) > 2:
            macs = x[0] * int(np.prod(x[2:])) * w_size
        elif node.op_type in _RECURRENT and x and len(node.input) > 2 and node.input[2] in sizes:
            r_size = sizes[node.input[2]][0]
            layout = next((a.i for a in node.attribute if a.name == "layout"), 0)
            t, b = (x[1], x[0]) if layout else (x[0], x[1])
            macs = t * b * (w_size + r_size)
        out[node.output[0]] = (macs, True) if macs is not None else (w_size, False)
    return out
