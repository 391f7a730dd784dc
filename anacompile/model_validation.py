"""Validation of ONNX files at load, before anything is allocated or handed to onnx-ir.

Two levels:

* :func:`check_structure` (every model anacompile reads: sources and compiled models): every string
  field is valid UTF-8; every tensor, wherever it lives (initializers, sparse initializers, Constant
  nodes, TENSOR/TENSORS/SPARSE_TENSOR(S) attributes, subgraphs, function bodies and their default
  attributes, training graphs), has non-negative dims whose declared size matches the data it holds;
  external data obeys the external-data rule: a relative location without NUL bytes that resolves (through
  any symlink) to a regular file inside the model's folder, with ``offset`` + ``length`` inside the file
  and ``length`` equal to the declared size.
* :func:`check_source` (models to compile): what the compiler relies on beyond that: ``onnx.checker``'s
  full check (refused with the checker's message unless ``allow_invalid``), no node or function already
  in the analog domain, Constant nodes with exactly one value, Conv/ConvTranspose ``group`` >= 1.

Every failure is one line naming the tensor, node or field and saying what to do.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterator
from pathlib import Path

import onnx
from google.protobuf.descriptor import FieldDescriptor

from anacompile.errors import ModelLoadError, UnsupportedModelError

__all__ = [
    "MAX_ELEMENTS",
    "check_opset",
    "check_source",
    "graph_tensors",
    "check_structure",
    "checker_problem",
    "refuse_invalid",
    "iter_tensors",
    "ort_problem",
    "tensor_nbytes",
]

MAX_ELEMENTS = 1 << 40
"""No tensor may declare more elements than this (2^40, 4 TiB of float32), whatever data it claims."""

_T = onnx.TensorProto
_BITS = {
    _T.FLOAT: 32,
    _T.UINT8: 8,
    _T.INT8: 8,
    _T.UINT16: 16,
    _T.INT16: 16,
    _T.INT32: 32,
    _T.INT64: 64,
    _T.BOOL: 8,
    _T.FLOAT16: 16,
    _T.DOUBLE: 64,
    _T.UINT32: 32,
    _T.UINT64: 64,
    _T.COMPLEX64: 64,
    _T.COMPLEX128: 128,
    _T.BFLOAT16: 16,
}
for _name, _bits in (
    ("FLOAT8E4M3FN", 8),
    ("FLOAT8E4M3FNUZ", 8),
    ("FLOAT8E5M2", 8),
    ("FLOAT8E5M2FNUZ", 8),
    ("UINT4", 4),
    ("INT4", 4),
    ("FLOAT4E2M1", 4),
    ("FLOAT8E8M0", 8),
    ("UINT2", 2),
    ("INT2", 2),
):
    if _name in _T.DataType.keys():
        _BITS[_T.DataType.Value(_name)] = _bits
# which typed field holds the values of each type, and how many entries per element (complex: 2)
_FIELD = {
    _T.FLOAT: ("float_data", 1),
    _T.COMPLEX64: ("float_data", 2),
    _T.DOUBLE: ("double_data", 1),
    _T.COMPLEX128: ("double_data", 2),
    _T.INT64: ("int64_data", 1),
    _T.UINT32: ("uint64_data", 1),
    _T.UINT64: ("uint64_data", 1),
    _T.STRING: ("string_data", 1),
}
_PACKED_INT32 = {t for t, b in _BITS.items() if b < 8}  # int32_data holds two 4-bit values per entry


def tensor_nbytes(tensor: onnx.TensorProto) -> int | None:
    """Bytes of a tensor's raw data as declared by its dims and type (None for strings and unknown types)."""
    bits = _BITS.get(tensor.data_type)
    if bits is None:
        return None
    n = math.prod(int(d) for d in tensor.dims)
    return (n * bits + 7) // 8


def iter_tensors(proto: onnx.ModelProto) -> Iterator[tuple[str, onnx.TensorProto]]:
    """Every tensor of a model with a description of where it lives (for messages)."""
    yield from graph_tensors(proto.graph, "graph")
    for f in proto.functions:
        where = f"function {f.domain}::{f.name}"
        for node in f.node:
            yield from _node_tensors(node, where)
        for attr in f.attribute_proto:
            yield from _attr_tensors(attr, f"{where} default attribute {attr.name!r}")
    for i, info in enumerate(proto.training_info):
        yield from graph_tensors(info.initialization, f"training_info[{i}].initialization")
        yield from graph_tensors(info.algorithm, f"training_info[{i}].algorithm")


def graph_tensors(graph: onnx.GraphProto, where: str) -> Iterator[tuple[str, onnx.TensorProto]]:
    for t in graph.initializer:
        yield f"{where} initializer", t
    for s in graph.sparse_initializer:
        yield f"{where} sparse initializer (values)", s.values
        yield f"{where} sparse initializer (indices)", s.indices
    for node in graph.node:
        yield from _node_tensors(node, where)


def _node_tensors(node: onnx.NodeProto, where: str) -> Iterator[tuple[str, onnx.TensorProto]]:
    for attr in node.attribute:
        yield from _attr_tensors(attr, f"{where} node {node.name or node.op_type!r} attribute {attr.name!r}")


def _attr_tensors(attr: onnx.AttributeProto, where: str) -> Iterator[tuple[str, onnx.TensorProto]]:
    if attr.HasField("t"):
        yield where, attr.t
    for t in attr.tensors:
        yield where, t
    if attr.HasField("sparse_tensor"):
        yield where, attr.sparse_tensor.values
        yield where, attr.sparse_tensor.indices
    for s in attr.sparse_tensors:
        yield where, s.values
        yield where, s.indices
    if attr.HasField("g"):
        yield from graph_tensors(attr.g, f"{where} subgraph")
    for g in attr.graphs:
        yield from graph_tensors(g, f"{where} subgraph")


def check_structure(proto: onnx.ModelProto, path: str | os.PathLike[str]) -> None:
    """Refuse invalid strings, tensors whose dims do not match their data, and external data that breaks
    the external-data rule (see the module docstring). Reads no tensor data."""
    p = Path(path)
    _check_strings(proto, p, "model")
    base = p.parent.resolve()
    for where, tensor in iter_tensors(proto):
        _check_tensor(tensor, where, p, base)


def _check_strings(msg, path: Path, where: str) -> None:
    """Every string field valid UTF-8 (protobuf hands invalid ones back as bytes)."""
    for desc, value in msg.ListFields():
        if desc.type == FieldDescriptor.TYPE_STRING:
            for s in value if desc.is_repeated else [value]:
                if not isinstance(s, str):
                    raise ModelLoadError(
                        f"{path}: field {where}.{desc.name} holds {bytes(s)[:40]!r}, which is not "
                        "valid UTF-8 text; the file is corrupt: re-export the model."
                    )
        elif desc.type == FieldDescriptor.TYPE_MESSAGE:
            name = desc.name
            for i, item in enumerate(value if desc.is_repeated else [value]):
                if desc.message_type.name == "TensorProto" and not isinstance(item.name, str):
                    raise ModelLoadError(
                        f"{path}: a tensor name in {where}.{name} is not valid UTF-8; the file is "
                        "corrupt: re-export the model."
                    )
                label = getattr(item, "name", "") if desc.message_type.name in ("NodeProto", "TensorProto") else ""
                _check_strings(item, path, f"{where}.{name}[{label if isinstance(label, str) and label else i}]")


def _check_tensor(t: onnx.TensorProto, where: str, path: Path, base: Path) -> None:
    name = f"tensor {t.name!r} ({where})"
    dims = [int(d) for d in t.dims]
    if any(d < 0 for d in dims):
        raise ModelLoadError(f"{path}: {name} has negative dims {dims}; the file is corrupt: re-export the model.")
    n = math.prod(dims)
    if n > MAX_ELEMENTS:
        raise ModelLoadError(
            f"{path}: {name} declares dims {dims} ({n:.3g} elements, over the limit of 2^40); "
            "the file is corrupt: re-export the model."
        )
    if t.data_type not in _T.DataType.values() or t.data_type == _T.UNDEFINED:
        raise ModelLoadError(f"{path}: {name} has unknown data type {t.data_type}; re-export the model.")
    nbytes = tensor_nbytes(t)
    if t.data_location == _T.EXTERNAL:
        _check_external(t, name, path, base, nbytes)
        return
    if t.HasField("raw_data"):
        if nbytes is not None and len(t.raw_data) != nbytes:
            raise ModelLoadError(
                f"{path}: {name} declares dims {dims} of {_T.DataType.Name(t.data_type)} "
                f"({nbytes} bytes) but holds {len(t.raw_data)} bytes; the file is corrupt or "
                "truncated: re-export the model."
            )
        return
    field, per = _FIELD.get(t.data_type, ("int32_data", 1))
    expected = (n + 1) // 2 if t.data_type in _PACKED_INT32 else n * per
    if t.data_type in _PACKED_INT32 and _BITS[t.data_type] == 2:
        expected = (n + 3) // 4
    have = len(getattr(t, field))
    others = sum(
        len(getattr(t, f))
        for f in ("float_data", "double_data", "int32_data", "int64_data", "uint64_data", "string_data")
        if f != field
    )
    if have != expected or others:
        raise ModelLoadError(
            f"{path}: {name} declares dims {dims} of {_T.DataType.Name(t.data_type)} ({expected} "
            f"values in {field}) but holds {have}{f' (and {others} in other fields)' if others else ''}"
            "; the file is corrupt: re-export the model."
        )


def _check_external(t: onnx.TensorProto, name: str, path: Path, base: Path, nbytes: int | None) -> None:
    info = {}
    for e in t.external_data:
        info[e.key] = e.value
    location = info.get("location")
    if not location:
        raise ModelLoadError(f"{path}: {name} has external data with no location; re-export the model.")
    if "\x00" in location:
        raise ModelLoadError(
            f"{path}: {name} has an external data location with a NUL byte ({location!r}); refusing to read it."
        )
    if os.path.isabs(location) or location.startswith(("/", "\\")) or ":" in location.split("/")[0]:
        raise ModelLoadError(
            f"{path}: {name} points to external data at the absolute path {location!r}; "
            "refusing to read it. Move the data file beside the model and use a relative location."
        )
    try:
        target = (base / location).resolve()
    except (OSError, RuntimeError, ValueError) as err:  # symlink loops, invalid names
        raise ModelLoadError(
            f"{path}: {name}: external data location {location!r} cannot be resolved ({err})."
        ) from err
    if base not in target.parents:
        raise ModelLoadError(
            f"{path}: {name} points to external data {location!r} outside the model's folder; refusing to "
            "read it. Move the data file beside the model."
        )
    if not target.is_file():
        raise ModelLoadError(f"{path}: external data file {location!r} of {name} is missing (or not a file).")
    try:
        offset = int(info.get("offset", "0"))
        length = int(info["length"]) if "length" in info else None
    except ValueError as err:
        raise ModelLoadError(
            f"{path}: {name} has a non-integer external data offset or length "
            f"({info.get('offset')!r}, {info.get('length')!r}); re-export the model."
        ) from err
    size = target.stat().st_size
    need = length if length is not None else nbytes
    if offset < 0 or (length is not None and length < 0):
        raise ModelLoadError(f"{path}: {name} has a negative external data offset or length; re-export the model.")
    if nbytes is not None and length is not None and length != nbytes:
        raise ModelLoadError(
            f"{path}: {name} declares {nbytes} bytes by its dims but its external data length is "
            f"{length}; the file is corrupt: re-export the model."
        )
    if offset > size or (need is not None and offset + need > size):
        raise ModelLoadError(
            f"{path}: {name} reads bytes {offset}..{offset + (need or 0)} of external data file "
            f"{location!r}, which has {size} bytes; the data file is truncated or belongs to "
            "another model."
        )


def checker_problem(model: str | os.PathLike[str] | onnx.ModelProto, full_check: bool = True) -> str | None:
    """First line of what ``onnx.checker`` finds wrong with a model (file or proto), or None when it passes."""
    try:
        onnx.checker.check_model(model if isinstance(model, onnx.ModelProto) else str(model), full_check=full_check)
    except Exception as err:  # ValidationError, InferenceError, protobuf and OS errors alike
        text = " ".join(str(err).split())  # one line
        return text[:300] if text else type(err).__name__
    return None


def ort_problem(model: str | os.PathLike[str] | onnx.ModelProto) -> str | None:
    """What onnxruntime's loader says about a model (file or proto), in one line; None when it loads."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 4
    try:
        data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
        ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime's own exception types
        return " ".join(str(err).split())[:300] or type(err).__name__
    return None


@functools.cache
def ort_loads_opset(opset: int) -> bool:
    """Whether the installed onnxruntime loads a model of default-domain ``opset`` (probed once)."""
    from onnx import helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return ort_problem(model) is None


def check_opset(proto: onnx.ModelProto, label) -> None:
    """The default-domain opset must be one the installed onnx and onnxruntime both know."""
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        return
    newest = onnx.defs.onnx_opset_version()
    if opset > newest or not ort_loads_opset(min(opset, newest)):
        raise UnsupportedModelError(
            f"{label}: opset {opset} is newer than the installed onnx ({newest}) or onnxruntime supports; convert "
            "the model to an older opset (onnx.version_converter) or upgrade onnx and onnxruntime."
        )


def check_source(
    proto: onnx.ModelProto,
    path: str | os.PathLike[str],
    allow_invalid: bool = False,
    domain: str = "ai.anacompile",
    in_memory: bool = False,
    checker: bool = True,
) -> str | None:
    """Refuse a source model the compiler cannot take (see the module docstring).

    Returns:
        ``None`` when the model passes ``onnx.checker``'s full check, else (only with ``allow_invalid``) the
        checker's message, for the compile report.
    """
    p = Path(path)
    check_opset(proto, p)
    for f in proto.functions:
        if f.domain == domain:
            raise UnsupportedModelError(
                f"{p}: the model defines its own function {f.domain}::{f.name}, in the domain anacompile emits; "
                "rename that function's domain before compiling."
            )
    for node, where in _all_nodes(proto):
        if node.domain == domain:
            raise UnsupportedModelError(
                f"{p}: node {node.name or node.op_type!r} ({where}) is already in domain {domain}: the model looks "
                "compiled already; compile the source model instead."
            )
        if node.domain in ("", "ai.onnx") and node.op_type == "Constant":
            values = [a.name for a in node.attribute if a.name.startswith(("value", "sparse_value"))]
            if len(values) != 1:
                raise ModelLoadError(
                    f"{p}: Constant node {node.name or node.output[0] if node.output else '?'!r} ({where}) has "
                    f"{len(values)} value attributes ({values}); it needs exactly one: fix the model."
                )
        names = [a.name for a in node.attribute]
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ModelLoadError(
                f"{p}: node {node.name or node.op_type!r} ({where}) has attribute(s) {twice} more than "
                "once; fix the model."
            )
        if node.domain in ("", "ai.onnx") and node.op_type in ("LSTM", "GRU", "RNN"):
            hidden = next((a.i for a in node.attribute if a.name == "hidden_size"), None)
            if hidden is not None and hidden < 1:
                raise ModelLoadError(
                    f"{p}: {node.op_type} node {node.name!r} ({where}) has hidden_size={hidden}; it "
                    "must be >= 1: fix the model."
                )
        if node.domain in ("", "ai.onnx") and node.op_type in ("Conv", "ConvTranspose"):
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            if group < 1:
                raise ModelLoadError(
                    f"{p}: {node.op_type} node {node.name!r} ({where}) has group={group}; group "
                    "must be >= 1: fix the model."
                )
    return refuse_invalid(proto if in_memory else p, p, allow_invalid) if checker else None


def refuse_invalid(model: onnx.ModelProto | Path, label, allow_invalid: bool = False) -> str | None:
    """``onnx.checker``'s full check of a source: refused with the checker's message unless ``allow_invalid``
    (then the message is returned, for the report); None when it passes."""
    problem = checker_problem(model)
    if problem is not None and not allow_invalid:
        raise ModelLoadError(
            f"{label}: the model fails onnx.checker's full check: {problem}. Fix the model, or pass "
            "--allow-invalid to compile it anyway (the output is then checked only as strictly as "
            "the source passes)."
        )
    return problem


def _all_nodes(proto: onnx.ModelProto) -> Iterator[tuple[onnx.NodeProto, str]]:
    def walk(graph, where):
        for node in graph.node:
            yield node, where
            for attr in node.attribute:
                if attr.HasField("g"):
                    yield from walk(attr.g, f"{where} > {node.name or node.op_type} subgraph")
                for g in attr.graphs:
                    yield from walk(g, f"{where} > {node.name or node.op_type} subgraph")

    yield from walk(proto.graph, "main graph")
    for f in proto.functions:
        for node in f.node:
            yield node, f"function {f.domain}::{f.name}"
