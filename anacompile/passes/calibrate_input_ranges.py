"""CalibrateInputRangesPass: static DAC input range per tile, from a few batches of real data.

Rasch et al. 2023 use a static input range alpha_in per tile, initialised from data and then learned
(reference/papers.md, (c), "Input"). We calibrate it once at compile time: alpha_in of a tile is the
``input_range_percentile`` of |x| over the tile's rows and the calibration samples (100 = the maximum),
so that the DAC clips nothing the calibration data showed it.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

from anacompile.crossbar.periphery import InputRange, Periphery
from anacompile.crossbar.reference import tile_input
from anacompile.errors import ConfigError, DataError
from anacompile.passes._layer import analog_layers

__all__ = ["CalibrateInputRangesPass", "SetInputRangesPass"]


class SetInputRangesPass(ir.passes.InPlacePass):
    """Static DAC input ranges provided by the user (e.g. learned in hardware-aware training), per layer.

    Args:
        ranges: layer name (as in the compile report) -> one range for all its tiles, or one per row tile.
        require_all: every analog layer must be listed (no calibration data for the others).
    """

    def __init__(self, ranges: dict[str, float | list[float]], require_all: bool = False) -> None:
        super().__init__()
        self.ranges = dict(ranges)
        self.require_all = require_all

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        plans = {plan.name: plan for _, plan in analog_layers(model)}
        unknown = sorted(set(self.ranges) - set(plans))
        if unknown:
            raise ConfigError(f"Input ranges given for unknown layer(s) {unknown}; the analog layers are "
                              f"{sorted(plans)}.")
        missing = sorted(set(plans) - set(self.ranges))
        if self.require_all and missing:
            raise ConfigError(f"No input range for layer(s) {missing}: list them in the input-ranges file or pass "
                              "calibration data.")
        modified = False
        for name, value in self.ranges.items():
            plan = plans[name]
            if plan.in_range is not None:
                continue
            r = np.asarray(value, np.float64).reshape(-1)
            if r.size == 1:
                r = np.repeat(r, plan.n_tiles)
            if r.size != plan.n_tiles or not np.all(np.isfinite(r)) or np.any(r <= 0):
                raise ConfigError(f"Input range of layer {name!r}: {value!r}; give one positive number, or one "
                                  f"per row tile ({plan.n_tiles}).")
            plan.in_range = r.astype(np.float32).reshape(plan.n_tiles, 1, 1)
            modified = True
        return ir.passes.PassResult(model, modified=modified)


class CalibrateInputRangesPass(ir.passes.InPlacePass):
    """Run the (still digital) model on calibration inputs and record every analog layer's input range.

    Args:
        periphery: the periphery; nothing is done unless ``input_range`` is ``static``.
        feeds: model input name -> array of calibration samples.
    """

    def __init__(self, periphery: Periphery, feeds: dict[str, np.ndarray] | None) -> None:
        super().__init__()
        self.periphery = periphery
        self.feeds = feeds

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        layers = [plan for _, plan in analog_layers(model) if plan.in_range is None]
        if self.periphery.input_range is not InputRange.STATIC or not layers:
            return ir.passes.PassResult(model, modified=False)
        if self.feeds is None:
            for plan in layers:  # no data: a documented default of full scale 1.0
                plan.in_range = np.ones((plan.n_tiles, 1, 1), np.float32)
            return ir.passes.PassResult(model, modified=True)
        proto = ir.serde.serialize_model(model)
        known = {o.name for o in proto.graph.output}
        names = [plan.input.name for plan in layers]
        for name in names:
            if name not in known:
                proto.graph.output.append(_value_info(name))
                known.add(name)
        so = ort.SessionOptions()
        folders = {str(v.const_value.base_dir) for g in model.graphs() for v in g.initializers.values()
                   if isinstance(v.const_value, ir.ExternalTensor)}
        if len(folders) == 1:  # a source with external data: ORT reads it from there, not from memory
            so.add_session_config_entry("session.model_external_initializers_file_folder_path", folders.pop())
        try:
            sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
            outs = sess.run(names, self.feeds)
        except Exception as err:  # onnxruntime raises its own exception types
            raise DataError(f"Calibration data could not be run through the model: {err}") from err
        q = self.periphery.input_range_percentile
        for plan, x in zip(layers, outs, strict=True):
            # ops that feed the tiles a transform of their input (Conv: patches) say how, in extra["to_matrix"]
            x = plan.extra.get("to_matrix", lambda a: a)(np.asarray(x, np.float32))
            xt = np.abs(tile_input(np.asarray(x, np.float32), plan.n_tiles, plan.tile_rows))
            r = np.percentile(xt.reshape(plan.n_tiles, -1), q, axis=1)
            plan.in_range = np.where(r > 0, r, 1.0).astype(np.float32).reshape(plan.n_tiles, 1, 1)
        return ir.passes.PassResult(model, modified=True)


def _value_info(name: str):
    import onnx

    vi = onnx.ValueInfoProto()
    vi.name = name
    return vi
