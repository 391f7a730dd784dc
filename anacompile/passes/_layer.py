"""Per-layer analysis state carried in ``node.meta`` between the compiler passes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir
from numpy.typing import NDArray

__all__ = ["DIGITAL_KEY", "LAYER_KEY", "LayerPlan", "analog_layers"]

LAYER_KEY = "anacompile.layer"
DIGITAL_KEY = "anacompile.digital_reason"


@dataclass
class LayerPlan:
    """Everything the compiler knows about one analog layer y = x W + b, W of shape (K, N).

    Filled step by step: MarkAnalogOps (weight, bias, input), PartitionWeights (tiles),
    CalibrateInputRanges (in_range), MapConductances (col_scale, g_target), ProgramChip (g_prog, nu,
    gdc_ref).
    """

    name: str
    source_op: str
    weight: NDArray[np.float64]
    bias: NDArray[np.float64] | None
    input: ir.Value
    extra: dict[str, Any] = field(default_factory=dict)
    n_tiles: int = 0
    tile_rows: int = 0
    n_col_tiles: int = 0
    in_range: NDArray[np.float32] | None = None
    col_scale: NDArray[np.float32] | None = None
    g_target: NDArray[np.float32] | None = None
    g_prog: NDArray[np.float32] | None = None
    nu: NDArray[np.float32] | None = None
    gdc_ref: NDArray[np.float32] | None = None

    @property
    def k(self) -> int:
        """Number of inputs (rows of W)."""
        return int(self.weight.shape[0])

    @property
    def n_out(self) -> int:
        """Number of outputs (columns of W)."""
        return int(self.weight.shape[1])

    def tiled_weight(self) -> NDArray[np.float64]:
        """W zero-padded to n_tiles * tile_rows rows and split into (n_tiles, tile_rows, N)."""
        pad = self.n_tiles * self.tile_rows - self.k
        w = np.pad(self.weight, ((0, pad), (0, 0)))
        return w.reshape(self.n_tiles, self.tile_rows, self.n_out)


def analog_layers(model: ir.Model) -> list[tuple[ir.Node, LayerPlan]]:
    """The nodes of the main graph marked analog, in graph order, with their plans."""
    return [(n, n.meta[LAYER_KEY]) for n in model.graph if LAYER_KEY in n.meta]
