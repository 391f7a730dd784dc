"""ApplyPeripheryPass: node constants, in_scale and AnalogMatMul bodies are those of the periphery in force."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from anacompile import contract
from anacompile.crossbar.functions import NoiseSource, analog_matmul_attributes, build_analog_matmul_function
from anacompile.runtime.passes import ApplyPeripheryPass, AttachLayerScalesPass
from anacompile.runtime.passes.apply_periphery import _stored
from tests._support.passes import assert_idempotent, run_truthfully
from tests._support.session_passes import compiled, loaded


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("periphery")


def _matmuls(model: ir.Model) -> list[ir.Node]:
    return [n for g in [model.graph, *model.graph.subgraphs()] for n in g if n.op_type == contract.ANALOG_MATMUL]


def _bytes(function) -> bytes:
    if hasattr(function, "SerializeToString"):  # a FunctionProto: through onnx-ir, as the pass stores it
        function = ir.serde.deserialize_function(function)
    return ir.serde.serialize_function(function).SerializeToString(deterministic=True)


@pytest.mark.parametrize("name", ["digits_mlp_hwa", "digits_lstm_hwa"])
def test_an_override_sets_constants_scales_and_bodies(folder, name):
    _, model, layers, stored = loaded(compiled(folder, name))
    periphery = stored.replace(adc_bits=6, dac_bits=6, read_noise=0.02)
    seeds = {n.name: int(n.attributes["seed"].value) for n in _matmuls(model)}
    AttachLayerScalesPass(layers, periphery)(model)
    assert run_truthfully(ApplyPeripheryPass(layers, periphery), model)
    for node in _matmuls(model):
        want = {
            k: ir.convenience.convert_attribute(k, v).value
            for k, v in analog_matmul_attributes(periphery, seeds[node.name]).items()
        }
        assert {k: a.value for k, a in node.attributes.items()} == want  # the seed kept, the constants new
    for layer in layers:
        if layer.owns_tiles:
            got = model.graph.initializers[f"{layer.name}.{contract.IN_SCALE}"].const_value.numpy()
            np.testing.assert_array_equal(got, layer.in_scale)
    bodies = {k[2]: f for k, f in model.functions.items() if k[0] == contract.DOMAIN}
    assert {k[1] for k in model.functions if k[0] == contract.DOMAIN} == {contract.ANALOG_MATMUL}
    opset = model.opset_imports[""]
    called = {n.overload for n in _matmuls(model)}  # the bodies the nodes call, and the fed ones of their tilings
    assert set(bodies) == called | {"tiled_fed" if o.startswith("tiled") else "fed" for o in called}
    for source, overloads in ((NoiseSource.BANK, ("", "tiled")), (NoiseSource.FED, ("fed", "tiled_fed"))):
        for tiled, overload in zip((False, True), overloads, strict=True):
            if overload in bodies:
                assert _bytes(bodies[overload]) == _bytes(
                    build_analog_matmul_function(periphery, opset, source, tiled=tiled)
                )
    assert_idempotent(ApplyPeripheryPass(layers, periphery), model)


def test_the_stored_periphery_keeps_the_files_constants_and_scales(folder):
    _, model, layers, stored = loaded(compiled(folder, "digits_mlp_hwa"))
    before = {n.name: _stored(n.attributes) for n in _matmuls(model)}
    scales = {
        k: v.const_value.numpy().copy() for k, v in model.graph.initializers.items() if k.endswith(contract.IN_SCALE)
    }
    AttachLayerScalesPass(layers, stored)(model)
    assert run_truthfully(ApplyPeripheryPass(layers, stored), model)  # the bodies: bank and fed noise
    assert {n.name: _stored(n.attributes) for n in _matmuls(model)} == before
    for k, v in scales.items():
        np.testing.assert_array_equal(model.graph.initializers[k].const_value.numpy(), v)
