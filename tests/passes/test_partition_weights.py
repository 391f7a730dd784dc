"""PartitionWeightsPass: row tiles and column tiles of every analog layer."""

from __future__ import annotations

import numpy as np
import pytest

from anacompile.passes import MarkAnalogOpsPass, PartitionWeightsPass
from tests._support.passes import STANDARD, assert_idempotent, mlp, op_counts, plans, run_truthfully


@pytest.mark.parametrize(
    ("k", "tile_rows", "tile_cols", "n_tiles", "rows", "col_tiles"),
    [(64, 512, 512, 1, 64, 1), (513, 512, 16, 2, 512, 2), (64, 16, 8, 4, 16, 4), (1, 512, 512, 1, 1, 1)],
)
def test_tiles(k, tile_rows, tile_cols, n_tiles, rows, col_tiles):
    model = mlp(k=k)
    MarkAnalogOpsPass()(model)
    counts = op_counts(model)
    p = STANDARD.replace(tile_rows=tile_rows, tile_cols=tile_cols)
    assert run_truthfully(PartitionWeightsPass(p), model)
    assert op_counts(model) == counts
    fc1 = plans(model)["fc1"]
    assert (fc1.n_tiles, fc1.tile_rows, fc1.n_col_tiles) == (n_tiles, rows, col_tiles)
    tiled = fc1.tiled_weight()
    assert tiled.shape == (n_tiles, rows, 32)
    np.testing.assert_array_equal(tiled.reshape(-1, 32)[:k], fc1.weight)
    assert not tiled.reshape(-1, 32)[k:].any()  # zero padding of the last row tile
    assert_idempotent(PartitionWeightsPass(p), model)


def test_nothing_to_partition_without_marked_layers():
    model = mlp()
    assert not run_truthfully(PartitionWeightsPass(STANDARD), model)
