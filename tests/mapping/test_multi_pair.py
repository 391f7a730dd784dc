"""Tests of the naive P-pair strategy (anacompile/mapping/multi_pair.py) and its registry entries."""

from __future__ import annotations

import numpy as np
import pytest

from anacompile.errors import ConfigError
from anacompile.mapping import NPairMapping, decode_pairs, dual_pair, get_mapping, mapping_from_dict

G_MIN, G_MAX = 0.0, 25.0


@pytest.mark.parametrize("f", [1.0, 1.5, 2.0, 2.5, 4.0])
def test_dual_round_trip_is_exact_and_within_bounds(f: float) -> None:
    m = dual_pair(f)
    u = np.linspace(-1.0, 1.0, 2001)
    g = m.encode(u, G_MIN, G_MAX)
    assert g.shape == (2, 2, u.size)
    assert g.min() >= G_MIN and g.max() <= G_MAX
    np.testing.assert_allclose(decode_pairs(g, m.significance, m.gain_us(G_MIN, G_MAX)), u, rtol=0, atol=1e-14)
    assert m.gain_us(G_MIN, G_MAX) == pytest.approx((1.0 + f) * 25.0)


def test_dual_fills_lsp_first_then_msp() -> None:
    m = dual_pair(2.0)  # U = 75 µS: the LSP holds |w| <= 25 µS, i.e. |u| <= 1/3
    g = m.encode(np.array([0.2, 1 / 3, 0.6, -0.6, 1.0]), G_MIN, G_MAX)
    lsp_plus, lsp_minus, msp_plus, msp_minus = g[0, 0], g[0, 1], g[1, 0], g[1, 1]
    np.testing.assert_allclose(lsp_plus, [15.0, 25.0, 25.0, 0.0, 25.0], atol=1e-12)
    np.testing.assert_allclose(lsp_minus, [0.0, 0.0, 0.0, 25.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(msp_plus, [0.0, 0.0, 10.0, 0.0, 25.0], atol=1e-12)  # (45 - 25) / 2 = 10
    np.testing.assert_allclose(msp_minus, [0.0, 0.0, 0.0, 10.0, 0.0], atol=1e-12)


def test_npair_three_pairs_with_g_min_round_trip_and_saturation() -> None:
    m = NPairMapping((1.0, 2.0, 4.0))
    g_min, g_max = 0.5, 20.0
    u = np.random.default_rng(0).uniform(-1.2, 1.2, size=(7, 11))
    g = m.encode(u, g_min, g_max)
    assert g.shape == (3, 2, 7, 11)
    assert g.min() >= g_min and g.max() <= g_max
    u_hw = decode_pairs(g, m.significance, m.gain_us(g_min, g_max))
    np.testing.assert_allclose(u_hw, np.clip(u, -1.0, 1.0), rtol=0, atol=1e-13)  # |u| > 1 saturates


def test_single_pair_equivalent_to_npair_of_one() -> None:
    u = np.linspace(-1, 1, 101)
    np.testing.assert_array_equal(
        NPairMapping((1.0,)).encode(u, G_MIN, G_MAX), get_mapping("single").encode(u, G_MIN, G_MAX)
    )


def test_registry_specs_and_dict_round_trip() -> None:
    assert get_mapping("dual").significance == (1.0, 2.0)
    m = get_mapping("dual:F=2.5")
    assert m.significance == (1.0, 2.5) and m.name == "dual"
    assert m.to_dict() == {"name": "dual", "F": 2.5}
    assert mapping_from_dict(m.to_dict()).significance == (1.0, 2.5)
    n = get_mapping("npair:significance=1,3,9")
    assert n.significance == (1.0, 3.0, 9.0)
    assert mapping_from_dict(n.to_dict()).significance == n.significance
    assert mapping_from_dict({"name": "single"}).significance == (1.0,)


@pytest.mark.parametrize(
    "spec",
    [
        "dual:F=0.5",
        "dual:F=abc",
        "dual:G=2",
        "dual:F",
        "triple",
        "npair:F=1,2",
        "npair:significance=2,1",
        "single:F=2",
    ],
)
def test_bad_specs_raise_config_error(spec: str) -> None:
    with pytest.raises(ConfigError):
        get_mapping(spec)


def test_bad_embedded_dicts_raise_config_error() -> None:
    for d in ({"name": "dual"}, {"name": "npair"}, {"name": "quad"}, {}):
        with pytest.raises(ConfigError):
            mapping_from_dict(d)
