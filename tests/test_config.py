"""The one configuration loader: presets, files (YAML 1.2 numbers, schema_version) and overrides."""

from __future__ import annotations

import json

import pytest
import yaml

from anacompile import config, devices
from anacompile.crossbar.periphery import Compensation, DriftCompensation, Periphery, get_periphery
from anacompile.errors import ConfigError, DeviceError
from anacompile.mapping.registry import get_mapping


def test_yaml_numbers_without_a_dot_are_numbers(tmp_path):
    text = "read_noise: 1e-2\nout_noise: 2E-2\nadc_bound: 1e1\nadc_bits: 6\n"
    assert isinstance(yaml.safe_load(text)["read_noise"], str)  # the PyYAML behaviour this loader fixes
    f = tmp_path / "p.yaml"
    f.write_text(text)
    data = config.read_config_file(f, "Periphery file")
    assert data == {"read_noise": 0.01, "out_noise": 0.02, "adc_bound": 10.0, "adc_bits": 6}
    assert type(data["read_noise"]) is float and type(data["adc_bits"]) is int
    p = get_periphery(f)
    assert (p.read_noise, p.out_noise, p.adc_bound, p.adc_bits) == (0.01, 0.02, 10.0, 6)


def test_device_and_periphery_files_read_alike(tmp_path):
    dev = tmp_path / "d.yaml"
    dev.write_text("schema_version: 1\nbase: pcm\ng_max_us: 3e1\ndrift: {t0_s: 2e1}\n")
    d = devices.get(dev)
    assert d.g_max_us == 30.0 and d.drift.t0_s == 20.0
    per = tmp_path / "p.yaml"
    per.write_text("schema_version: 1\nbase: ideal\nout_noise: 4e-2\n")
    assert get_periphery(per).out_noise == 0.04


@pytest.mark.parametrize("version", ["2", "'1'", "true", "0"])
def test_schema_version_is_checked(tmp_path, version):
    for name, load, err in (("p.yaml", get_periphery, ConfigError), ("d.yaml", devices.get, DeviceError)):
        f = tmp_path / name
        f.write_text(f"schema_version: {version}\n")
        with pytest.raises(err, match=rf"{name}.*schema_version"):
            load(f)
    with pytest.raises(ConfigError, match="schema_version"):
        Periphery.from_dict({**Periphery().to_dict(), "schema_version": 2})


def test_input_ranges_file_is_read_by_the_loader(tmp_path):
    from anacompile.compiler import _load_input_ranges

    f = tmp_path / "r.yaml"
    f.write_text("schema_version: 1\nfc1: 2.5e0\nfc2: [1e0, 2e0]\n")
    assert _load_input_ranges(f) == {"fc1": 2.5, "fc2": [1.0, 2.0]}
    bad = tmp_path / "r.json"
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(ConfigError, match=r"r\.json.*one mapping"):
        _load_input_ranges(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        _load_input_ranges(tmp_path / "missing.json")


def test_strategy_file_errors_name_the_file(tmp_path):
    f = tmp_path / "s.json"
    f.write_text("{not json")
    with pytest.raises(ConfigError, match=r"Strategy file .*s\.json.*not valid JSON"):
        get_mapping(str(f))
    with pytest.raises(ConfigError, match="does not exist"):
        get_mapping(str(tmp_path / "missing.json"))


def test_overrides_parse_as_yaml_scalars():
    parsed = config.parse_overrides(["a=6", "b=1e-7", "c=none", "d=absmax", "e=2.5", "f.g=3", "f.h=off"])
    assert parsed == {"a": 6, "b": 1e-7, "c": None, "d": "absmax", "e": 2.5, "f": {"g": 3, "h": None}}
    assert type(parsed["a"]) is int and type(parsed["b"]) is float
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        config.parse_overrides(["adc_bits"])
    with pytest.raises(ConfigError, match="both as a value and as a group"):
        config.parse_overrides(["f=1", "f.g=2"])
    assert get_periphery("standard", ["read_noise=1e-2"]).read_noise == 0.01


def test_device_overrides_reach_nested_fields():
    d = devices.get("pcm", ["drift.t0_s=10", "g_max_us=2e1"])
    assert d.drift.t0_s == 10 and d.g_max_us == 20.0
    assert devices.get("pcm") == devices.get("pcm", None)  # presets are not mutated
    with pytest.raises(DeviceError, match="drift"):
        devices.get("pcm", ["drift.t0_z=10"])


def test_load_config_rejects_unknown_base_and_preset(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("base: fancy\n")
    with pytest.raises(ConfigError, match=r"p\.yaml.*base = 'fancy'.*ideal, standard"):
        get_periphery(f)
    with pytest.raises(DeviceError, match="Unknown device"):
        devices.get("pcn")
    with pytest.raises(ConfigError, match="must end in"):
        config.read_config_file(tmp_path / "p.txt", "Periphery file")


def test_compensation_enum_at_the_public_api():
    import anacompile

    assert anacompile.Compensation is Compensation
    assert Compensation("adabs") is Compensation.ADABS and Compensation.ADABS == "adabs"
    assert Compensation.ADABS.drift is DriftCompensation.GLOBAL
    assert Compensation.parse(DriftCompensation.COLUMN) is Compensation.COLUMN
    assert {m.value for m in DriftCompensation} < {m.value for m in Compensation}
    with pytest.raises(ConfigError, match="none, global, column, adabs"):
        Compensation.parse("adbas")
