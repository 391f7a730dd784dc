"""AttachLayerScalesPass: every layer's gamma, alpha_in, output gains and periphery scales, from the file.

An analysis pass (the graph is not changed): for each session layer it reads ``W.col_scale`` and
``W.in_range`` (W the layer whose tiles it reads), and ``W.out_gain`` with calibrated output ranges, checks them
against the layer's tiles, and sets ``in_scale`` and ``out_scale`` for the periphery in force
(:func:`~anacompile.crossbar.reference.layer_scales`).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from anacompile import contract
from anacompile.crossbar.periphery import OutputRange, Periphery
from anacompile.crossbar.reference import layer_scales
from anacompile.errors import ConfigError, UnsupportedModelError

__all__ = ["AttachLayerScalesPass"]


def _initializer_array(model: ir.Model, name: str) -> np.ndarray:
    value = model.graph.initializers.get(name)
    if value is None or value.const_value is None:
        raise UnsupportedModelError(
            f"The compiled model lacks initializer {name!r}; recompile it with this anacompile."
        )
    a = value.const_value.numpy()
    if a.dtype.kind != "f" or not np.isfinite(a).all():
        raise UnsupportedModelError(
            f"The compiled model's initializer {name!r} is not finite floating point; "
            "the file is corrupt: recompile the source model."
        )
    return a


class AttachLayerScalesPass(ir.passes.InPlacePass):
    """Set ``col_scale``, ``in_range``, ``out_gain``, ``in_scale`` and ``out_scale`` of every session layer.

    Args:
        layers: the session's layers (``ChipLayer``: ``name``, ``weights``, ``n_tiles``, ``n_out``).
        periphery: the periphery in force (the stored one, or with the session's overrides).

    Raises:
        UnsupportedModelError: a scale is missing, not finite, or does not fit the layer's tiles.
        ConfigError: calibrated output ranges asked for a model compiled with fixed ones.
    """

    def __init__(self, layers: list, periphery: Periphery) -> None:
        super().__init__()
        self.layers = layers
        self.periphery = periphery

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        for layer in self.layers:
            layer.col_scale = _initializer_array(model, f"{layer.weights}.{contract.COL_SCALE}")
            layer.in_range = _initializer_array(model, f"{layer.weights}.{contract.IN_RANGE}")
            if (
                layer.col_scale.size != layer.n_tiles * layer.n_out
                or layer.in_range.size != layer.n_tiles
                or (layer.col_scale < 0).any()
                or (layer.in_range < 0).any()
            ):
                raise UnsupportedModelError(
                    f"The compiled model's scales of layer {layer.name!r} ({contract.COL_SCALE} "
                    f"{list(layer.col_scale.shape)}, {contract.IN_RANGE} {list(layer.in_range.shape)}) do not fit "
                    f"its {layer.n_tiles} tile(s) of {layer.n_out} columns; the file is corrupt: recompile the "
                    "source model."
                )
            layer.out_gain = None
            if self.periphery.output_range is OutputRange.CALIBRATED:
                if f"{layer.weights}.{contract.OUT_GAIN}" not in model.graph.initializers:
                    raise ConfigError(
                        f"Layer {layer.name!r} has no calibrated output range: the model was compiled with "
                        "fixed output ranges; recompile it with --calibration (output_range=calibrated)."
                    )
                layer.out_gain = _initializer_array(model, f"{layer.weights}.{contract.OUT_GAIN}")
            layer.in_scale, layer.out_scale = layer_scales(
                layer.col_scale, layer.in_range, self.periphery, layer.out_gain
            )
        return ir.passes.PassResult(model, modified=False)
