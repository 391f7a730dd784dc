"""Tests of the weight-programming optimiser (anacompile/programming/optimizer.py, weight_error.py)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from anacompile import devices
from anacompile.errors import ConfigError, ModelLoadError
from anacompile.mapping import PiecewiseMapping, decode_pairs, dual_pair, get_mapping
from anacompile.programming.optimizer import (
    DEFAULT_F_SCAN,
    OptimizeSettings,
    StrategySpace,
    _CRNScorer,
    optimize_strategy,
    plot_strategy,
    quantile_points,
)
from anacompile.programming.weight_error import (
    evaluate_strategy_error,
    gdc_alpha,
    load_weight_matrices,
    normalised_weights,
    resample_weights,
)

PCM = devices.get("pcm")
G_MIN, G_MAX = PCM.g_min_us, PCM.g_max_us


def _laplace(shape=(64, 32), seed=0) -> np.ndarray:
    return np.clip(np.random.default_rng(seed).laplace(size=shape), -4, 4)


@pytest.mark.parametrize("n_pairs", [2, 3])
def test_every_candidate_is_valid_and_exact_at_the_table_points(n_pairs: int) -> None:
    space = StrategySpace(np.array([0.0, 0.1, 0.3, 0.6, 1.0]), G_MIN, G_MAX, n_pairs=n_pairs)
    assert space.dim == (n_pairs - 1) + 1 + 5 * (2 * n_pairs - 1)
    x = np.random.default_rng(1).uniform(size=(200, space.dim))
    x[:5] = 0.0
    x[5:10] = 1.0
    f, gain, tables = space.denormalise(x)
    assert tables.shape == (200, n_pairs, 2, 9)
    assert tables.min() >= G_MIN and tables.max() <= G_MAX
    assert np.all(f[:, 0] == 1.0) and np.all((f[:, 1:] >= 1.0) & (f[:, 1:] <= 5.0))
    u_hw = np.sum(f[:, :, None] * (tables[:, :, 0] - tables[:, :, 1]), axis=1) / gain[:, None]
    np.testing.assert_allclose(u_hw, np.broadcast_to(space.u_points, u_hw.shape), atol=1e-12)
    m = space.mapping(x[17])
    u = np.linspace(-1, 1, 1001)
    np.testing.assert_allclose(
        decode_pairs(m.encode(u, G_MIN, G_MAX), m.significance, m.gain_us(G_MIN, G_MAX)), u, atol=1e-12
    )


@pytest.mark.parametrize("f", DEFAULT_F_SCAN)
def test_naive_vector_reproduces_the_naive_dual_pair(f: float) -> None:
    pts = quantile_points(normalised_weights([_laplace()])[0], 6, snap=[1.0 / (1.0 + f)])
    assert 1.0 / (1.0 + f) in pts
    space = StrategySpace(pts, G_MIN, G_MAX)
    m = space.mapping(space.naive_vector((1.0, f)))
    u = np.linspace(-1, 1, 2001)
    np.testing.assert_allclose(m.encode(u, G_MIN, G_MAX), dual_pair(f).encode(u, G_MIN, G_MAX), atol=1e-9)
    assert m.gain == pytest.approx(dual_pair(f).gain_us(G_MIN, G_MAX))


def test_quantile_points_are_a_valid_grid() -> None:
    pts = quantile_points(np.zeros(100), 6)  # degenerate density: points are spread, still 0 ... 1
    assert pts[0] == 0.0 and pts[-1] == 1.0 and np.all(np.diff(pts) > 0)
    pts = quantile_points(_laplace() / 4, 6)
    assert np.all(np.diff(pts) > 0) and pts[-1] == 1.0
    with pytest.raises(ConfigError):
        quantile_points(_laplace(), 1)


def test_gdc_alpha_undoes_a_uniform_drift_exactly() -> None:
    u = normalised_weights([_laplace()])[0]
    assert gdc_alpha(u, 0.6 * u) == pytest.approx(1 / 0.6, rel=1e-12)
    stacked = np.stack([0.5 * u, 0.8 * u])  # leading axes broadcast
    np.testing.assert_allclose(gdc_alpha(u, stacked), [2.0, 1.25], rtol=1e-12)


def test_common_random_numbers_score_a_candidate_the_same_anywhere_in_the_population() -> None:
    u_all = normalised_weights([_laplace((128, 64))])[0]
    sample = resample_weights(u_all, 16, 64, np.random.default_rng(0))
    space = StrategySpace(quantile_points(u_all, 6, [1 / 3]), G_MIN, G_MAX)
    scorer = _CRNScorer(space, sample, PCM, (1.0, 3600.0, 86400.0), np.random.default_rng(1), chunk=3)
    x = np.random.default_rng(2).uniform(size=(7, space.dim))
    x[4] = x[0]
    loss = scorer(x)
    assert loss[4] == loss[0]
    assert scorer(x[::-1])[::-1] == pytest.approx(loss, rel=1e-12)
    # the fixed draws are a fair sample: the naive F = 2 score agrees with fresh draws within 15 %
    naive = scorer(space.naive_vector((1.0, 2.0))[None, :])[0]
    fresh = evaluate_strategy_error(
        dual_pair(2.0), [sample], PCM, np.random.default_rng(3), (1.0, 3600.0, 86400.0), n_repeats=20
    )
    assert naive == pytest.approx(fresh.tnmse, rel=0.15)


def test_optimiser_on_a_small_problem_returns_a_valid_strategy_no_worse_than_naive_f1(tmp_path) -> None:
    w = [_laplace((64, 32), 5), _laplace((32, 10), 6)]
    settings = OptimizeSettings(
        times_s=(1.0, 3600.0, 30 * 86400.0),
        n_rows=16,
        n_cols=64,
        popsize=10,
        maxiter=4,
        n_repeats_final=6,
        time_budget_s=30.0,
    )
    gens = []
    rep = optimize_strategy(w, PCM, settings, seed=1, show_progress=False, callback=lambda g, b: gens.append(b))
    m = rep.mapping
    assert isinstance(m, PiecewiseMapping) and m.n_pairs == 2 and m.device == "pcm"
    assert m.tables_us.min() >= G_MIN and m.tables_us.max() <= G_MAX
    assert 1.0 <= m.significance[1] <= 5.0
    u = np.linspace(-1, 1, 501)
    np.testing.assert_allclose(
        decode_pairs(m.encode(u, G_MIN, G_MAX), m.significance, m.gain_us(G_MIN, G_MAX)), u, atol=1e-12
    )
    assert rep.search_loss_best <= rep.search_loss_seed  # the best naive strategy is in the population
    assert gens == sorted(gens, reverse=True) and 1 <= len(gens) <= 4
    f1 = rep.naive[1.0]
    assert rep.optimised.tnmse <= f1.tnmse + 2 * np.hypot(f1.tnmse_sem, rep.optimised.tnmse_sem)
    assert rep.optimised.nmse.shape == (6, 3)
    assert rep.beats_best_naive() in ("better", "no worse", "worse")
    d = json.loads(json.dumps(rep.to_dict()))
    assert set(d["naive_scan"]) == {str(f) for f in DEFAULT_F_SCAN}
    path = m.save(tmp_path / "s.json")
    back = get_mapping(str(path))
    np.testing.assert_array_equal(back.encode(u, G_MIN, G_MAX), m.encode(u, G_MIN, G_MAX))
    plot_strategy(m, tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 1000


def test_differential_evolution_improves_from_a_plain_hypercube() -> None:
    settings = OptimizeSettings(
        times_s=(1.0, 86400.0),
        n_rows=16,
        n_cols=32,
        popsize=16,
        maxiter=12,
        n_repeats_final=2,
        seed_with_naive=False,
        patience=100,
        f_scan=(1.0, 2.0),
    )
    best = []
    optimize_strategy([_laplace()], PCM, settings, seed=2, show_progress=False, callback=lambda g, b: best.append(b))
    assert len(best) == 12 and best[-1] < best[0]


def test_load_weight_matrices_orients_matmul_gemm_and_conv(tmp_path) -> None:
    rng = np.random.default_rng(0)
    w_mm, w_gemm, w_conv = rng.normal(size=(8, 5)), rng.normal(size=(4, 5)), rng.normal(size=(3, 4, 2, 2))
    nodes = [
        helper.make_node("MatMul", ["x", "w_mm"], ["a"]),
        helper.make_node("Gemm", ["a", "w_gemm"], ["b"], transB=1),
        helper.make_node("Conv", ["img", "w_conv"], ["c"]),
    ]
    inits = [
        numpy_helper.from_array(a.astype(np.float32), n)
        for a, n in ((w_mm, "w_mm"), (w_gemm, "w_gemm"), (w_conv, "w_conv"))
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8]),
            helper.make_tensor_value_info("img", onnx.TensorProto.FLOAT, [1, 4, 5, 5]),
        ],
        [
            helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, None),
            helper.make_tensor_value_info("c", onnx.TensorProto.FLOAT, None),
        ],
        inits,
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), path)
    mats = load_weight_matrices(path)
    assert [m.shape for m in mats] == [(8, 5), (5, 4), (16, 3)]
    np.testing.assert_allclose(mats[1], w_gemm.T, rtol=1e-6)
    np.testing.assert_allclose(mats[2][:, 1], w_conv[1].ravel(), rtol=1e-6)
    np.save(tmp_path / "w.npy", w_mm)
    assert [m.shape for m in load_weight_matrices(tmp_path / "w.npy")] == [(8, 5)]
    np.save(tmp_path / "v.npy", np.ones(3))
    with pytest.raises(ModelLoadError):
        load_weight_matrices(tmp_path / "v.npy")
    with pytest.raises(ModelLoadError):
        load_weight_matrices(tmp_path / "absent.onnx")


@pytest.mark.parametrize(
    "kw",
    [
        {"nbins": 1},
        {"n_pairs": 1},
        {"popsize": 2},
        {"f_scan": (0.5,)},
        {"points": "random"},
        {"time_budget_s": 0.0},
    ],
)
def test_invalid_settings_raise_config_error(kw) -> None:
    with pytest.raises(ConfigError):
        OptimizeSettings(**kw)
