"""onnxruntime sessions for models of any size (protobuf's 2 GB limit)."""

from __future__ import annotations

import os

import onnx
import onnxruntime as ort

from anacompile.errors import UnsupportedModelError
from anacompile.graph_walk import node_subgraphs

__all__ = ["IN_MEMORY_LIMIT_BYTES", "ort_session", "run_checked"]


IN_MEMORY_LIMIT_BYTES = 1_500_000_000
"""Above this much tensor data a model goes to onnxruntime through a file with external data (protobuf's
2 GB limit); below, as bytes in memory."""


def ort_session(
    proto: onnx.ModelProto, so: ort.SessionOptions, providers: list[str] | None = None, label: str = "the model"
) -> ort.InferenceSession:
    """An onnxruntime session for a model of any size.

    Up to :data:`IN_MEMORY_LIMIT_BYTES` of tensor data the model is passed serialised; a larger one is
    written with its tensors as external data into a private temporary folder that lives as long as the
    session (onnxruntime may map the data file).

    Raises:
        UnsupportedModelError: onnxruntime refuses the model (e.g. a compiled file whose tensors were
            altered); ``label`` names it in the one-line message.
    """
    try:
        return _create(proto, so, providers)
    except Exception as err:  # onnxruntime's own exception types (Fail, InvalidGraph, RuntimeException)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnsupportedModelError(
            f"{label}: onnxruntime cannot load it ({first}); recompile the source model with `anacompile compile`."
        ) from err


def run_checked(session: ort.InferenceSession, output_names: list[str], feeds: dict) -> list:
    """``session.run(output_names, feeds)`` for a caller that has checked ``feeds`` itself (every input
    present, numpy arrays only).

    onnxruntime's Python ``run`` first checks every declared input against the list of fed names (quadratic
    in the number of inputs: ~2 µs for 7, tens of µs for a transformer's 60) and every fed value's device, which
    at batch 1 is a fifth of a small analog model's run; the session's own core ``run`` (the same call that
    wrapper makes) skips them. Where an onnxruntime build has no such core, the public ``run``.
    """
    core = getattr(session, "_sess", None)
    if core is None:
        return session.run(output_names, feeds)
    return core.run(output_names, feeds, None)


def _create(proto: onnx.ModelProto, so: ort.SessionOptions, providers: list[str] | None) -> ort.InferenceSession:
    providers = providers or ["CPUExecutionProvider"]
    if _tensor_bytes(proto.graph) <= IN_MEMORY_LIMIT_BYTES:
        return ort.InferenceSession(proto.SerializeToString(), so, providers=providers)
    import tempfile

    folder = tempfile.TemporaryDirectory(prefix="anacompile-session-")
    path = os.path.join(folder.name, "model.onnx")
    onnx.save_model(
        proto,
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="model.data",
        size_threshold=1024,
    )
    session = ort.InferenceSession(path, so, providers=providers)
    session._anacompile_folder = folder  # removed with the session
    return session


def _tensor_bytes(graph: onnx.GraphProto) -> int:
    total = sum(len(t.raw_data) or t.ByteSize() for t in graph.initializer)
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                total += attr.t.ByteSize()
        for sub in node_subgraphs(node):
            total += _tensor_bytes(sub)
    return total
