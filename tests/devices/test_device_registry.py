"""Tests of anacompile.devices.get / available: presets and device files (YAML, JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anacompile import devices
from anacompile.devices import PCM_JOSHI_2020, PCMDevice, available, get
from anacompile.errors import DeviceError


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_available_lists_the_presets() -> None:
    assert available() == ["pcm", "rram_wan2022"]


def test_get_pcm_returns_the_preset() -> None:
    assert get("pcm") is PCM_JOSHI_2020


def test_public_names() -> None:
    for name in ("get", "available", "Device", "PCMDevice", "PCM_JOSHI_2020"):
        assert name in devices.__all__


GOOD_YAML = """\
base: pcm
name: pcm-30us
g_max_us: 30
drift:
  t0_s: 10
  drift_scale: 0.5
  g_floor: 1e-6          # YAML 1.2 float without a dot
  mu_bounds: [0.04, 0.12]
read_noise:
  t_read_s: 5.0e-7
"""


@pytest.mark.parametrize("as_path", [True, False])
def test_good_yaml_file_overrides_the_preset(tmp_path: Path, as_path: bool) -> None:
    path = _write(tmp_path / "pcm30.yaml", GOOD_YAML)
    device = get(path if as_path else str(path))
    assert device == PCM_JOSHI_2020.replace(
        name="pcm-30us",
        g_max_us=30.0,
        drift={"t0_s": 10.0, "drift_scale": 0.5, "g_floor": 1e-6, "mu_bounds": (0.04, 0.12)},
        read_noise={"t_read_s": 5e-7},
    )
    assert device.drift.mu_slope == PCM_JOSHI_2020.drift.mu_slope  # untouched fields keep the preset
    assert device.programming == PCM_JOSHI_2020.programming
    assert device.programming_sigma_us(15.0) == pytest.approx(0.952705 * 30 / 25, rel=1e-12)


def test_yml_suffix_and_missing_base(tmp_path: Path) -> None:
    device = get(_write(tmp_path / "dev.YML", "g_min_us: 0.5\n"))
    assert device == PCM_JOSHI_2020.replace(g_min_us=0.5)


def test_good_json_file(tmp_path: Path) -> None:
    data = {"base": "pcm", "name": "json-dev", "g_max_us": 20, "programming": {"g_max_reference_us": 20}}
    device = get(_write(tmp_path / "dev.json", json.dumps(data)))
    assert device.name == "json-dev" and device.g_max_us == 20.0
    assert device.programming_sigma_us(20.0) == pytest.approx(1.05538, rel=1e-12)


def test_to_dict_written_as_a_device_file_loads_back(tmp_path: Path) -> None:
    device = PCM_JOSHI_2020.replace(name="round-trip", drift={"drift_scale": 2.0})
    assert get(_write(tmp_path / "dev.json", json.dumps(device.to_dict()))) == device


def _device_error(path: Path) -> str:
    with pytest.raises(DeviceError) as info:
        get(path)
    message = str(info.value)
    assert str(path) in message  # every device-file error names the file
    return message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    message = _device_error(_write(tmp_path / "dev.yaml", "g_max: 30\n"))
    assert "'g_max'" in message and "g_max_us" in message


def test_unknown_nested_key(tmp_path: Path) -> None:
    message = _device_error(_write(tmp_path / "dev.yaml", "drift:\n  t_0: 20\n"))
    assert "'drift.t_0'" in message and "t0_s" in message


def test_bad_type(tmp_path: Path) -> None:
    message = _device_error(_write(tmp_path / "dev.yaml", "g_max_us: thirty\n"))
    assert "g_max_us" in message and "'thirty'" in message and "str" in message


def test_bad_nested_type(tmp_path: Path) -> None:
    message = _device_error(_write(tmp_path / "dev.json", '{"read_noise": [1, 2]}'))
    assert "read_noise" in message and "q_coefficient" in message


def test_negative_g_max(tmp_path: Path) -> None:
    message = _device_error(_write(tmp_path / "dev.yaml", "g_max_us: -30\n"))
    assert "g_max_us" in message and "-30.0" in message and "> 0" in message


def test_bad_nested_value(tmp_path: Path) -> None:
    message = _device_error(_write(tmp_path / "dev.yaml", "drift: {mu_bounds: [0.1, 0.05]}\n"))
    assert "mu_bounds" in message and "lower <= upper" in message


def test_missing_file(tmp_path: Path) -> None:
    message = _device_error(tmp_path / "absent.yaml")
    assert "does not exist" in message


def test_malformed_yaml(tmp_path: Path) -> None:
    message = _device_error(_write(tmp_path / "dev.yaml", "g_max_us: [30\n"))
    assert "not valid YAML" in message


def test_malformed_json(tmp_path: Path) -> None:
    message = _device_error(_write(tmp_path / "dev.json", '{"g_max_us": 30,}'))
    assert "not valid JSON" in message


@pytest.mark.parametrize("text", ["", "- 1\n- 2\n", "pcm\n"])
def test_file_not_holding_a_mapping(tmp_path: Path, text: str) -> None:
    message = _device_error(_write(tmp_path / "dev.yaml", text))
    assert "must hold one mapping" in message


def test_unknown_base(tmp_path: Path) -> None:
    message = _device_error(_write(tmp_path / "dev.yaml", "base: rram\n"))
    assert "'rram'" in message and "pcm" in message


def test_non_string_key(tmp_path: Path) -> None:
    message = _device_error(_write(tmp_path / "dev.yaml", "1: 2\n"))
    assert "'1'" in message and "g_max_us" in message


@pytest.mark.parametrize("name", ["rram", "PCM", "", "device.txt", "pcm.yaml.bak"])
def test_unknown_preset_lists_the_available_ones(name: str) -> None:
    with pytest.raises(DeviceError) as info:
        get(name)
    message = str(info.value)
    assert repr(name) in message and "available presets: pcm" in message and ".yaml" in message


def test_device_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="available presets"):
        get("nope")


def test_loaded_device_is_a_pcm_device(tmp_path: Path) -> None:
    assert isinstance(get(_write(tmp_path / "d.yaml", "name: x\n")), PCMDevice)
