"""CalibrateInputRangesPass: static DAC input range per tile, from a few batches of real data.

Rasch et al. 2023 use a static input range alpha_in per tile, initialised from data and then learned
(reference/papers.md, (c), "Input"). We calibrate it once at compile time: alpha_in of a tile is the
``input_range_percentile`` of |x| over the tile's rows and the calibration samples (100 = the maximum),
so that the DAC clips nothing the calibration data showed it.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

from anacompile.crossbar.periphery import InputRange, OutputRange, Periphery
from anacompile.crossbar.reference import ABSMAX_EPS, tile_constants, tile_input
from anacompile.errors import ConfigError, DataError, UnsupportedModelError
from anacompile.graph_walk import FLAT, expose_values
from anacompile.mapping import decode_pairs
from anacompile.passes._layer import (
    CalibrationSample,
    InputRanges,
    NoCalibrationData,
    OutputGains,
    analog_layers,
    node_plans,
    plan_mapping,
    walk_nodes,
)

logger = logging.getLogger(__name__)

__all__ = ["CalibrateInputRangesPass", "CalibrateOutputRangesPass", "SetInputRangesPass"]


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
            raise ConfigError(
                f"Input ranges given for unknown layer(s) {unknown}; the analog layers are {sorted(plans)}."
            )
        missing = sorted(set(plans) - set(self.ranges))
        if self.require_all and missing:
            raise ConfigError(
                f"No input range for layer(s) {missing}: list them in the input-ranges file or pass calibration data."
            )
        modified = False
        for name, value in self.ranges.items():
            plan = plans[name]
            if plan.in_range is not None:
                continue
            r = np.asarray(value, np.float64).reshape(-1)
            if r.size == 1:
                r = np.repeat(r, plan.n_tiles)
            if r.size != plan.n_tiles or not np.all(np.isfinite(r)) or np.any(r <= 0):
                raise ConfigError(
                    f"Input range of layer {name!r}: {value!r}; give one positive number, or one "
                    f"per row tile ({plan.n_tiles})."
                )
            plan.write(InputRanges(r.astype(np.float32).reshape(plan.n_tiles, 1, 1)))
            modified = True
        return ir.passes.PassResult(model, modified=modified)


MAX_CALIBRATION_VALUES = 1 << 22
"""Most tile-input values kept per layer for the output-range calibration (a random subsample of the vectors
beyond it; the input ranges' maximum is always exact)."""


class CalibrateInputRangesPass(ir.passes.InPlacePass):
    """Run the (still digital) model on calibration inputs and record every analog layer's input range.

    The feeds run one by one (a model with a fixed batch of 1 or variable shapes calibrates too); a layer
    whose tiles several ops read (a shared weight) is calibrated over all of its uses' inputs. With
    ``output_range: calibrated``, the layer's tile inputs (a seeded subsample of at most
    :data:`MAX_CALIBRATION_VALUES` values) are kept for :class:`CalibrateOutputRangesPass`.

    Args:
        periphery: the periphery; input ranges are set only if ``input_range`` is ``static``.
        feeds: a list of feed dicts (model input name -> array), or one dict of batched arrays.
    """

    def __init__(self, periphery: Periphery, feeds: list[dict[str, np.ndarray]] | dict[str, np.ndarray] | None) -> None:
        super().__init__()
        self.periphery = periphery
        self.feeds = [feeds] if isinstance(feeds, dict) else feeds

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        static = self.periphery.input_range is InputRange.STATIC
        calibrated = self.periphery.output_range is OutputRange.CALIBRATED
        layers = [
            plan
            for _, plan in analog_layers(model)
            if (static and plan.in_range is None) or (calibrated and not _has_output_data(plan))
        ]
        if not layers or not (static or calibrated):
            return ir.passes.PassResult(model, modified=False)
        if self.feeds is None:
            if calibrated:
                raise ConfigError(
                    "Periphery output_range=calibrated needs calibration data (--calibration), or set "
                    "output_range=fixed."
                )
            for plan in layers:  # no data: a documented default of full scale 1.0
                plan.write(InputRanges(np.ones((plan.n_tiles, 1, 1), np.float32)))
            return ir.passes.PassResult(model, modified=True)
        uses: dict[int, list[ir.Value]] = {id(plan): [plan.input] for plan in layers}
        for node, _ in walk_nodes(model.graph):  # the inputs of every op that reads a calibrated layer's tiles
            for plan in node_plans(node):
                if plan.tiles_of is not None and id(plan.tiles_of) in uses:
                    uses[id(plan.tiles_of)].append(plan.input)
        values = {v.name: v for vs in uses.values() for v in vs}
        names = list(values)
        sess, fetch, depths = self._session(model, values)
        rng = np.random.default_rng(0)
        peak = {id(plan): np.zeros(plan.n_tiles) for plan in layers}
        kept: dict[int, list[np.ndarray]] = {id(plan): [] for plan in layers}
        for feed in self.feeds:
            try:
                outs = dict(zip(names, sess.run(fetch, feed), strict=True))
            except Exception as err:  # onnxruntime raises its own exception types
                raise DataError(f"Calibration data could not be run through the model: {err}") from err
            for plan in layers:
                cap = max(1, MAX_CALIBRATION_VALUES // (plan.n_tiles * plan.tile_rows) // len(self.feeds))
                for value in uses[id(plan)]:
                    fetched = np.asarray(outs[value.name], np.float32)
                    if depths[value.name] == FLAT:  # seen through an If inside a Loop/Scan body: flattened
                        if plan.op is not None:
                            raise UnsupportedModelError(
                                f"Layer {plan.name!r} ({plan.source_op}) sits in an If branch inside a Loop or "
                                "Scan body, where its input shapes cannot be observed for calibration; keep it "
                                f"digital (--digital {plan.name}) or compile without --calibration."
                            )
                        fetched = fetched.reshape(-1, plan.k)
                    for a in _iterations(fetched, max(depths[value.name], 0)):
                        # ops that feed the tiles a transform of their input (Conv: patches) say how (LayerOp)
                        x = a if plan.op is None else plan.op.tile_input(a)
                        xt = tile_input(np.asarray(x, np.float32), plan.n_tiles, plan.tile_rows)  # (tiles, M, rows)
                        if xt.shape[1]:
                            peak[id(plan)] = np.maximum(peak[id(plan)], np.abs(xt).max(axis=(1, 2)))
                        if xt.shape[1] > cap:
                            xt = xt[:, np.sort(rng.choice(xt.shape[1], cap, replace=False))]
                        kept[id(plan)].append(xt)
        q = self.periphery.input_range_percentile
        for plan in layers:
            if not any(x.shape[1] for x in kept[id(plan)]):  # e.g. an If branch the calibration data never takes
                logger.warning("layer %r saw no calibration data; full-scale defaults kept", plan.name)
                plan.write(NoCalibrationData())
                if static and plan.in_range is None:
                    plan.write(InputRanges(np.ones((plan.n_tiles, 1, 1), np.float32)))
                if calibrated and not _has_output_data(plan):  # no tile inputs: gain 1 (the fixed ADC bound)
                    plan.write(CalibrationSample(np.zeros((plan.n_tiles, 0, plan.tile_rows), np.float32)))
                continue
            xt = np.concatenate(kept[id(plan)], axis=1)
            if static and plan.in_range is None:
                r = peak[id(plan)] if q >= 100 else np.percentile(np.abs(xt).reshape(plan.n_tiles, -1), q, axis=1)
                plan.write(InputRanges(np.where(r > 0, r, 1.0).astype(np.float32).reshape(plan.n_tiles, 1, 1)))
            if calibrated and not _has_output_data(plan):
                plan.write(CalibrationSample(xt))
        return ir.passes.PassResult(model, modified=True)

    @staticmethod
    def _session(model: ir.Model, values: dict[str, ir.Value]) -> tuple[ort.InferenceSession, list[str], dict]:
        """A session fetching ``values`` (also those inside If branches and Loop/Scan bodies, exposed as
        main-graph outputs: :func:`~anacompile.graph_walk.expose_values`), the names to fetch, and per value
        the number of stacked Loop/Scan iteration axes of what is fetched."""
        proto = ir.serde.serialize_model(model)
        main = {v.name for v in model.graph.inputs} | {n for n in model.graph.initializers}
        main |= {out.name for node in model.graph for out in node.outputs}
        inner = {name: f"{name}.calibration" for name in values if name not in main}
        dtypes = {name: int(values[name].dtype) for name in inner if values[name].dtype is not None}
        depths = expose_values(proto.graph, inner, dtypes)
        fetch = [inner.get(name, name) for name in values]
        missing = [name for name in inner if inner[name] not in depths]
        if missing:
            raise UnsupportedModelError(
                f"Calibration cannot observe the input(s) {missing} of analog layers inside a subgraph of a "
                "node that is not If, Loop or Scan; keep those layers digital (--digital)."
            )
        known = {o.name for o in proto.graph.output}
        for name in fetch:
            if name not in known:
                proto.graph.output.append(_value_info(name))
                known.add(name)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        folders = {
            str(v.const_value.base_dir)
            for g in model.graphs()
            for v in g.initializers.values()
            if isinstance(v.const_value, ir.ExternalTensor)
        }
        if len(folders) == 1:  # a source with external data: ORT reads it from there, not from memory
            so.add_session_config_entry("session.model_external_initializers_file_folder_path", folders.pop())
        try:
            sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            raise DataError(f"Calibration data could not be run through the model: {err}") from err
        return sess, fetch, {name: depths.get(inner.get(name, ""), 0) for name in values}


def _iterations(array: np.ndarray, depth: int) -> list[np.ndarray]:
    """A fetched value as the list of the values it had: one per iteration of its ``depth`` enclosing
    Loop/Scan bodies (stacked on the leading axes), none for an If branch that did not run (shape (0,))."""
    if depth == 0:
        return [array] if array.ndim > 1 or array.size else []
    if array.ndim == 1 and array.size == 0:
        return []
    return list(array.reshape(-1, *array.shape[depth:]))


def _has_output_data(plan) -> bool:
    """Whether the layer's output gains, or the tile inputs to calibrate them on, are recorded already."""
    return plan.get(OutputGains) is not None or plan.get(CalibrationSample) is not None


class CalibrateOutputRangesPass(ir.passes.InPlacePass):
    """Per tile, the output gain g before the ADC that maps the tile's output distribution onto the ADC range.

    As a chip is calibrated: the tile's outputs on the calibration data are computed in ADC codes from the
    DAC codes the periphery would apply (static range, or abs-max per vector) and the layer's ideal
    normalised weights (decoded from its programming plan, so the strategy's own representation counts),
    z = q (d/D) w. With P the ``output_range_percentile`` of |z| over the tile's outputs (onnxruntime's
    percentile calibration convention: symmetric, on |x|), g = code_bound / P, so P meets the ADC bound
    (1 for a tile whose outputs are all zero). Runs after the mapping, before the chip is programmed.

    Args:
        device: device model (conductance range of the mapping).
        mapping: the model's programming strategy (a layer's own strategy takes precedence).
        periphery: the periphery; nothing is done unless ``output_range`` is ``calibrated``.
    """

    def __init__(self, device, mapping, periphery: Periphery) -> None:
        super().__init__()
        self.device, self.mapping, self.periphery = device, mapping, periphery

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        if self.periphery.output_range is not OutputRange.CALIBRATED:
            return ir.passes.PassResult(model, modified=False)
        c = tile_constants(self.periphery)
        p = self.periphery
        modified = False
        for _, plan in analog_layers(model):
            sample = plan.get(CalibrationSample)
            if sample is None or plan.get(OutputGains) is not None:
                plan.take(CalibrationSample)
                continue
            xt = sample.tile_inputs
            mapping = plan_mapping(plan, self.mapping)
            g_target = plan.g_target.numpy() if hasattr(plan.g_target, "numpy") else np.asarray(plan.g_target)
            w = decode_pairs(
                g_target, mapping.significance, mapping.gain_us(self.device.g_min_us, self.device.g_max_us)
            )
            w = np.asarray(w, np.float32).reshape(plan.n_tiles, plan.tile_rows, plan.n_out) * np.float32(c.code_gain)
            gains = np.ones(plan.n_tiles)
            for t in range(plan.n_tiles):
                x = xt[t]
                if p.dac_bits is None:
                    q = x
                else:
                    if p.input_range is InputRange.STATIC:
                        scale = 1.0 / (float(plan.in_range.reshape(-1)[t]) * c.dac_step)
                    else:
                        scale = 1.0 / (np.maximum(np.abs(x).max(axis=1, keepdims=True), ABSMAX_EPS) * c.dac_step)
                    q = np.round(np.clip(x * np.float32(scale), -c.dac_levels, c.dac_levels))
                z = np.abs(q @ w[t])
                if z.size:
                    top = float(np.percentile(z, p.output_range_percentile))
                    if top > 0:
                        gains[t] = c.code_bound / top
            plan.write(OutputGains(gains.astype(np.float32)))
            plan.take(CalibrationSample)  # used: the tile inputs are not kept
            modified = True
        return ir.passes.PassResult(model, modified=modified)


def _value_info(name: str):
    import onnx

    vi = onnx.ValueInfoProto()
    vi.name = name
    return vi
