"""Loading source models and writing outputs safely (clear errors, atomic writes, inputs never overwritten)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Union

import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError

from anacompile.errors import ConfigError, ModelLoadError, OutputError
from anacompile.model_validation import check_structure, graph_tensors, iter_tensors

__all__ = [
    "EXTERNAL_DATA_LIMIT_BYTES",
    "ModelInput",
    "atomic_output",
    "check_output_path",
    "external_data_files",
    "external_data_name",
    "is_in_memory",
    "load_model",
    "load_proto",
    "model_file",
    "model_label",
    "read_model",
]

ModelInput = Union[str, os.PathLike, onnx.ModelProto, ir.Model]  # noqa: UP007 (a runtime alias on Python 3.10)
"""What every public entry point accepts as a model: a path, an ``onnx.ModelProto`` or an ``onnx_ir.Model``."""

EXTERNAL_DATA_LIMIT_BYTES = int(1.8e9)
"""Outputs larger than this are written with external data (protobuf refuses messages over 2 GB)."""


def load_proto(path: str | os.PathLike[str], load_external_data: bool = False) -> onnx.ModelProto:
    """Read an ONNX file; raise :class:`ModelLoadError` naming the file for anything unreadable."""
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"{p}: no such file.")
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except (DecodeError, RuntimeWarning, ValueError, OSError) as err:
        raise ModelLoadError(f"{p}: not a readable ONNX model ({type(err).__name__}: {err}).") from err
    except Exception as err:  # protobuf raises a variety of types on garbage input
        raise ModelLoadError(f"{p}: not a readable ONNX model ({type(err).__name__}: {err}).") from err
    if not proto.HasField("graph") or len(proto.graph.node) == 0:
        raise ModelLoadError(f"{p}: not an ONNX model (no graph with nodes); is it truncated or another format?")
    check_structure(proto, p)
    if load_external_data:
        try:
            onnx.load_external_data_for_model(proto, str(p.parent))
        except (OSError, ValueError) as err:
            raise ModelLoadError(f"{p}: cannot load external data: {err}") from err
    return proto


def load_model(path: str | os.PathLike[str]) -> ir.Model:
    """Validate and load an ONNX model as an onnx-ir model (external data read lazily from its folder)."""
    load_proto(path)
    try:
        return ir.load(str(path))
    except Exception as err:  # onnx-ir deserialisation of a malformed graph
        raise ModelLoadError(f"{path}: the ONNX graph is malformed: {err}") from err


def check_output_path(output: str | os.PathLike[str], inputs: list[str | os.PathLike[str]], force: bool) -> Path:
    """Refuse to write into a missing folder, over an input, or over an existing file unless ``force``."""
    out = Path(output)
    if not out.parent.resolve().is_dir():
        raise OutputError(f"Output folder {out.parent} does not exist; create it first.")
    for source in inputs:
        if Path(source).exists() and out.exists() and out.resolve() == Path(source).resolve():
            raise OutputError(f"Output {out} is the input file; choose another output path.")
    if out.exists() and not force:
        raise OutputError(f"Output {out} exists; pass --force to overwrite it.")
    return out


@contextlib.contextmanager
def atomic_output(output: str | os.PathLike[str]):
    """Yield a temporary path in the output's folder; on success move it into place, else remove it.

    The path is ``<folder>/.<name>.<random>/<name>``, alone in a private temporary folder, so that files
    written beside it under names that start with ``<name>.`` (the external data ``<name>.data``) come along:
    on success they are moved into place first and the file itself last, each with ``os.replace`` (atomic
    per file on one file system). Anything else left in the temporary folder (scratch files) is deleted.
    On error nothing is moved and the temporary folder is removed, so no partial output is ever left.
    """
    out = Path(output)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    tmp = tmpdir / out.name
    try:
        yield tmp
        if not tmp.is_file():
            raise OutputError(f"Nothing was written to {out}.")
        for side in sorted(tmpdir.iterdir()):
            if side.name.startswith(f"{out.name}.") and side.is_file():
                os.replace(side, out.parent / side.name)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def external_data_name(output: str | os.PathLike[str]) -> str:
    """Name of a model's external data file, beside it: ``model.analog.onnx`` -> ``model.analog.onnx.data``."""
    return f"{Path(output).name}.data"


def external_data_files(proto: onnx.ModelProto, path: str | os.PathLike[str]) -> set[Path]:
    """The external data files a model file reads (resolved paths); empty when all data is inside it."""
    base = Path(path).parent
    files = set()
    for _, tensor in iter_tensors(proto):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next((e.value for e in tensor.external_data if e.key == "location"), None)
            if location is not None:
                files.add((base / location).resolve())
    return files


# -- models given as paths or in memory (one adapter for every public entry point) ---------------------------


def is_in_memory(model: ModelInput) -> bool:
    """Whether ``model`` is an in-memory model (``onnx.ModelProto`` or ``onnx_ir.Model``) rather than a path.

    Raises:
        ConfigError: ``model`` is none of a path, a ModelProto or an onnx-ir Model.
    """
    if isinstance(model, (onnx.ModelProto, ir.Model)):
        return True
    if isinstance(model, (str, os.PathLike)):
        return False
    raise ConfigError(f"model: expected a path, an onnx.ModelProto or an onnx_ir.Model, got {type(model).__name__}.")


def model_label(model: ModelInput) -> str:
    """How messages and reports name a model: its path, or ``<in-memory ModelProto 'graph name'>``."""
    if not is_in_memory(model):
        return str(model)
    kind = "ModelProto" if isinstance(model, onnx.ModelProto) else "onnx_ir.Model"
    name = model.graph.name
    return f"<in-memory {kind} {name!r}>" if name else f"<in-memory {kind}>"


def read_model(model: ModelInput, load_external_data: bool = False) -> onnx.ModelProto:
    """The model as an ``onnx.ModelProto``: :func:`load_proto` for a path, the proto itself (not a copy) for a
    ModelProto, a serialised copy for an onnx-ir Model (tensor data included only with ``load_external_data``;
    a model above protobuf's 2 GB limit must be given as a path or an onnx-ir Model to :func:`model_file`).

    Raises:
        ModelLoadError: unreadable file, or an in-memory model with no graph nodes.
    """
    if not is_in_memory(model):
        return load_proto(model, load_external_data=load_external_data)
    if isinstance(model, ir.Model):
        proto = ir.serde.serialize_model(model) if load_external_data else _skeleton_proto(model)
    else:
        proto = model
    if not proto.HasField("graph") or len(proto.graph.node) == 0:
        raise ModelLoadError(f"{model_label(model)}: not an ONNX model (no graph with nodes).")
    return proto


def _skeleton_proto(model: ir.Model) -> onnx.ModelProto:
    """The graph of an onnx-ir model as a proto without its tensor data (names, shapes, nodes, metadata)."""
    with tempfile.TemporaryDirectory(prefix="anacompile-model-") as folder:
        path = Path(folder) / "model.onnx"
        _save_in_memory(model, path)
        return onnx.load(str(path), load_external_data=False)


@contextlib.contextmanager
def model_file(model: ModelInput, name: str = "model.onnx") -> Iterator[Path]:
    """A path to ``model`` on disk, for the code that reads models by path (and its worker processes).

    A path is validated (:func:`load_proto`) and yielded as is. An in-memory model is written into a private
    temporary folder, removed on exit; its tensors go to an external data file beside it when the model
    holds external tensors or more than :data:`EXTERNAL_DATA_LIMIT_BYTES` of tensor data, so models above
    protobuf's 2 GB limit work too. The caller's model is never modified.

    Raises:
        ModelLoadError: unreadable file, or an in-memory model with no graph nodes, or a ModelProto whose
            tensors point to external data (load it with ``onnx.load(path)``, which reads the data, or pass
            the path).
    """
    if not is_in_memory(model):
        load_proto(model)
        yield Path(model)
        return
    if len(model.graph.node) == 0 if isinstance(model, onnx.ModelProto) else len(model.graph) == 0:
        raise ModelLoadError(f"{model_label(model)}: not an ONNX model (no graph with nodes).")
    folder = Path(tempfile.mkdtemp(prefix="anacompile-model-"))
    try:
        path = folder / name
        _save_in_memory(model, path)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _save_in_memory(model: onnx.ModelProto | ir.Model, path: Path) -> None:
    """Write an in-memory model to ``path``, tensors in ``<name>.data`` beside it when large or external."""
    if isinstance(model, onnx.ModelProto):
        external = [t.name for _, t in iter_tensors(model) if t.data_location == onnx.TensorProto.EXTERNAL]
        if external:
            raise ModelLoadError(
                f"{model_label(model)}: tensor {external[0]!r} points to external data that this ModelProto does "
                "not hold; load it with onnx.load(path) (which reads the data), or pass the path or "
                "onnx_ir.load(path)."
            )
        if _proto_tensor_bytes(model.graph) <= EXTERNAL_DATA_LIMIT_BYTES:
            path.write_bytes(model.SerializeToString())
            return
        model = ir.serde.deserialize_model(model)  # wraps the tensors: no copy; ir.save leaves it unchanged
    large = _ir_tensor_bytes(model) > EXTERNAL_DATA_LIMIT_BYTES
    has_external = any(isinstance(v.const_value, ir.ExternalTensor) for v in _ir_initializers(model))
    try:
        if large or has_external:
            ir.save(model, path, external_data=external_data_name(path))
        else:
            ir.save(model, path)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"{model_label(model)}: cannot write the model for reading: {err}") from err


def _proto_tensor_bytes(graph: onnx.GraphProto) -> int:
    return sum(len(t.raw_data) or t.ByteSize() for _, t in graph_tensors(graph, "graph"))


def _ir_initializers(model: ir.Model):
    for graph in (model.graph, *model.graph.subgraphs()):
        yield from graph.initializers.values()


def _ir_tensor_bytes(model: ir.Model) -> int:
    return sum(v.const_value.nbytes for v in _ir_initializers(model) if v.const_value is not None)
