"""MapConductancesPass: column scales and target conductances of every analog layer."""

from __future__ import annotations

import numpy as np

from anacompile.mapping import SinglePairMapping, decode_pairs, get_mapping
from anacompile.passes import MapConductancesPass, MarkAnalogOpsPass, PartitionWeightsPass
from tests._support.passes import PCM, STANDARD, assert_idempotent, mlp, op_counts, plans, run_truthfully


def _partitioned(tile_rows: int = 32):
    model = mlp()
    MarkAnalogOpsPass()(model)
    PartitionWeightsPass(STANDARD.replace(tile_rows=tile_rows))(model)
    return model


def test_targets_decode_to_the_weights():
    model = _partitioned()
    weights = {name: plan.tiled_weight() for name, plan in plans(model).items()}
    counts = op_counts(model)
    m = SinglePairMapping()
    assert run_truthfully(MapConductancesPass(PCM, m), model)
    assert op_counts(model) == counts
    for name, plan in plans(model).items():
        n_tiles, rows, n = weights[name].shape
        assert plan.g_target.shape == (1, 2, n_tiles, rows, n) and plan.col_scale.shape == (n_tiles, 1, n)
        assert plan.g_target.min() >= PCM.g_min_us - 1e-6 and plan.g_target.max() <= PCM.g_max_us + 1e-4
        u = decode_pairs(plan.g_target, m.significance, m.gain_us(PCM.g_min_us, PCM.g_max_us))
        np.testing.assert_allclose(u * plan.col_scale, weights[name], rtol=1e-5, atol=1e-5)
        assert np.abs(u).max() <= 1 + 1e-6
    assert_idempotent(MapConductancesPass(PCM, m), model)


def test_dual_pair_strategy_maps_two_pairs():
    model = _partitioned()
    m = get_mapping("dual")
    assert run_truthfully(MapConductancesPass(PCM, m), model)
    assert all(plan.g_target.shape[:2] == (2, 2) for plan in plans(model).values())
    assert_idempotent(MapConductancesPass(PCM, m), model)
