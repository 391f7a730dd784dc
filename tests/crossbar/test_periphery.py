"""Periphery configuration: presets, validation, overrides, files."""

from __future__ import annotations

import json

import pytest

from anacompile.crossbar.periphery import PERIPHERY_PRESETS, DriftCompensation, InputRange, Periphery, get_periphery
from anacompile.errors import ConfigError


def test_standard_preset_is_rasch_2023():
    p = get_periphery("standard")
    assert (p.tile_rows, p.tile_cols) == (512, 512)
    assert p.dac_step == pytest.approx(2 / 254) and p.adc_step == pytest.approx(20 / 254)
    assert p.adc_bound == 10 and p.dac_bound == 1
    assert p.out_noise == 0.04 and p.read_noise == 0.0175
    assert p.ir_drop == 1.0 and p.ir_drop_g_ratio == pytest.approx(1 / (0.35 * 5e-6))
    assert p.input_range is InputRange.STATIC and p.drift_compensation is DriftCompensation.GLOBAL


def test_ideal_preset_switches_everything_off():
    p = get_periphery("ideal")
    assert p.dac_bits is None and p.adc_bits is None and p.adc_bound is None
    assert p.read_noise == p.out_noise == p.ir_drop == 0 and not p.has_mvm_noise


def test_overrides_from_cli_strings_and_dicts():
    p = get_periphery("standard", ["adc_bits=6", "out_noise=0", "adc_bound=none", "input_range=absmax"])
    assert p.adc_bits == 6 and p.out_noise == 0 and p.adc_bound is None and p.input_range is InputRange.ABSMAX
    assert p.adc_step == pytest.approx(20 / 62)
    assert get_periphery("ideal", {"dac_bits": 7}).dac_step == pytest.approx(1 / 63)
    assert PERIPHERY_PRESETS["standard"] == Periphery()  # presets are not mutated by overrides


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("adc_bits=1", "adc_bits"),
        ("dac_bits=2.5", "dac_bits"),
        ("out_noise=-0.1", "out_noise"),
        ("tile_rows=0", "tile_rows"),
        ("input_range=dynamic", "input_range"),
        ("adc_bound=-3", "adc_bound"),
        ("drift_compensation=magic", "drift_compensation"),
        ("noise=1", "noise"),
        ("adc_bits", "KEY=VALUE"),
    ],
)
def test_invalid_values_name_the_field(override, field):
    with pytest.raises(ConfigError, match=field):
        get_periphery("standard", [override])


def test_files(tmp_path):
    y = tmp_path / "p.yaml"
    y.write_text("base: ideal\nadc_bits: 6\nadc_bound: 8\n")
    p = get_periphery(y)
    assert p.adc_bits == 6 and p.adc_bound == 8 and p.dac_bits is None
    j = tmp_path / "p.json"
    j.write_text(json.dumps({**Periphery().to_dict(), "out_noise": 0.1}))
    assert get_periphery(j).out_noise == 0.1
    assert Periphery.from_dict(Periphery().to_dict()) == Periphery()  # round trip
    bad = tmp_path / "bad.yaml"
    bad.write_text("adc_bits: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        get_periphery(bad)
    unknown = tmp_path / "u.yaml"
    unknown.write_text("adc_bitz: 6\n")
    with pytest.raises(ConfigError, match="adc_bitz"):
        get_periphery(unknown)
    with pytest.raises(ConfigError, match="does not exist"):
        get_periphery(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="Unknown periphery"):
        get_periphery("fancy")
