"""The contract package: signatures, typed specs, tile constants and the domain-version check."""

from __future__ import annotations

from pathlib import Path

import pytest

from anacompile import contract, ops
from anacompile.crossbar.periphery import get_periphery
from anacompile.crossbar.reference import tile_constants
from anacompile.errors import UnsupportedModelError


def test_chip_weights_takes_five_inputs_and_returns_w_and_scale() -> None:
    sig = contract.CHIP_WEIGHTS_SIGNATURE
    assert sig.inputs == ("g_prog", "nu", "t_inference", "gdc_ref", "out_scale")
    assert sig.outputs == ("W", "scale")
    assert contract.ANALOG_MATMUL_SIGNATURE.input_index("noise_bank") == 6


def test_tile_constants_are_the_matmul_attributes() -> None:
    c = tile_constants(get_periphery("standard"))
    assert isinstance(c, contract.TileConstants)
    assert ("seed", *c.as_attributes()) == contract.MATMUL_ATTRIBUTES
    assert c["code_gain"] == c.code_gain
    with pytest.raises(KeyError):
        c["nonsense"]


def test_layer_spec_reads_the_tile_axis_from_the_plan_rank() -> None:
    one = contract.LayerSpec.from_plan_shape("fc", 0, (1, 2, 64, 10))
    tiled = contract.LayerSpec.from_plan_shape("fc", 1, (2, 2, 3, 256, 10))
    assert (one.tiled, one.n_tiles, one.weight_shape, one.scale_shape) == (False, 1, (64, 10), (1, 10))
    assert (tiled.tiled, tiled.n_tiles, tiled.pairs, tiled.weight_shape, tiled.scale_shape) == (
        True,
        3,
        2,
        (3, 256, 10),
        (3, 1, 10),
    )
    with pytest.raises(ValueError, match="expected"):
        contract.LayerSpec.from_plan_shape("fc", 0, (2, 10))


def test_a_newer_domain_version_is_refused_naming_the_anacompile_needed() -> None:
    contract.check_domain_version({contract.DOMAIN: contract.DOMAIN_VERSION})
    with pytest.raises(
        UnsupportedModelError,
        match=rf"version {contract.DOMAIN_VERSION + 1}; this anacompile .* reads up to version "
        rf"{contract.DOMAIN_VERSION}: install anacompile >= 0\.9\.0",
    ):
        contract.check_domain_version({contract.DOMAIN: contract.DOMAIN_VERSION + 1}, {contract.META_VERSION: "0.9.0"})


def test_ops_is_an_alias_of_the_contract() -> None:
    assert ops.DOMAIN == contract.DOMAIN and ops.read_report is contract.read_report
    assert contract.layer_tensor("fc1", contract.G_TARGET) == "fc1.g_target"


def test_the_session_refuses_a_model_of_a_newer_domain_version(tmp_path) -> None:
    import onnx

    from anacompile.compiler import compile_model
    from anacompile.runtime.session import AnalogSession

    src = Path(__file__).resolve().parents[1] / "models" / "digits_mlp_hwa.onnx"
    out = tmp_path / "m.analog.onnx"
    compile_model(src, out)
    proto = onnx.load(str(out))
    for o in proto.opset_import:
        if o.domain == contract.DOMAIN:
            o.version = contract.DOMAIN_VERSION + 1
    newer = tmp_path / "newer.onnx"
    onnx.save(proto, str(newer))
    with pytest.raises(
        UnsupportedModelError, match=rf"reads up to version {contract.DOMAIN_VERSION}: install anacompile >= "
    ):
        AnalogSession(newer)
