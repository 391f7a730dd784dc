"""PartitionWeightsPass: assign every analog layer's weight matrix to crossbar tiles.

Why: a tile has a fixed size, so a K x N matrix is split into ceil(K/rows) row blocks, each with its own
DAC and ADC, whose partial sums are added digitally (Rasch et al. 2023, "Standard AIMC crossbar model";
reference/papers.md, section (c)). Columns are split into ceil(N/cols) blocks for the report; in this
model columns are independent, so the column split does not change the arithmetic.
"""

from __future__ import annotations

import math

import onnx_ir as ir

from anacompile.crossbar.periphery import Periphery
from anacompile.passes._layer import Tiling, analog_layers

__all__ = ["PartitionWeightsPass"]


class PartitionWeightsPass(ir.passes.InPlacePass):
    """Record the :class:`~anacompile.passes._layer.Tiling` (``n_tiles``, ``tile_rows``, ``n_col_tiles``) of every
    analog layer plan."""

    def __init__(self, periphery: Periphery) -> None:
        super().__init__()
        self.periphery = periphery

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for _, plan in analog_layers(model):
            if plan.get(Tiling) is not None:
                continue  # already partitioned: a second run changes nothing
            rows = self.periphery.tile_rows
            group = plan.op.row_group if plan.op is not None else 1  # rows that belong together (a conv channel)
            if 1 < group <= rows and math.ceil(plan.k / (rows // group * group)) == math.ceil(plan.k / rows):
                rows = rows // group * group  # tile boundaries between groups where that costs no extra tile
            n_tiles = max(1, math.ceil(plan.k / rows))
            # rows stored per tile: a matrix on one tile uses only its own K rows of the physical tile
            plan.write(
                Tiling(
                    n_tiles=n_tiles,
                    tile_rows=rows if n_tiles > 1 else plan.k,
                    n_col_tiles=max(1, math.ceil(plan.n_out / self.periphery.tile_cols)),
                )
            )
            modified = True
        return ir.passes.PassResult(model, modified=modified)
