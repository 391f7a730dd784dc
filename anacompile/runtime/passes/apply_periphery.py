"""ApplyPeripheryPass: the periphery in force (stored, or the session's overrides) in the session's model.

Every session layer's ``AnalogMatMul`` gets the constants of the periphery (its seed kept), ``L.in_scale``
becomes the layer's ``in_scale`` (:class:`~anacompile.runtime.passes.layer_scales.AttachLayerScalesPass`), and
the file's ``AnalogChipWeights``/``AnalogMatMul`` bodies are replaced by the session's ``AnalogMatMul`` bodies
(bank and fed noise, one tile and tiled) built for that periphery. With no override the constants and scales
are those of the file.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from anacompile import contract
from anacompile.contract import TILED
from anacompile.crossbar.functions import (
    NoiseSource,
    analog_matmul_attributes,
    build_analog_matmul_function,
    overload_name,
)
from anacompile.crossbar.periphery import Periphery
from anacompile.runtime.passes._walk import analog_matmuls

__all__ = ["ApplyPeripheryPass"]

DEFAULT_OPSET = 17


class ApplyPeripheryPass(ir.passes.InPlacePass):
    """Set the ``AnalogMatMul`` constants, ``L.in_scale`` and the ``AnalogMatMul`` bodies from ``periphery``.

    Args:
        layers: the session's layers (``ChipLayer``: ``name``, ``in_scale``).
        periphery: the periphery in force.
    """

    def __init__(self, layers: list, periphery: Periphery) -> None:
        super().__init__()
        self.layers = layers
        self.periphery = periphery

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        by_name = {layer.name: layer for layer in self.layers}
        modified = False
        for _, _, node in analog_matmuls(model.graph, by_name):
            seed = node.attributes["seed"].value if "seed" in node.attributes else 0.0
            wanted = {
                key: ir.convenience.convert_attribute(key, value)
                for key, value in analog_matmul_attributes(self.periphery, seed=int(seed)).items()
            }
            if _stored(node.attributes) != _stored(wanted):
                node.attributes.clear()
                node.attributes.update(wanted)
                modified = True
        for name, value in model.graph.initializers.items():
            layer_name, _, suffix = name.rpartition(".")
            if suffix == contract.IN_SCALE and layer_name in by_name:
                in_scale = by_name[layer_name].in_scale
                if value.const_value is None or not np.array_equal(value.const_value.numpy(), in_scale):
                    value.const_value = ir.tensor(in_scale, name=name)
                    modified = True
        opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx", DEFAULT_OPSET))
        # the overloads the nodes call, and the fed one of each tiling in use (a later session pass may feed a
        # Loop body's layers, unroll_loops); building and converting a body costs ~15 ms of a session's start
        used = {node.overload for _, _, node in analog_matmuls(model.graph, by_name)}
        tilings = {overload.startswith(TILED) for overload in used}
        bodies = [
            ir.serde.deserialize_function(build_analog_matmul_function(self.periphery, opset, source, tiled=tiled))
            for source in (NoiseSource.BANK, NoiseSource.FED)
            for tiled in (False, True)
            if overload_name(tiled, source) in used or (source is NoiseSource.FED and tiled in tilings)
        ]
        old = {k: f for k, f in model.functions.items() if k[0] == contract.DOMAIN and k[1] in _REPLACED}
        if [_body(f) for f in old.values()] != [_body(f) for f in bodies]:
            for key in old:
                del model.functions[key]
            for function in bodies:
                model.functions[function.identifier()] = function
            modified = True
        return ir.passes.PassResult(model, modified=modified)


_REPLACED = (contract.CHIP_WEIGHTS, contract.ANALOG_MATMUL)


def _stored(attributes) -> list[tuple[str, object]]:
    """Attributes as the file stores them (FLOAT attributes in float32)."""
    return [
        (k, float(np.float32(a.value)) if a.type == ir.AttributeType.FLOAT else a.value) for k, a in attributes.items()
    ]


def _body(function: ir.Function) -> bytes:
    return ir.serde.serialize_function(function).SerializeToString(deterministic=True)
