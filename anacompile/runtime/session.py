"""``AnalogSession``: program chip k of a compiled model and run it in onnxruntime at any time t.

Two stages (docs/architecture.md):

* once per (chip, t), in numpy with the device kernels: drift and 1/f read noise of every device, pair
  differences, drift-compensation factors -> the chip's effective weights ``L.w_eff`` and ``L.alpha``;
* per run, inside onnxruntime: the ``AnalogMatMul`` periphery (DAC, tiles, noise, IR drop, ADC, scales).

The session strips the file's in-graph chip stage (``AnalogChipWeights`` nodes) and feeds the first stage's
results as inputs, together with a noise bank drawn from the chip's seed. The stripped stage computes the
same formulas (tested statistically), so results do not depend on which path ran.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from numpy.typing import NDArray

from anacompile import devices, ops
from anacompile.compiler import CompileReport, read_report
from anacompile.crossbar.periphery import DriftCompensation, Periphery
from anacompile.errors import ConfigError, DataError, UnsupportedModelError
from anacompile.mapping.registry import mapping_from_dict
from anacompile.model_io import load_proto
from anacompile.programming.chip import program_chip
from anacompile.runtime.chip_state import (
    chip_rng,
    compensation_factors,
    compensation_reference,
    noise_bank,
    read_weights,
)
from anacompile.crossbar.reference import tile_constants
from anacompile.runtime.functions import NoiseSource, build_analog_matmul_function

__all__ = ["AnalogSession", "ChipLayer", "digital_reference_model"]

logger = logging.getLogger(__name__)
MIN_BANK_FACTOR = 4  # the bank is at least 4x one MVM's noise: offsets vary, and nothing repeats within an MVM


@dataclass
class ChipLayer:
    """One analog layer of the loaded model: its plan and the current chip's state."""

    name: str
    index: int
    g_target: NDArray[np.float32]
    out_scale: NDArray[np.float32]
    g_prog: NDArray[np.float64] | None = None
    nu: NDArray[np.float64] | None = None
    gdc_ref: NDArray[np.float32] | None = None

    @property
    def n_out(self) -> int:
        """Columns N."""
        return int(self.g_target.shape[-1])

    @property
    def n_tiles(self) -> int:
        """Row tiles (a one-tile layer is stored without the tile axis)."""
        return int(self.g_target.shape[2]) if self.g_target.ndim == 5 else 1

    @property
    def state_shapes(self) -> tuple[list[int], list[int]]:
        """Shapes of the fed effective weights and output scales."""
        rows_n = list(self.g_target.shape[-2:])
        lead = [self.n_tiles] if self.g_target.ndim == 5 else []
        return lead + rows_n, lead + [1, rows_n[1]]


class AnalogSession:
    """A compiled model programmed onto chip ``chip_seed``, runnable at any time since programming.

    Args:
        path: compiled model (``anacompile compile`` output).
        chip_seed: which chip of the experiment (independent programming for every value).
        seed: experiment seed (defaults to the one stored at compile time).
        t_inference: seconds since programming (change with :meth:`set_time`).
        compensation: override the compiled drift compensation (``none``, ``global``, ``column``).
        programming: override the chip programming method (``gaussian``, or others where installed).
        intra_op_threads: onnxruntime threads (default: onnxruntime's choice).
        providers: onnxruntime execution providers.
    """

    def __init__(self, path: str | os.PathLike[str], chip_seed: int = 0, *, seed: int | None = None,
                 t_inference: float = 0.0, compensation: str | DriftCompensation | None = None,
                 programming: str | None = None, intra_op_threads: int | None = None,
                 providers: list[str] | None = None) -> None:
        self.path = str(path)
        proto = load_proto(path, load_external_data=True)
        self.report: CompileReport = read_report(proto)
        _check_domain_version(proto)
        self.device = devices.PCMDevice.from_dict(self.report.device)
        self.periphery = Periphery.from_dict(self.report.periphery)
        self.mapping = mapping_from_dict(self.report.strategy)
        self.gain_us = self.mapping.gain_us(self.device.g_min_us, self.device.g_max_us)
        self.compensation = DriftCompensation(compensation) if compensation is not None else \
            self.periphery.drift_compensation
        self.programming = programming or self.report.programming
        self.seed = self.report.seed if seed is None else int(seed)
        self.layers = _extract_layers(proto)
        self._digital_proto = digital_reference_model(proto)
        stripped = _strip_chip_stage(proto, self.layers, self.periphery)
        self._bank_size = self.periphery.noise_bank_size if self.periphery.has_mvm_noise else 0
        self._code_gain = np.float32(tile_constants(self.periphery)["code_gain"])
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if intra_op_threads:
            so.intra_op_num_threads = intra_op_threads
        try:
            self._session = ort.InferenceSession(stripped.SerializeToString(), so,
                                                 providers=providers or ["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime's own exception types
            raise UnsupportedModelError(f"{path}: onnxruntime cannot load the compiled model: {err}") from err
        self.input_names = [i.name for i in self._session.get_inputs() if i.name not in self._state_names()]
        self.output_names = [o.name for o in self._session.get_outputs()]
        self._state: dict[str, np.ndarray] = {}
        self.chip_seed = -1
        self.t_inference = float("nan")
        self.program(chip_seed)
        self.set_time(t_inference)

    # -- the two stages --------------------------------------------------------------------------
    def program(self, chip_seed: int) -> None:
        """Program chip ``chip_seed``: programmed conductances, drift exponents, GDC reference, noise bank."""
        for layer in self.layers:
            layer.g_prog, layer.nu = program_chip(
                layer.g_target.astype(np.float64), self.mapping.significance, self.gain_us, self.device,
                chip_rng(self.seed, chip_seed, "program", layer.index), method=self.programming,
            )
            w0 = read_weights(layer.g_prog, layer.nu, 0.0, self.device, self.mapping.significance, self.gain_us,
                              chip_rng(self.seed, chip_seed, "calibrate", layer.index))
            layer.gdc_ref = compensation_reference(w0, self.compensation)
        if self._bank_size:
            self._state[ops.NOISE_BANK] = noise_bank(self._bank_size, chip_rng(self.seed, chip_seed, "bank"))
            self._offsets = chip_rng(self.seed, chip_seed, "bank", layer=1)
        self.chip_seed = int(chip_seed)
        if not np.isnan(self.t_inference):
            self.set_time(self.t_inference)

    def set_time(self, t_inference: float) -> None:
        """Compute the chip's effective weights and compensation factors at ``t_inference`` seconds."""
        t = float(t_inference)
        if not np.isfinite(t) or t < 0:
            raise ConfigError(f"t_inference={t_inference!r}: must be a finite number of seconds >= 0.")
        for layer in self.layers:
            w = read_weights(layer.g_prog, layer.nu, t, self.device, self.mapping.significance, self.gain_us,
                             chip_rng(self.seed, self.chip_seed, "read", layer.index, t))
            alpha = compensation_factors(w, layer.gdc_ref, self.compensation)
            self._state[f"{layer.name}.{ops.W_EFF}"] = w * self._code_gain
            self._state[f"{layer.name}.{ops.SCALE}"] = layer.out_scale * alpha
        self.t_inference = t

    def run(self, feeds: dict[str, np.ndarray], output_names: list[str] | None = None) -> list[np.ndarray]:
        """Run the chip at the current time on ``feeds`` (model input name -> array)."""
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise DataError(f"Missing model input(s) {missing}; the model takes {self.input_names}.")
        offsets = self._noise_offsets(feeds)
        try:
            return self._session.run(output_names, {**feeds, **self._state, **offsets})
        except Exception as err:  # onnxruntime's own exception types (shape or type errors)
            raise DataError(f"{self.path}: onnxruntime could not run these inputs: {err}") from err

    def run_digital(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the FP32 model the compiled file was made from (weights decoded from the plan)."""
        if not hasattr(self, "_digital_session"):
            so = ort.SessionOptions()
            so.log_severity_level = 3
            self._digital_session = ort.InferenceSession(self._digital_proto.SerializeToString(), so,
                                                         providers=["CPUExecutionProvider"])
        return self._digital_session.run(None, feeds)

    # -- helpers ---------------------------------------------------------------------------------
    def _state_names(self) -> set[str]:
        names = {ops.NOISE_BANK}
        for layer in self.layers:
            names |= {f"{layer.name}.{suffix}" for suffix in (ops.W_EFF, ops.SCALE, ops.NOISE_START, ops.NOISE_END)}
        return names

    def _noise_offsets(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per layer, the slice of the noise bank this run's MVM noise is read from.

        The bank grows (from the chip's seed) to at least twice one MVM's noise, so a slice never wraps and
        offsets vary; offsets come from the chip's own stream, so a chip's runs repeat exactly.
        """
        if not self._bank_size:
            return {}
        x = feeds[self.input_names[0]] if self.input_names else next(iter(feeds.values()))
        batch = max(1, int(np.prod(x.shape[:-1])) if x.ndim > 1 else 1)
        sizes = [layer.n_tiles * layer.n_out * batch for layer in self.layers]
        if max(sizes) * MIN_BANK_FACTOR > self._bank_size:
            self._bank_size = int(2 ** np.ceil(np.log2(max(sizes) * MIN_BANK_FACTOR)))
            self._state[ops.NOISE_BANK] = noise_bank(self._bank_size, chip_rng(self.seed, self.chip_seed, "bank"))
        starts = self._offsets.integers(0, self._bank_size - np.asarray(sizes) + 1)
        out = {}
        for layer, start, size in zip(self.layers, starts, sizes, strict=True):
            out[f"{layer.name}.{ops.NOISE_START}"] = np.array([start], np.int64)
            out[f"{layer.name}.{ops.NOISE_END}"] = np.array([start + size], np.int64)
        return out


def _check_domain_version(proto: onnx.ModelProto) -> None:
    for o in proto.opset_import:
        if o.domain == ops.DOMAIN and o.version > ops.DOMAIN_VERSION:
            raise UnsupportedModelError(
                f"The model uses {ops.DOMAIN} version {o.version}; this anacompile supports up to "
                f"{ops.DOMAIN_VERSION}. Upgrade anacompile."
            )


def _extract_layers(proto: onnx.ModelProto) -> list[ChipLayer]:
    inits = {t.name: t for t in proto.graph.initializer}

    def arr(name: str) -> np.ndarray:
        return onnx.numpy_helper.to_array(inits[name])

    layers = []
    for node in proto.graph.node:
        if node.domain == ops.DOMAIN and node.op_type == ops.ANALOG_MATMUL:
            name = node.name
            layers.append(ChipLayer(
                name=name, index=len(layers), g_target=arr(f"{name}.{ops.G_TARGET}"),
                out_scale=arr(f"{name}.{ops.OUT_SCALE}"),
            ))
    if not layers:
        raise UnsupportedModelError("The model has no AnalogMatMul node: compile it with `anacompile compile` first.")
    return layers


def _strip_chip_stage(proto: onnx.ModelProto, layers: list[ChipLayer], periphery: Periphery) -> onnx.ModelProto:
    """Copy of the model for the session: the chip stage's outputs become inputs fed per (chip, t), and
    AnalogMatMul reads its noise from a fed bank (``NoiseSource.BANK``) instead of RandomNormalLike."""
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    g = m.graph
    keep = [n for n in g.node if not (n.domain == ops.DOMAIN and n.op_type == ops.CHIP_WEIGHTS)]
    del g.node[:]
    g.node.extend(keep)
    f = onnx.TensorProto.FLOAT
    state_inputs = []
    noisy = periphery.has_mvm_noise
    for node in g.node:
        if node.domain == ops.DOMAIN and node.op_type == ops.ANALOG_MATMUL and noisy:
            del node.input[6:]
            node.input.extend([ops.NOISE_BANK, f"{node.name}.{ops.NOISE_START}", f"{node.name}.{ops.NOISE_END}"])
    for layer in layers:
        w_shape, scale_shape = layer.state_shapes
        state_inputs.append(onnx.helper.make_tensor_value_info(f"{layer.name}.{ops.W_EFF}", f, w_shape))
        state_inputs.append(onnx.helper.make_tensor_value_info(f"{layer.name}.{ops.SCALE}", f, scale_shape))
        if noisy:
            for suffix in (ops.NOISE_START, ops.NOISE_END):
                state_inputs.append(onnx.helper.make_tensor_value_info(
                    f"{layer.name}.{suffix}", onnx.TensorProto.INT64, [1]))
    if noisy:
        state_inputs.append(onnx.helper.make_tensor_value_info(ops.NOISE_BANK, f, ["bank"]))
    used = {i for n in g.node for i in n.input}
    inits = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(inits)
    inputs = [i for i in g.input if i.name in used]
    del g.input[:]
    g.input.extend(inputs + state_inputs)
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 17)
    funcs = [fn for fn in m.functions if fn.name not in (ops.CHIP_WEIGHTS, ops.ANALOG_MATMUL)]
    funcs.append(build_analog_matmul_function(periphery, opset, NoiseSource.BANK))
    funcs.append(build_analog_matmul_function(periphery, opset, NoiseSource.BANK, tiled=True))
    m.ir_version = max(m.ir_version, 10)
    del m.functions[:]
    m.functions.extend(funcs)
    return m


def digital_reference_model(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The FP32 model of a compiled file: every AnalogMatMul back to MatMul + Add with the decoded weight.

    The weight is decoded from the stored programming plan, W = decode(g_target) * gamma, so it equals the
    source weight up to float32 rounding (single pair; strategies that clip represent what they can).
    """
    from anacompile.mapping import decode_pairs

    report = read_report(proto)
    dev = devices.PCMDevice.from_dict(report.device)
    mapping = mapping_from_dict(report.strategy)
    gain = mapping.gain_us(dev.g_min_us, dev.g_max_us)
    shapes = {layer.name: layer.weight_shape for layer in report.layers if layer.analog}
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    new_nodes, new_inits = [], []
    for node in g.node:
        if node.domain == ops.DOMAIN and node.op_type == ops.CHIP_WEIGHTS:
            continue
        if node.domain == ops.DOMAIN and node.op_type == ops.ANALOG_MATMUL:
            name = node.name
            g_t = onnx.numpy_helper.to_array(inits[f"{name}.{ops.G_TARGET}"])
            gamma = onnx.numpy_helper.to_array(inits[f"{name}.{ops.COL_SCALE}"])
            w = (decode_pairs(g_t, mapping.significance, gain) * gamma).reshape(-1, g_t.shape[-1])
            w = w[: shapes[name][0]]  # drop the zero rows that pad K to whole tiles
            new_inits.append(onnx.numpy_helper.from_array(w.astype(np.float32), f"{name}.weight"))
            mm_out = f"{name}.digital_mm"
            new_nodes.append(onnx.helper.make_node("MatMul", [node.input[0], f"{name}.weight"], [mm_out]))
            new_nodes.append(onnx.helper.make_node("Add", [mm_out, node.input[4]], [node.output[0]]))
            continue
        new_nodes.append(node)
    del g.node[:]
    g.node.extend(new_nodes)
    g.initializer.extend(new_inits)
    used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    inputs = [i for i in g.input if i.name in used or i.name not in inits]
    del g.input[:]
    g.input.extend(inputs)
    del m.functions[:]
    del g.value_info[:]
    return m
