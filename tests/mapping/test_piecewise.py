"""Tests of the piecewise-linear strategy tables (anacompile/mapping/piecewise.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from anacompile.errors import ConfigError, OutputError
from anacompile.mapping import PiecewiseMapping, decode_pairs, dual_pair, get_mapping, mapping_from_dict

G_MIN, G_MAX = 0.0, 25.0


def _table_from_dual(f: float, u_pos: np.ndarray) -> PiecewiseMapping:
    """The naive dual pair sampled on the points -u_pos[::-1] ... u_pos (exact if its kink is a point)."""
    pts = np.concatenate([-u_pos[:0:-1], u_pos])
    m = dual_pair(f)
    return PiecewiseMapping(
        (1.0, f), pts, m.encode(pts, G_MIN, G_MAX), m.gain_us(G_MIN, G_MAX), G_MIN, G_MAX, device="pcm"
    )


def test_tables_with_the_kink_on_a_point_reproduce_the_naive_dual_pair_exactly() -> None:
    pw = _table_from_dual(2.0, np.array([0.0, 0.1, 1 / 3, 0.6, 1.0]))  # LSP full at u = 1/(1+F) = 1/3
    u = np.linspace(-1.0, 1.0, 4001)
    np.testing.assert_allclose(pw.encode(u, G_MIN, G_MAX), dual_pair(2.0).encode(u, G_MIN, G_MAX), atol=1e-12)


def test_round_trip_inside_range_and_clipping_outside() -> None:
    pw = _table_from_dual(2.5, np.array([0.0, 0.05, 0.2, 0.5, 1.0]))  # kink 1/3.5 not a point: still exact in u
    u = np.random.default_rng(3).uniform(-1.0, 1.0, size=(50, 40))
    g = pw.encode(u, G_MIN, G_MAX)
    assert g.shape == (2, 2, 50, 40)
    assert g.min() >= G_MIN and g.max() <= G_MAX
    np.testing.assert_allclose(decode_pairs(g, pw.significance, pw.gain_us(G_MIN, G_MAX)), u, rtol=0, atol=1e-13)
    g_out = pw.encode(np.array([-1.5, 1.5]), G_MIN, G_MAX)
    np.testing.assert_allclose(decode_pairs(g_out, pw.significance, pw.gain_us(G_MIN, G_MAX)), [-1.0, 1.0])


def test_other_conductance_window_rescales_tables_and_gain() -> None:
    pw = _table_from_dual(2.0, np.array([0.0, 1 / 3, 1.0]))
    u = np.linspace(-1, 1, 101)
    g = pw.encode(u, 1.0, 31.0)  # window 30 µS instead of 25
    assert g.min() >= 1.0 and g.max() <= 31.0
    assert pw.gain_us(1.0, 31.0) == pytest.approx(75.0 * 30.0 / 25.0)
    np.testing.assert_allclose(decode_pairs(g, pw.significance, pw.gain_us(1.0, 31.0)), u, atol=1e-13)


def test_json_round_trip_through_file_dict_and_registry(tmp_path) -> None:
    pw = _table_from_dual(2.0, np.array([0.0, 0.1, 1 / 3, 1.0]))
    path = pw.save(tmp_path / "pcm.strategy.json")
    d = json.loads(path.read_text())
    assert d["schema_version"] == 1 and d["name"] == "piecewise" and d["device"] == "pcm"
    for back in (
        PiecewiseMapping.load(path),
        get_mapping(str(path)),
        get_mapping(path),
        mapping_from_dict(d),
    ):
        assert isinstance(back, PiecewiseMapping)
        assert back.significance == pw.significance and back.gain == pw.gain
        np.testing.assert_array_equal(back.u_points, pw.u_points)
        np.testing.assert_array_equal(back.tables_us, pw.tables_us)
    assert json.loads(json.dumps(pw.to_dict())) == pw.to_dict()  # embeddable in a compiled model


def test_save_refuses_to_overwrite_without_force(tmp_path) -> None:
    pw = _table_from_dual(2.0, np.array([0.0, 1.0]))
    path = pw.save(tmp_path / "s.json")
    with pytest.raises(OutputError):
        pw.save(path)
    pw.save(path, force=True)
    with pytest.raises(OutputError):
        pw.save(tmp_path / "missing_folder" / "s.json")


def test_invalid_tables_raise_config_error() -> None:
    pts = np.array([-1.0, 0.0, 1.0])
    ok = np.zeros((2, 2, 3))
    with pytest.raises(ConfigError):
        PiecewiseMapping((1.0, 2.0), pts, ok + 30.0, 75.0, G_MIN, G_MAX)  # above g_max
    with pytest.raises(ConfigError):
        PiecewiseMapping((1.0, 2.0), np.array([-1.0, 0.5, 0.0]), ok, 75.0, G_MIN, G_MAX)  # not increasing
    with pytest.raises(ConfigError):
        PiecewiseMapping((1.0, 2.0), np.array([-0.9, 0.0, 1.0]), ok, 75.0, G_MIN, G_MAX)  # not from -1
    with pytest.raises(ConfigError):
        PiecewiseMapping((1.0, 2.0), pts, np.zeros((2, 2, 4)), 75.0, G_MIN, G_MAX)  # wrong shape
    with pytest.raises(ConfigError):
        PiecewiseMapping((1.0, 2.0), pts, ok, 0.0, G_MIN, G_MAX)  # gain


def test_bad_json_raises_config_error(tmp_path) -> None:
    d = _table_from_dual(2.0, np.array([0.0, 1.0])).to_dict()
    with pytest.raises(ConfigError, match="schema_version"):
        PiecewiseMapping.from_dict(d | {"schema_version": 99})
    with pytest.raises(ConfigError, match="gain_us"):
        PiecewiseMapping.from_dict({k: v for k, v in d.items() if k != "gain_us"})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError):
        get_mapping(str(bad))
    with pytest.raises(ConfigError):
        get_mapping(str(tmp_path / "absent.json"))
