"""Loading source models and writing outputs safely (clear errors, atomic writes, inputs never overwritten)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError

from anacompile.errors import ModelLoadError, OutputError
from anacompile.model_validation import check_structure, iter_tensors

__all__ = [
    "EXTERNAL_DATA_LIMIT_BYTES",
    "atomic_output",
    "check_output_path",
    "external_data_files",
    "external_data_name",
    "load_model",
    "load_proto",
]

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
