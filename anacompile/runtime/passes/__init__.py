"""The session's graph edits as onnx-ir passes: the compiled file -> the model an ``AnalogSession`` runs.

:func:`session_pipeline` runs, in order (each pass its own module and test module):

1. :class:`~anacompile.runtime.passes.layer_scales.AttachLayerScalesPass` (analysis): every layer's gamma,
   alpha_in, output gains and the scales of the periphery in force, read from the file's initializers;
2. :class:`~anacompile.runtime.passes.strip_chip_stage.StripChipStagePass`: the in-graph chip stage
   (``AnalogChipWeights``) is removed; its outputs become inputs fed per (chip, t);
3. :class:`~anacompile.runtime.passes.noise_inputs.FeedNoisePass`: ``AnalogMatMul`` reads its per-MVM noise
   from the session (main graph: the noise tensor itself; If/Loop bodies: slices of a fed noise bank at
   offsets computed in the graph per iteration);
4. :class:`~anacompile.runtime.passes.apply_periphery.ApplyPeripheryPass`: node constants, ``L.in_scale`` and
   the ``AnalogMatMul`` bodies of the periphery in force (the stored one, or the session's overrides).

:func:`session_model` runs them on a protobuf model and returns the session's protobuf model.
"""

from __future__ import annotations

import onnx
import onnx_ir as ir

from anacompile.crossbar.periphery import Periphery
from anacompile.runtime.passes.apply_periphery import ApplyPeripheryPass
from anacompile.runtime.passes.layer_scales import AttachLayerScalesPass
from anacompile.runtime.passes.noise_inputs import FeedNoisePass
from anacompile.runtime.passes.strip_chip_stage import StripChipStagePass

__all__ = [
    "ApplyPeripheryPass",
    "AttachLayerScalesPass",
    "FeedNoisePass",
    "StripChipStagePass",
    "session_model",
    "session_pipeline",
]


def session_pipeline(layers: list, periphery: Periphery) -> ir.passes.PassManager:
    """The session's passes over the compiled model, for the session's ``layers`` (``ChipLayer``) and periphery."""
    return ir.passes.PassManager(
        [
            AttachLayerScalesPass(layers, periphery),
            StripChipStagePass(layers),
            FeedNoisePass(layers, periphery),
            ApplyPeripheryPass(layers, periphery),
        ],
        early_stop=False,
    )


def session_model(proto: onnx.ModelProto, layers: list, periphery: Periphery) -> onnx.ModelProto:
    """The model the session runs, made from the compiled ``proto`` (left unchanged) by :func:`session_pipeline`."""
    model = ir.serde.deserialize_model(proto)
    session_pipeline(layers, periphery)(model)
    return ir.serde.serialize_model(model)
