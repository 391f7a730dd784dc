"""A file for the compiler's per-layer arrays, so that memory stays bounded by one layer.

A compiled layer stores its programming plan and its programmed chip (``g_target``, ``g_prog``, ``nu``: 6 x
4 bytes per weight for one differential pair), so the output is several times the size of the source model.
Held in memory until the model is saved, that is several times the model size in RAM. With a store, the
passes that make these arrays (:class:`~anacompile.passes.map_conductances.MapConductancesPass`,
:class:`~anacompile.passes.program_chip.ProgramChipPass`) append each one to the output's external data file
as soon as it is made and keep a memory-mapped :class:`onnx_ir.ExternalTensor` instead; the rewrite uses
those tensors as the initializers, :meth:`TensorStore.adopt` adds the model's other tensors, and only the
graph is left to save. Only the layer being worked on is ever in memory, and every byte is written once.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import onnx_ir as ir
from numpy.typing import NDArray

__all__ = ["EXTERNAL_THRESHOLD_BYTES", "TensorStore", "as_array", "release", "squeezed"]

ALIGNMENT_BYTES = 64  # offsets of stored tensors (cache lines; SIMD loads from the memory map)
EXTERNAL_THRESHOLD_BYTES = 1024  # smaller initializers stay inside the model file


class TensorStore:
    """Append-only file of arrays, each read back as a memory-mapped :class:`onnx_ir.ExternalTensor`.

    The compiler names it after the output's external data file (``<model>.data``) in the output's temporary
    folder: the arrays are written once, where they will stay, and :meth:`adopt` adds the model's other
    tensors before the graph is saved.

    Args:
        folder: where the file is created (the output's temporary folder: same file system, removed with it
            on failure).
        name: file name inside ``folder``.
    """

    def __init__(self, folder: str | os.PathLike[str], name: str) -> None:
        self.folder = Path(folder)
        self.location = name
        self._file = open(self.folder / name, "wb")  # closed by close()
        self._offset = 0
        self.bytes_written = 0

    def put(self, name: str, array: NDArray) -> ir.ExternalTensor:
        """Append ``array`` (C order, little endian) and return a lazy tensor named ``name`` that reads it."""
        a = np.ascontiguousarray(array)
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        pad = -self._offset % ALIGNMENT_BYTES
        if pad:
            self._file.write(b"\0" * pad)
            self._offset += pad
        self._file.write(memoryview(a).cast("B"))
        self._file.flush()
        tensor = ir.ExternalTensor(
            self.location,
            offset=self._offset,
            length=a.nbytes,
            dtype=ir.DataType.from_numpy(a.dtype),
            shape=ir.Shape(a.shape),
            name=name,
            base_dir=self.folder,
        )
        self._offset += a.nbytes
        self.bytes_written += a.nbytes
        return tensor

    def adopt(self, model: ir.Model, threshold_bytes: int = EXTERNAL_THRESHOLD_BYTES) -> None:
        """Make this file the model's only external data file, so the model can be saved as it is.

        Every initializer (subgraphs included) larger than ``threshold_bytes`` that is not yet in this file is
        appended to it (a memory-mapped source tensor is copied file to file); smaller tensors that live in
        another file (the source's external data) are read into the model. Saving with ``ir.save(model,
        path)`` then writes only the graph, and the data file needs no second copy.
        """
        for graph in model.graphs():
            for value in graph.initializers.values():
                tensor = value.const_value
                if tensor is None or (isinstance(tensor, ir.ExternalTensor) and tensor.path == self.path):
                    continue
                if tensor.nbytes > threshold_bytes:
                    value.const_value = self._put_tensor(value.name or tensor.name or "", tensor)
                elif isinstance(tensor, ir.ExternalTensor):
                    value.const_value = ir.tensor(np.array(tensor.numpy()), name=tensor.name)
                    release(tensor)

    @property
    def path(self) -> str:
        """Full path of the data file."""
        return os.path.join(self.folder, self.location)

    def close(self) -> None:
        """Close the file (moved into place with the model, or deleted with the temporary folder)."""
        self._file.close()

    def _put_tensor(self, name: str, tensor: ir.TensorProtocol) -> ir.ExternalTensor:
        if not isinstance(tensor, ir.ExternalTensor):
            return self.put(name, tensor.numpy())
        pad = -self._offset % ALIGNMENT_BYTES
        if pad:
            self._file.write(b"\0" * pad)
            self._offset += pad
        tensor.tofile(self._file)  # copy_file_range where the platform has it: no pass through memory
        self._file.flush()
        out = ir.ExternalTensor(
            self.location,
            offset=self._offset,
            length=tensor.nbytes,
            dtype=tensor.dtype,
            shape=tensor.shape,
            name=name,
            base_dir=self.folder,
        )
        self._offset += tensor.nbytes
        self.bytes_written += tensor.nbytes
        return out


def as_array(x: NDArray | ir.TensorProtocol, dtype=None) -> NDArray:
    """A numpy array of an array or a (possibly lazy) tensor."""
    if isinstance(x, np.ndarray):
        return x if dtype is None else x.astype(dtype, copy=False)
    a = x.numpy()
    return a if dtype is None else a.astype(dtype)


def release(x: object) -> None:
    """Unmap a memory-mapped tensor (its pages leave the process) if no array still views it."""
    if isinstance(x, ir.ExternalTensor):
        with contextlib.suppress(BufferError):  # a live numpy view: it stays mapped until that is gone
            x.release()


def squeezed(tensor: ir.ExternalTensor, axis: int, name: str) -> ir.ExternalTensor:
    """The same stored bytes seen without the size-1 dimension ``axis`` (a one-tile layer's tile axis)."""
    dims = list(tensor.shape.numpy())
    if dims[axis] != 1:
        raise ValueError(f"dimension {axis} of {dims} is not 1")
    del dims[axis]
    return ir.ExternalTensor(
        tensor.location,
        offset=tensor.offset,
        length=tensor.length,
        dtype=tensor.dtype,
        shape=ir.Shape(dims),
        name=name,
        base_dir=tensor.base_dir,
    )
