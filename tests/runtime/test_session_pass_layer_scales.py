"""AttachLayerScalesPass: each layer's scales are the file's, and the periphery's scales are layer_scales'."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from anacompile import contract
from anacompile.crossbar.reference import layer_scales
from anacompile.errors import ConfigError, UnsupportedModelError
from anacompile.runtime.passes import AttachLayerScalesPass
from tests._support.passes import run_truthfully
from tests._support.session_passes import compiled, loaded


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("layer_scales")


def _init(model: ir.Model, name: str) -> np.ndarray:
    return model.graph.initializers[name].const_value.numpy()


@pytest.mark.parametrize("overrides", [None, ["adc_bits=6", "dac_bits=5"]])
def test_scales_are_the_files_and_the_periphery_scales_are_layer_scales(folder, overrides):
    _, model, layers, stored = loaded(compiled(folder, "digits_cnn_hwa"))
    periphery = stored if overrides is None else stored.replace(adc_bits=6, dac_bits=5)
    assert not run_truthfully(AttachLayerScalesPass(layers, periphery), model)  # analysis only
    assert len(layers) == 3  # conv1, conv2, fc
    for layer in layers:
        col = _init(model, f"{layer.weights}.{contract.COL_SCALE}")
        rng = _init(model, f"{layer.weights}.{contract.IN_RANGE}")
        gain = _init(model, f"{layer.weights}.{contract.OUT_GAIN}")
        np.testing.assert_array_equal(layer.col_scale, col)
        np.testing.assert_array_equal(layer.in_range, rng)
        np.testing.assert_array_equal(layer.out_gain, gain)
        in_scale, out_scale = layer_scales(col, rng, periphery, gain)
        np.testing.assert_array_equal(layer.in_scale, in_scale)
        np.testing.assert_array_equal(layer.out_scale, out_scale)
        if overrides is None:  # the stored periphery gives back the file's own in_scale
            np.testing.assert_array_equal(layer.in_scale, _init(model, f"{layer.weights}.{contract.IN_SCALE}"))


def test_an_override_changes_the_scales_by_the_dac_step(folder):
    _, model, layers, stored = loaded(compiled(folder, "digits_mlp_hwa"))
    AttachLayerScalesPass(layers, stored)(model)
    before = [layer.in_scale.copy() for layer in layers]
    AttachLayerScalesPass(layers, stored.replace(dac_bits=stored.dac_bits - 1))(model)
    levels = lambda bits: 2 ** (bits - 1) - 1  # noqa: E731  (DAC levels per sign)
    ratio = levels(stored.dac_bits - 1) / levels(stored.dac_bits)
    for layer, old in zip(layers, before, strict=True):
        np.testing.assert_allclose(layer.in_scale, old * ratio, rtol=1e-6)


def test_a_scale_that_does_not_fit_the_tiles_is_one_clear_error(folder):
    _, model, layers, stored = loaded(compiled(folder, "digits_mlp_hwa"))
    name = f"{layers[0].weights}.{contract.COL_SCALE}"
    model.graph.initializers[name].const_value = ir.tensor(np.ones(3, np.float32), name=name)
    with pytest.raises(UnsupportedModelError, match=rf"scales of layer '{layers[0].name}'.*corrupt"):
        AttachLayerScalesPass(layers, stored)(model)
    del model.graph.initializers[name]
    with pytest.raises(UnsupportedModelError, match=rf"lacks initializer '{name}'"):
        AttachLayerScalesPass(layers, stored)(model)


def test_calibrated_ranges_on_a_fixed_range_model_name_the_fix(folder):
    _, model, layers, stored = loaded(compiled(folder, "digits_mlp_fp", periphery="standard"))
    with pytest.raises(ConfigError, match="recompile it with --calibration"):
        AttachLayerScalesPass(layers, stored.replace(output_range="calibrated"))(model)
