"""``AnalogSession``: program chip k of a compiled model and run it in onnxruntime at any time t.

Two stages (docs/architecture.md):

* once per (chip, t), in numpy with the device kernels: drift and 1/f read noise of every device, pair
  differences, drift-compensation factors -> the chip's effective weights ``L.w_eff`` and ``L.alpha``;
* per run, inside onnxruntime: the ``AnalogMatMul`` periphery (DAC, tiles, noise, IR drop, ADC, scales).

The session strips the file's in-graph chip stage (``AnalogChipWeights`` nodes) and feeds the first stage's
results as inputs, together with a noise bank drawn from the chip's seed: the onnx-ir passes of
:mod:`anacompile.runtime.passes` make the model it runs. The stripped stage computes the
same formulas (tested statistically), so results do not depend on which path ran.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from numpy.typing import NDArray

from anacompile import contract, devices
from anacompile.contract import CompileReport, check_domain_version, read_report
from anacompile.crossbar.compensation import compensation_factors
from anacompile.crossbar.periphery import Compensation, DriftCompensation, Periphery, get_periphery
from anacompile.crossbar.reference import tile_constants
from anacompile.errors import ConfigError, DataError, UnsupportedModelError
from anacompile.graph_walk import replace_nodes, walk_graphs
from anacompile.limits import check_index
from anacompile.mapping import decode_pairs
from anacompile.mapping.registry import get_mapping, mapping_from_dict
from anacompile.model_io import load_proto
from anacompile.passes.deploy_form import DEPLOY, META_TARGET
from anacompile.programming.chip_state import (
    chip_rng,
    experiment_noise_bank,
    program_layer,
    read_noise_q,
    read_weights,
)
from anacompile.runtime.batchnorm import expose_batchnorm_statistics
from anacompile.runtime.digital_reference import (
    all_nodes,
    digital_reference_model,
    plan_weight,
    weights_layer,
    without_patches,
)
from anacompile.runtime.native_conv import native_convs
from anacompile.runtime.nchwc import nchwc_enabled
from anacompile.runtime.ort_session import ort_session, run_checked
from anacompile.runtime.passes import session_model
from anacompile.runtime.providers import check_session_providers, resolve_providers
from anacompile.runtime.samples_per_run import MIN_PART_SAMPLES, join_parts, part_bounds, part_samples, parts
from anacompile.runtime.unroll_loops import MAX_UNROLL_STEPS, LoopUnroller

__all__ = ["AnalogSession", "ChipLayer", "digital_reference_model"]

logger = logging.getLogger(__name__)
MIN_BANK_FACTOR = 4  # the bank is at least 4x one MVM's noise: offsets vary, and nothing repeats within an MVM
MAX_BANKS = 4  # noise banks kept per session (one per size: input shapes that need a larger bank)
MAX_SPLIT_CHECKS = 64  # input shapes whose splittability a session remembers


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
    col_scale: NDArray[np.float32] | None = None
    in_range: NDArray[np.float32] | None = None
    in_scale: NDArray[np.float32] | None = None
    input: str = ""  # name of the AnalogMatMul's input X (its vectors set the per-run noise size)
    fed: bool = False  # top-level layer fed its noise tensor directly (NoiseSource.FED), else bank slices
    mapping: Any = None  # the layer's programming strategy (ConductanceMapping)
    gain_us: float = 0.0  # its conductance gain
    digital: bool = False  # run digitally (switchable sessions, :meth:`AnalogSession.set_digital`)
    variants: dict = field(default_factory=dict)  # other strategies' plans and chip states (set_layer_strategy)
    out_gain: NDArray[np.float32] | None = None  # output gains before the ADC (output_range: calibrated)
    weights: str = ""  # the layer whose programmed tiles it reads: its own name, or a shared weight's owner
    q_s: tuple | None = None  # (g_prog, its read-noise amplitude Q_s): computed once per programmed state

    @property
    def owns_tiles(self) -> bool:
        """False for a later use of a shared weight: it reads the owner's chip state, programmed once."""
        return self.weights == self.name

    @property
    def n_out(self) -> int:
        """Columns N."""
        return int(self.g_target.shape[-1])

    @property
    def spec(self) -> contract.LayerSpec:
        """The layer's geometry, from its programming plan (:class:`~anacompile.contract.LayerSpec`)."""
        return contract.LayerSpec.from_plan_shape(self.name, self.index, self.g_target.shape)

    @property
    def n_tiles(self) -> int:
        """Row tiles (a one-tile layer is stored without the tile axis)."""
        return self.spec.n_tiles

    @property
    def state_shapes(self) -> tuple[list[int], list[int]]:
        """Shapes of the fed effective weights and output scales."""
        spec = self.spec
        return list(spec.weight_shape), list(spec.scale_shape)


class AnalogSession:
    """A compiled model programmed onto chip ``chip_seed``, runnable at any time since programming.

    Args:
        path: compiled model (``anacompile compile`` output).
        chip_seed: which chip of the experiment (independent programming for every value); ``None``
            programs no chip yet (call :meth:`program` before :meth:`run`; the digital model runs anyway).
        seed: experiment seed (defaults to the one stored at compile time).
        t_inference: seconds since programming (change with :meth:`set_time`).
        compensation: override the compiled drift compensation (``none``, ``global``, ``column``).
        programming: override the chip programming method (``gaussian``, or others where installed).
        intra_op_threads: onnxruntime threads of a run (default: onnxruntime's choice); the concurrent parts
            of a split run have one each (``parallel``).
        providers: onnxruntime execution providers, short or full names (``["cuda"]``, ``"cuda"``; the CPU
            provider follows them; :mod:`anacompile.runtime.providers`). One that is not available, or does
            not start, is a one-line ConfigError naming the available ones; :attr:`providers` says what runs.
        periphery_overrides: change periphery keys of the compiled model for this session (``{"adc_bits": 6}``
            or ``["adc_bits=6"]``), for sensitivity studies; keys that change the tiling need a recompile.
        periphery: the periphery in force, already resolved (instead of ``periphery_overrides``: a Monte Carlo
            job parses the experiment once and hands every worker the same object).
        strategy: re-map the stored weights with another programming strategy (``single``, ``dual``,
            ``dual:F=2.5``, a strategy .json) to compare strategies on one compiled model.
        extra_outputs: names of intermediate tensors to make fetchable with ``run(feeds, [name])`` (for
            studies of one layer's analog output, e.g. an AnalogMatMul's output).
        switchable: build every layer with a digital twin (MatMul + bias with the FP32 weight decoded from
            the plan) behind a fed switch (an ``If``: only the chosen path runs), so :meth:`set_digital` runs
            any set of layers digitally and
            :meth:`set_layer_strategy` re-maps single layers, all on the same programmed chip and one
            onnxruntime session (sensitivity and placement studies, :mod:`anacompile.placement`). A switched
            layer's output is exactly its analog or its digital output.
        unroll_steps: recurrent Loops whose trip count for the inputs at hand is at most this run unrolled
            (a session model per input shapes, built on first use; same outputs bit for bit, faster:
            :mod:`anacompile.runtime.unroll_loops`); 0 always runs the Loops.
        parallel: parts of one :meth:`run` that go concurrently, one onnxruntime thread each (default: the
            cores this process may use when ``intra_op_threads`` is not given, else 1; a run that is not
            split keeps ``intra_op_threads``). :meth:`run` cuts a
            large batch into cache-sized parts along axis 0 (:meth:`split`,
            :mod:`anacompile.runtime.samples_per_run`), each a run of its own (its own noise offsets, drawn in
            order), and joins their outputs; the parts are the same for any ``parallel``, so outputs are too.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        chip_seed: int | None = 0,
        *,
        seed: int | None = None,
        t_inference: float = 0.0,
        compensation: str | DriftCompensation | None = None,
        programming: str | None = None,
        intra_op_threads: int | None = None,
        providers: list[str] | str | None = None,
        periphery_overrides: dict | list[str] | None = None,
        periphery: Periphery | None = None,
        strategy: str | None = None,
        extra_outputs: list[str] | None = None,
        switchable: bool = False,
        unroll_steps: int = MAX_UNROLL_STEPS,
        parallel: int | None = None,
    ) -> None:
        self.path = str(path)
        proto = load_proto(path, load_external_data=True)
        check_domain_version(
            {o.domain: o.version for o in proto.opset_import}, {p.key: p.value for p in proto.metadata_props}
        )
        if any(p.key == META_TARGET and p.value == DEPLOY for p in proto.metadata_props):
            raise UnsupportedModelError(
                f"{path} is a deployment form (compile --target deploy), which has no programming plans to "
                "simulate chips from; evaluate the simulation form (compile without --target)."
            )
        self.report: CompileReport = read_report(proto)
        self.device = devices.from_dict(self.report.device)
        self.periphery = _override_periphery(Periphery.from_dict(self.report.periphery), periphery_overrides, periphery)
        self.mapping = mapping_from_dict(self.report.strategy)
        self.gain_us = self.mapping.gain_us(self.device.g_min_us, self.device.g_max_us)
        self.compensation = (
            Compensation.parse(compensation).drift if compensation is not None else self.periphery.drift_compensation
        )
        self.programming = programming or self.report.programming
        self.seed = self.report.seed if seed is None else check_index(seed, "seed")
        self.layers = _extract_layers(proto)
        own = {layer.name: layer.strategy for layer in self.report.layers if layer.analog and layer.strategy}
        for layer in self.layers:
            layer.mapping = mapping_from_dict(own[layer.weights]) if layer.weights in own else self.mapping
            layer.gain_us = layer.mapping.gain_us(self.device.g_min_us, self.device.g_max_us)
        if strategy is not None:
            self._remap(strategy)
        stripped = session_model(proto, self.layers, self.periphery)  # the session's passes (runtime/passes)
        self._digital_proto = digital_reference_model(proto)
        self.switchable = bool(switchable)
        keep = set(extra_outputs or [])  # patch-free convs unless their tensors are asked for
        self.providers = resolve_providers(providers)
        # onnxruntime's blocked Convs (CPU; runtime/nchwc.py), fed filters derived per (chip, t): _derive_nchwc
        self._nchwc: dict = {} if nchwc_enabled(self.providers) else None
        self.native_convs = (
            [] if self.switchable else native_convs(stripped, self.layers, self.periphery, keep, self._nchwc)
        )
        if self.switchable:
            _add_digital_switches(stripped, self.layers, self._digital_proto)
        self.batchnorms = expose_batchnorm_statistics(stripped)
        for name in extra_outputs or []:
            stripped.graph.output.append(onnx.ValueInfoProto(name=name))
        self._bn_state: dict[str, np.ndarray] = {}
        self._size_cache: dict[tuple, list[int]] = {}
        self._noise_names = [
            (
                f"{layer.name}.{contract.NOISE}" if layer.fed else f"{layer.name}.{contract.NOISE_START}",
                f"{layer.name}.{contract.NOISE_END}",
            )
            for layer in self.layers
        ]
        self._plan: _NoisePlan | None = None  # the noise offsets' per-shape work (_noise_offsets)
        self._bank_size = self.periphery.noise_bank_size if self.periphery.has_mvm_noise else 0
        self._banks: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # size -> (bank, fed copy): drawn once
        self._offsets: np.random.Generator | None = None
        self._code_gain = np.float32(tile_constants(self.periphery).code_gain)
        self._threads = intra_op_threads
        self.parallel = (1 if intra_op_threads else usable_cores()) if parallel is None else int(parallel)
        if self.parallel < 1:
            raise ConfigError(f"parallel={parallel!r}: give a number of concurrent runs >= 1.")
        self._splittable: dict[tuple, list[int] | None] = {}  # (input shapes, outputs) -> the parts' bounds
        self._part_session: ort.InferenceSession | None = None  # one intra-op thread: concurrent parts
        self._providers = self.providers  # the chip batch's sessions run on them too
        self._session_proto = stripped  # the model as this session runs it (ChipBatch adds a pair axis to it)
        self._chip_batch = None
        self._session = ort_session(stripped, self._session_options(), self._providers, label=f"{path}")
        check_session_providers(self._session, self.providers, label=f"{path}")
        self._unroller = LoopUnroller(self, check_index(unroll_steps, "unroll_steps"))
        self.input_names = [i.name for i in self._session.get_inputs() if i.name not in self._state_names()]
        hidden = {bn.input for bn in self.batchnorms} | set(extra_outputs or [])
        self.output_names = [o.name for o in self._session.get_outputs() if o.name not in hidden]
        self._state: dict[str, np.ndarray] = {}
        if self.switchable:
            self.set_digital([])
        self.chip_seed = -1
        self.t_inference = float("nan")
        if chip_seed is not None:
            self.program(chip_seed)
            self.set_time(t_inference)

    # -- the two stages --------------------------------------------------------------------------
    def program(self, chip_seed: int) -> None:
        """Program chip ``chip_seed``: programmed conductances, drift exponents, GDC reference, noise bank."""
        chip_seed = check_index(chip_seed, "chip")
        owners = {layer.name: layer for layer in self.layers if layer.owns_tiles}
        for layer in owners.values():
            self._program_layer(layer, chip_seed)
        for layer in self.layers:  # uses of a shared weight: the same programmed chip (same noise, same drift)
            if not layer.owns_tiles:
                owner = owners[layer.weights]
                layer.g_prog, layer.nu, layer.gdc_ref = owner.g_prog, owner.nu, owner.gdc_ref
        self.chip_seed = int(chip_seed)
        if self._bank_size:
            self._set_bank()
        if not np.isnan(self.t_inference):
            self.set_time(self.t_inference)

    def set_time(self, t_inference: float) -> None:
        """Compute the chip's effective weights and compensation factors at ``t_inference`` seconds."""
        t = float(t_inference)
        if self.chip_seed < 0:
            raise ConfigError("No chip is programmed: call program(chip_seed) before set_time(t).")
        if not np.isfinite(t) or t < 0:
            raise ConfigError(f"t_inference={t_inference!r}: must be a finite number of seconds >= 0.")
        for layer in self.layers:
            if layer.owns_tiles:  # a use of a shared weight reads its owner's state
                self._read_layer(layer, t)
        self.t_inference = t
        # the runs at (chip, t) draw their noise offsets from a stream of their own: the same whatever ran
        # before, so a (chip, t) pair's outputs do not depend on the order or grouping of pairs (ChipBatch)
        self._offsets = chip_rng(self.seed, self.chip_seed, "bank", layer=1, t_inference_s=t)

    def _program_layer(self, layer: ChipLayer, chip_seed: int) -> None:
        layer.g_prog, layer.nu, layer.gdc_ref = program_layer(
            layer.g_target,
            layer.mapping.significance,
            layer.gain_us,
            self.device,
            self.seed,
            chip_seed,
            layer.index,
            self.compensation,
            self.programming,
        )

    def _read_layer(self, layer: ChipLayer, t: float) -> None:
        # the read noise's amplitude Q_s(g_prog) does not depend on t: once per programmed state, kept with
        # the array it was computed from (a new programming, strategy or shared owner is a new array)
        if layer.q_s is None or layer.q_s[0] is not layer.g_prog:
            layer.q_s = (layer.g_prog, read_noise_q(layer.g_prog, self.device))
        w = read_weights(
            layer.g_prog,
            layer.nu,
            t,
            self.device,
            layer.mapping.significance,
            layer.gain_us,
            chip_rng(self.seed, self.chip_seed, "read", layer.index, t),
            q_s=layer.q_s[1],
        )
        alpha = compensation_factors(w, layer.gdc_ref, self.compensation)
        self._state[f"{layer.name}.{contract.W_EFF}"] = w * self._code_gain
        self._state[f"{layer.name}.{contract.SCALE}"] = layer.out_scale * alpha
        self._derive_nchwc(layer.name)

    def _derive_nchwc(self, weights: str) -> None:
        """The fed filters of the NCHWc convolutions that read layer ``weights``' chip state (runtime/nchwc.py)."""
        for conv in (self._nchwc or {}).values():
            if conv.weights == weights:
                w, s = (self._state[contract.layer_tensor(weights, k)] for k in (contract.W_EFF, contract.SCALE))
                self._state.update(conv.feeds(w, s))

    def snapshot(self):
        """The chip as it is now (chip, t): its fed state and noise stream, for :meth:`chip_batch` runs."""
        from anacompile.runtime.chip_batch import ChipState

        if self.chip_seed < 0 or np.isnan(self.t_inference):
            raise ConfigError("No chip is programmed: call program(chip_seed) and set_time(t) before snapshot().")
        return ChipState(self.chip_seed, self.t_inference, dict(self._state), self._offsets)

    def chip_batch(self):
        """This session's :class:`~anacompile.runtime.chip_batch.ChipBatch` (built on first use): runs
        many (chip, t) snapshots in one onnxruntime call, each bit for bit as :meth:`run` runs it."""
        from anacompile.runtime.chip_batch import ChipBatch

        if self._chip_batch is None:
            self._chip_batch = ChipBatch(self)
        return self._chip_batch

    def _session_options(self, single: bool = False) -> ort.SessionOptions:
        """Options of this session's onnxruntime sessions (``single``: one intra-op thread, for the
        concurrent parts of a split run)."""
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if single:
            so.intra_op_num_threads = 1
        elif self._threads:
            so.intra_op_num_threads = self._threads
        return so

    def ort_session_for(self, single: bool = False) -> ort.InferenceSession:
        """The onnxruntime session of a whole run, or (``single``) of one part of a concurrently split run:
        one intra-op thread each, built on first use."""
        if not single:
            return self._session
        if self._part_session is None:
            self._part_session = ort_session(
                self._session_proto, self._session_options(True), self._providers, label=f"{self.path} (parts)"
            )
        return self._part_session

    # -- per-layer placement (switchable sessions) -------------------------------------------------
    def set_digital(self, names) -> None:
        """Run exactly the layers ``names`` digitally (FP32 weight, no periphery), the others on the chip.

        Needs ``switchable=True``. The chip's state of every layer is kept, so switching is free.

        Raises:
            ConfigError: not a switchable session, or an unknown layer name.
        """
        if not self.switchable:
            raise ConfigError("set_digital needs AnalogSession(..., switchable=True).")
        wanted = set(names)
        unknown = wanted - {layer.name for layer in self.layers}
        if unknown:
            raise ConfigError(f"Unknown layer(s) {sorted(unknown)}; layers: {[layer.name for layer in self.layers]}.")
        for layer in self.layers:
            layer.digital = layer.name in wanted
            self._state[f"{layer.name}.{SWITCH}"] = np.array(not layer.digital)

    def set_layer_strategy(self, name: str, strategy) -> None:
        """Re-map one layer with another programming strategy (a spec, a mapping or its ``to_dict()``) and,
        when a chip is programmed, program and read that layer again (same chip, same t).

        The layer's normalised weights are decoded from its current plan and re-encoded, as ``strategy=``
        does for the whole model. Raises ConfigError for an unknown layer name.
        """
        layer = next((la for la in self.layers if la.name == name), None)
        if layer is None:
            raise ConfigError(f"Unknown layer {name!r}; layers: {[la.name for la in self.layers]}.")
        if not layer.owns_tiles:  # a use of a shared weight: the strategy is the stored weight's
            layer = next(la for la in self.layers if la.name == layer.weights)
        self._set_strategy(layer, mapping_from_dict(strategy) if isinstance(strategy, dict) else get_mapping(strategy))
        for use in self.layers:  # every use reads the same programmed chip
            if use.weights == layer.name and use is not layer:
                use.mapping, use.gain_us, use.g_target = layer.mapping, layer.gain_us, layer.g_target
                use.g_prog, use.nu, use.gdc_ref = layer.g_prog, layer.nu, layer.gdc_ref

    def _set_strategy(self, layer: ChipLayer, new) -> None:
        from anacompile.mapping import decode_pairs

        key, current = _strategy_key(new), _strategy_key(layer.mapping)
        if key == current:
            return
        # every strategy a layer had keeps its programmed chip (and its reads at one t): switching back is free
        w_name, s_name = f"{layer.name}.{contract.W_EFF}", f"{layer.name}.{contract.SCALE}"
        layer.variants[current] = {
            "mapping": layer.mapping,
            "gain_us": layer.gain_us,
            "g_target": layer.g_target,
            "g_prog": layer.g_prog,
            "nu": layer.nu,
            "gdc_ref": layer.gdc_ref,
            "chip": self.chip_seed,
            "t": self.t_inference,
            "w": self._state.get(w_name),
            "scale": self._state.get(s_name),
        }
        cached = layer.variants.get(key)
        if cached is None:
            u = decode_pairs(layer.g_target, layer.mapping.significance, layer.gain_us)
            layer.g_target = new.encode(u, self.device.g_min_us, self.device.g_max_us).astype(np.float32)
            layer.mapping, layer.gain_us = new, new.gain_us(self.device.g_min_us, self.device.g_max_us)
            cached = {"chip": -1, "t": float("nan")}
        else:
            layer.mapping, layer.gain_us, layer.g_target = cached["mapping"], cached["gain_us"], cached["g_target"]
            layer.g_prog, layer.nu, layer.gdc_ref = cached["g_prog"], cached["nu"], cached["gdc_ref"]
        if self.chip_seed >= 0:
            if cached["chip"] != self.chip_seed:
                self._program_layer(layer, self.chip_seed)
                cached["t"] = float("nan")
            if not np.isnan(self.t_inference):
                if cached["t"] == self.t_inference and cached["chip"] == self.chip_seed:
                    self._state[w_name], self._state[s_name] = cached["w"], cached["scale"]
                    self._derive_nchwc(layer.name)
                else:
                    self._read_layer(layer, self.t_inference)

    def run(self, feeds: dict[str, np.ndarray], output_names: list[str] | None = None) -> list[np.ndarray]:
        """Run the chip at the current time on ``feeds`` (model input name -> array)."""
        if self.chip_seed < 0 or np.isnan(self.t_inference):
            raise ConfigError("No chip is programmed: call program(chip_seed) and set_time(t) before run().")
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise DataError(f"Missing model input(s) {missing}; the model takes {self.input_names}.")
        names = output_names or self.output_names
        pieces = self.split(feeds, names)
        if pieces is None:
            return self._execute(*self._prepare(feeds), names)
        concurrent = self.parallel > 1
        prepared = [self._prepare(piece, concurrent) for piece in pieces]  # in order: each draws its offsets
        if concurrent:
            outs = list(_pool().map(lambda job: self._execute(*job, names), prepared))
        else:
            outs = [self._execute(*job, names) for job in prepared]
        return join_parts(outs)

    def split(self, feeds: dict[str, np.ndarray], names: list[str]) -> list[dict[str, np.ndarray]] | None:
        """The parts :meth:`run` cuts ``feeds`` into (:mod:`anacompile.runtime.samples_per_run`), or ``None``
        where it runs them whole: a batch of at most one part, outputs other than the model's, or a model that
        mixes samples along axis 0 (checked once per input shapes on the digital model)."""
        if not set(names) <= set(self.output_names):
            return None
        lengths = {int(np.shape(v)[0]) if np.ndim(v) else -1 for v in feeds.values()}
        n = lengths.pop() if len(lengths) == 1 else -1
        if n <= MIN_PART_SAMPLES:
            return None
        key = (tuple((name, np.shape(v), np.asarray(v).dtype.str) for name, v in feeds.items()), tuple(names))
        if key not in self._splittable:
            if len(self._splittable) >= MAX_SPLIT_CHECKS:
                self._splittable.clear()
            self._splittable[key] = self._part_bounds(feeds, n, names)
        bounds = self._splittable[key]
        return None if bounds is None else parts(feeds, bounds)

    def _part_bounds(self, feeds: dict[str, np.ndarray], n: int, names: list[str]) -> list[int] | None:
        # per-sample sizes from the first samples (the shape probe runs the patch path: slow on a whole batch)
        m = min(n, MIN_PART_SAMPLES)
        shapes = zip(self.layers, self._noise_shapes({name: v[:m] for name, v in feeds.items()}), strict=True)
        sizes = [(layer, int(np.prod(shape))) for layer, shape in shapes]
        outputs = max((size for layer, size in sizes if layer.fed), default=0)  # top-level layers bound the cache
        macs = sum(size // self.periphery.bm_passes * layer.spec.weight_shape[-2] for layer, size in sizes)
        part = part_samples(outputs // m, macs // m, self.periphery)
        if n <= part:
            return None
        bounds = part_bounds(n, part)
        first_two = {name: v[: bounds[2]] for name, v in feeds.items()}
        return bounds if self._parts_join(first_two, parts(feeds, bounds[:3]), names) else None

    def _parts_join(self, feeds: dict[str, np.ndarray], parts: list[dict[str, np.ndarray]], names: list[str]) -> bool:
        """Whether the digital model's outputs ``names`` on ``feeds`` are its outputs on ``parts`` (which make
        up ``feeds``), joined along axis 0: the model keeps samples apart. Checked once per input shapes, on
        the first two parts of a batch."""
        order = [o.name for o in self._digital_proto.graph.output]
        if not set(names) <= set(order):
            return False
        try:
            whole = self.run_digital(feeds)
            pieces = [self.run_digital(part) for part in parts]
        except Exception:  # noqa: BLE001 - onnxruntime's own types: e.g. a batch the model fixes
            return False
        for name in names:
            i = order.index(name)
            if np.ndim(whole[i]) == 0 or any(np.ndim(p[i]) == 0 for p in pieces):
                return False
            joined = np.concatenate([p[i] for p in pieces], axis=0)
            if joined.shape != whole[i].shape or not np.allclose(joined, whole[i], 1e-4, 1e-5):
                logger.info("%s: output %s mixes samples along axis 0; runs are not split", self.path, name)
                return False
        return True

    def _prepare(
        self, feeds: dict[str, np.ndarray], single: bool = False
    ) -> tuple[ort.InferenceSession, dict[str, np.ndarray]]:
        """The onnxruntime session and feeds of one run on ``feeds`` (draws this run's noise offsets;
        ``single``: a part of a concurrently split run, on a session of one intra-op thread)."""
        offsets = self._noise_offsets(feeds)  # first: it may grow the noise bank in self._state
        run_feeds = {**feeds, **self._state, **offsets}
        for b in self.batchnorms:
            run_feeds.update(b.feeds(self._bn_state))
        session = self.ort_session_for(single)
        if self._unroller:  # recurrent Loops unrolled for these input shapes (runtime/unroll_loops.py)
            session, run_feeds = self._unroller.prepare(feeds, run_feeds, single)
        return session, run_feeds

    def _execute(self, session: ort.InferenceSession, run_feeds: dict[str, np.ndarray], names: list[str]):
        try:
            return run_checked(session, names, run_feeds)
        except Exception as err:  # onnxruntime's own exception types (shape or type errors)
            raise DataError(f"{self.path}: onnxruntime could not run these inputs: {err}") from err

    def recalibrate_batchnorm(self, feeds: dict[str, np.ndarray]) -> int:
        """AdaBS (Joshi et al. 2020): re-estimate every BatchNormalization's running mean and variance.

        The calibration ``feeds`` run through the chip as it is now (current t); BN layers are recalibrated
        one after the other in graph order, each seeing the already recalibrated layers before it. The
        learned scale and shift (gamma, beta) are unchanged. :meth:`set_time` and :meth:`program` keep the
        recalibrated statistics until :meth:`reset_batchnorm`.

        Returns:
            The number of BatchNormalization layers recalibrated (0: the model has none).
        """
        for bn in self.batchnorms:
            x = self.run(feeds, [bn.input])[0]
            axes = tuple(i for i in range(x.ndim) if i != 1)
            self._bn_state[bn.mean] = x.mean(axis=axes).astype(np.float32)
            self._bn_state[bn.var] = x.var(axis=axes).astype(np.float32)
        return len(self.batchnorms)

    def reset_batchnorm(self) -> None:
        """Back to the BatchNormalization statistics stored in the model."""
        self._bn_state.clear()

    def run_digital(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the FP32 model the compiled file was made from (weights decoded from the plan).

        Convolution layers run as plain ``Conv`` ops (:func:`without_patches`: about 10x faster than the patch
        path, equal up to float32 summation order), except in a switchable session, whose layers switched to
        digital run the patch path: there ``run_digital`` is bit for bit the session with every layer off."""
        if not hasattr(self, "_digital_session"):
            so = ort.SessionOptions()
            so.log_severity_level = 3
            proto = self._digital_proto if self.switchable else without_patches(self._digital_proto)
            self._digital_session = ort_session(proto, so, self.providers, label=f"{self.path} (digital reference)")
        return self._digital_session.run(None, feeds)

    # -- helpers ---------------------------------------------------------------------------------
    def _remap(self, strategy: str) -> None:
        """Re-encode every layer's normalised weights (decoded from the plan) with another strategy."""
        new = get_mapping(strategy)
        for layer in self.layers:
            u = decode_pairs(layer.g_target, layer.mapping.significance, layer.gain_us)
            layer.g_target = new.encode(u, self.device.g_min_us, self.device.g_max_us).astype(np.float32)
            layer.mapping, layer.gain_us = new, new.gain_us(self.device.g_min_us, self.device.g_max_us)
        self.mapping = new
        self.gain_us = new.gain_us(self.device.g_min_us, self.device.g_max_us)

    def _state_names(self) -> set[str]:
        names = {contract.NOISE_BANK} | {n for bn in self.batchnorms for n in (bn.mean, bn.var)}
        for layer in self.layers:
            names |= {
                contract.layer_tensor(layer.name, suffix)
                for suffix in (
                    contract.W_EFF,
                    contract.SCALE,
                    contract.NOISE,
                    contract.NOISE_START,
                    contract.NOISE_END,
                    SWITCH,
                )
            }
        for conv in (getattr(self, "_nchwc", None) or {}).values():
            names |= {conv.input_name(k) for k in conv.used}
        return names

    def _noise_sizes(self, feeds: dict[str, np.ndarray]) -> list[int]:
        """Per layer, the number of noise values one run needs: n_tiles x N x vectors in its input.

        The vectors per layer depend on the model (conv patches, sequence lengths), so the first run with
        new input shapes asks the digital model for every analog layer's input shape; cached by shapes.
        """
        return [int(np.prod(shape)) for shape in self._noise_shapes(feeds)]

    def _noise_shapes(self, feeds: dict[str, np.ndarray]) -> list[tuple[int, ...]]:
        """Per layer, the shape of one run's noise: ([passes,] [n_tiles, vectors | leading dims], N)."""
        key = tuple((k, v.shape) for k, v in feeds.items())
        shapes = self._size_cache.get(key)
        if shapes is None:
            xs = self.layer_inputs(feeds)
            passes = (self.periphery.bm_passes,) if self.periphery.bm_passes > 1 else ()
            shapes = []
            for layer in self.layers:
                lead = xs[layer.name].shape[:-1]
                if layer.fed and layer.spec.tiled:  # tiled body: (n_tiles, vectors, N)
                    shapes.append(passes + (layer.n_tiles, int(np.prod(lead)), layer.n_out))
                elif layer.fed:
                    shapes.append(passes + tuple(lead) + (layer.n_out,))
                else:  # bank slices (layers in Loop bodies): only the size matters
                    shapes.append((self.periphery.bm_passes * layer.n_tiles * layer.n_out * int(np.prod(lead)),))
            self._size_cache[key] = shapes
        return shapes

    def layer_inputs(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every analog layer's input X in the FP32 model (ideal inputs, e.g. for MVM-error studies)."""
        if not hasattr(self, "_probe_session"):
            probe = onnx.ModelProto()
            probe.CopyFrom(self._digital_proto)
            known = {o.name for o in probe.graph.output}
            for layer in self.layers:
                if layer.input not in known:
                    probe.graph.output.append(onnx.ValueInfoProto(name=layer.input))
                    known.add(layer.input)
            so = ort.SessionOptions()
            so.log_severity_level = 3
            self._probe_session = ort_session(probe, so, label=f"{self.path} (shape probe)")
        xs = self._probe_session.run(
            [layer.input for layer in self.layers], {k: v for k, v in feeds.items() if k in self.input_names}
        )
        rows = {row.name: row.weight_shape[0] for row in self.report.layers if row.analog and row.weight_shape}
        # a layer in an If branch inside a Loop body is seen flattened (graph_walk.FLAT): back to (vectors, K)
        return {
            layer.name: x.reshape(-1, rows.get(layer.weights, x.size or 1)) if x.ndim == 1 else x
            for layer, x in zip(self.layers, xs, strict=True)
        }

    def layer_state(self, layer: ChipLayer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What the layer's AnalogMatMul is fed now: (weights in ADC codes per DAC code, in_scale, scale)."""
        state = self._state
        return (
            state[contract.layer_tensor(layer.weights, contract.W_EFF)],
            layer.in_scale,
            state[contract.layer_tensor(layer.weights, contract.SCALE)],
        )

    def ideal_weight(self, layer: ChipLayer, k: int) -> np.ndarray:
        """The layer's FP32 weight W (K, N), decoded from its programming plan."""
        return plan_weight(layer.g_target, layer.col_scale, layer.mapping.significance, layer.gain_us)[:k]

    def _noise_offsets(
        self, feeds: dict[str, np.ndarray], offsets: np.random.Generator | None = None
    ) -> dict[str, np.ndarray]:
        """Per layer, the slice of the noise bank this run's MVM noise is read from.

        The bank holds at least :data:`MIN_BANK_FACTOR` times the largest layer's noise of this run (a
        power of two, at least the periphery's ``noise_bank_size``), so a slice never wraps and offsets
        vary. It is drawn once per size from the experiment seed (:func:`bank_rng`) and shared by all chips;
        each (chip, t) reads it at offsets from its own stream (``offsets``, default the session's current
        (chip, t)), so a chip's runs repeat exactly and chips see independent uniform windows of it.

        This runs before every onnxruntime call, so the per-shape work (sizes, names, bounds) is done once per
        set of input shapes (:class:`_NoisePlan`) and a run only draws the offsets and takes views of the bank.
        """
        if not self._bank_size:
            return {}
        shapes = self._noise_shapes(feeds)
        plan = self._plan
        if plan is None or plan.shapes is not shapes:  # the cached list for these input shapes
            sizes = [int(np.prod(shape)) for shape in shapes]
            self._bank_size = bank_size(self.periphery.noise_bank_size, max(sizes))
            self._set_bank()
            plan = self._plan = _NoisePlan(shapes, sizes, self._bank_size, self.layers, self._noise_names)
        assert self._offsets is not None  # set_time made it
        return plan.feeds(self._offsets if offsets is None else offsets, self._fed_bank)

    def _set_bank(self) -> None:
        """The experiment's noise bank (and its copy pre-scaled for fed layers) at the current size, drawn
        the first time this size is needed and kept (a few sizes at most: one per input shape)."""
        banks = self._banks.get(self._bank_size)
        if banks is None:
            bank = experiment_noise_bank(self.seed, self._bank_size)  # shared by the process's sessions
            scale = 1.0 if self.periphery.read_noise > 0 else tile_constants(self.periphery).noise_std
            banks = (bank, experiment_noise_bank(self.seed, self._bank_size, scale))
            if len(self._banks) >= MAX_BANKS:
                self._banks.pop(next(iter(self._banks)))
            self._banks[self._bank_size] = banks
        if any(not layer.fed for layer in self.layers):
            self._state[contract.NOISE_BANK] = banks[0]
        self._fed_bank = banks[1]


class _NoisePlan:
    """What :meth:`AnalogSession._noise_offsets` needs per set of input shapes, computed once: per layer its
    noise size, shape, feed names and the bound of its offset draw.

    :meth:`feeds` draws one offset per layer from the (chip, t) stream, in layer order, exactly as
    ``rng.integers(0, highs)`` with the array of bounds does (the same values: one bounded draw per
    element), but with one scalar call per layer when there are few layers, which costs a third of the array
    call's broadcasting.
    """

    SCALAR_DRAWS = 8
    """Up to this many layers the offsets are drawn by scalar calls (faster); beyond, by one array call."""

    def __init__(self, shapes: list, sizes: list[int], bank: int, layers: list, names: list[tuple[str, str]]) -> None:
        self.shapes = shapes
        self.highs = [bank - size + 1 for size in sizes]
        self._highs = np.asarray(self.highs, np.int64)
        self.entries = [
            (layer.fed, start_name, end_name, size, tuple(shape))
            for layer, (start_name, end_name), size, shape in zip(layers, names, sizes, shapes, strict=True)
        ]

    def feeds(self, rng: np.random.Generator, fed_bank: np.ndarray) -> dict[str, np.ndarray]:
        """One run's noise feeds: views of ``fed_bank`` (fed layers), or int64 [1] slice bounds (bank layers)."""
        if len(self.highs) <= self.SCALAR_DRAWS:
            starts = [int(rng.integers(0, high)) for high in self.highs]
        else:
            starts = rng.integers(0, self._highs).tolist()
        out: dict[str, np.ndarray] = {}
        for (fed, start_name, end_name, size, shape), start in zip(self.entries, starts, strict=True):
            if fed:
                out[start_name] = fed_bank[start : start + size].reshape(shape)
            else:
                out[start_name] = np.array([start], np.int64)
                out[end_name] = np.array([start + size], np.int64)
        return out


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _forget_pool() -> None:  # a forked child has none of the parent's threads
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _pool() -> ThreadPoolExecutor:
    """The process's threads that run the parts of split runs (onnxruntime releases the GIL while it runs)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(2, usable_cores()), thread_name_prefix="anacompile-run")
        return _POOL


def bank_size(minimum: int, largest: int) -> int:
    """Length of the noise bank for a run whose largest layer needs ``largest`` noise values: ``minimum``
    (the periphery's ``noise_bank_size``) or the power of two >= MIN_BANK_FACTOR x ``largest``."""
    if largest * MIN_BANK_FACTOR <= minimum:
        return int(minimum)
    return int(2 ** np.ceil(np.log2(largest * MIN_BANK_FACTOR)))


def _strategy_key(mapping) -> str:
    import json

    return json.dumps(mapping.to_dict(), sort_keys=True)


SWITCH = "analog_on"
"""Suffix of a switchable session's per-layer input: True runs the layer on the chip, False digitally."""


def _add_digital_switches(m: onnx.ModelProto, layers: list[ChipLayer], digital: onnx.ModelProto) -> None:
    """Put every AnalogMatMul under a fed boolean switch: ``If(L.analog_on)`` runs either the analog node or
    its digital twin ``x W + b`` (W the FP32 weight of :func:`digital_reference_model`, ``L.weight``), so a
    digital layer costs only its MatMul and either output is exact. The branches read their inputs (and a
    Loop body's values) from the enclosing scope."""
    weights = {t.name: t for t in digital.graph.initializer if t.name.endswith(".weight")}
    by_name = {layer.name: layer for layer in layers}
    f = onnx.TensorProto.FLOAT

    def switched(node: onnx.NodeProto) -> list[onnx.NodeProto]:
        name, y = node.name, node.output[0]
        analog = onnx.NodeProto()
        analog.CopyFrom(node)
        analog.output[0] = f"{name}.analog_out"
        then_branch = onnx.helper.make_graph(
            [analog], f"{name}.analog", [], [onnx.helper.make_tensor_value_info(analog.output[0], f, None)]
        )
        else_branch = onnx.helper.make_graph(
            [
                onnx.helper.make_node(
                    "MatMul", [node.input[0], f"{by_name[name].weights}.weight"], [f"{name}.digital_mm"]
                ),
                onnx.helper.make_node("Add", [f"{name}.digital_mm", node.input[4]], [f"{name}.digital_out"]),
            ],
            f"{name}.digital",
            [],
            [onnx.helper.make_tensor_value_info(f"{name}.digital_out", f, None)],
        )
        return [
            onnx.helper.make_node(
                "If",
                [f"{name}.{SWITCH}"],
                [y],
                name=f"{name}.switch",
                then_branch=then_branch,
                else_branch=else_branch,
            )
        ]

    replace_nodes(
        m.graph,
        lambda n: n.domain == contract.DOMAIN and n.op_type == contract.ANALOG_MATMUL and n.name in by_name,
        switched,
    )
    for layer in layers:
        if layer.owns_tiles:  # one FP32 weight per stored weight, read by all its uses
            m.graph.initializer.append(weights[f"{layer.name}.weight"])
        m.graph.input.append(onnx.helper.make_tensor_value_info(f"{layer.name}.{SWITCH}", onnx.TensorProto.BOOL, []))


FIXED_KEYS = ("tile_rows", "tile_cols")
"""Periphery keys a session cannot override: they change the tiling (recompile instead)."""


def _override_periphery(
    base: Periphery, overrides: dict | list[str] | None, resolved: Periphery | None = None
) -> Periphery:
    """The periphery in force: ``base`` (the file's) with ``overrides`` parsed, or ``resolved`` as parsed once by
    the caller (a Monte Carlo job); either way the tiling keys must stay the file's."""
    if resolved is not None and overrides:
        raise ConfigError("Give the session periphery_overrides or a resolved periphery, not both.")
    if not overrides and resolved is None:
        return base
    new = resolved if resolved is not None else get_periphery(base, overrides)
    for key in FIXED_KEYS:
        if getattr(new, key) != getattr(base, key):
            raise ConfigError(
                f"Periphery {key} changes how weights are split onto tiles; recompile with "
                f"--set {key}={getattr(new, key)} instead of overriding it at run time."
            )
    return new


def _extract_layers(proto: onnx.ModelProto) -> list[ChipLayer]:
    inits = {t.name: t for t in proto.graph.initializer}

    def arr(name: str) -> np.ndarray:
        if name not in inits:
            raise UnsupportedModelError(
                f"The compiled model lacks initializer {name!r}; the file is corrupt or from "
                "another anacompile version: recompile the source model."
            )
        a = onnx.numpy_helper.to_array(inits[name])
        if a.dtype.kind != "f" or not np.isfinite(a).all() or a.size == 0:
            raise UnsupportedModelError(
                f"The compiled model's initializer {name!r} is empty, not floating point or "
                "holds NaN/inf values; the file is corrupt: recompile the source model."
            )
        return a

    layers: list[ChipLayer] = []
    owners: dict[str, ChipLayer] = {}
    for node in all_nodes(proto.graph):  # also inside Loop bodies (recurrent layers), in graph order
        if node.domain == contract.DOMAIN and node.op_type == contract.ANALOG_MATMUL:
            name, weights = node.name, weights_layer(node)
            owner = owners.get(weights)
            if owner is None:  # the tiles' first reader: programmed, with its layer index as the chip stream
                layer = ChipLayer(
                    name=name,
                    index=len(owners),
                    g_target=arr(f"{weights}.{contract.G_TARGET}"),
                    out_scale=arr(f"{weights}.{contract.OUT_SCALE}"),
                    input=node.input[0],
                    weights=weights,
                )
                owners[weights] = layer
            else:  # another reader of a shared weight's tiles: same plan and state, its own input and noise
                layer = ChipLayer(
                    name=name,
                    index=owner.index,
                    g_target=owner.g_target,
                    out_scale=owner.out_scale,
                    input=node.input[0],
                    weights=weights,
                )
            layers.append(layer)
    for graph, _ in list(walk_graphs(proto.graph))[1:]:
        for node in graph.node:
            for layer in layers:  # in a subgraph X is one call's or step's input: all of them (digital_reference_model)
                if layer.name == node.name:
                    layer.input = f"{node.name}.{contract.TILE_INPUTS}"
    if not layers:
        raise UnsupportedModelError("The model has no AnalogMatMul node: compile it with `anacompile compile` first.")
    for layer in layers:
        g, n = layer.g_target, layer.g_target.shape[-1] if layer.g_target.ndim else 0
        ranks = (contract.PLAN_RANK_ONE_TILE, contract.PLAN_RANK_TILED)
        if (
            g.ndim not in ranks
            or g.shape[1] != 2
            or (g < 0).any()
            or layer.out_scale.size not in (n, n * (g.shape[2] if g.ndim == contract.PLAN_RANK_TILED else 1))
        ):
            raise UnsupportedModelError(
                f"The compiled model's conductances of layer {layer.name!r} ({layer.name}.{contract.G_TARGET}, shape "
                f"{list(g.shape)}; {layer.name}.{contract.OUT_SCALE}, shape {list(layer.out_scale.shape)}) are "
                "malformed; the file is corrupt: recompile the source model."
            )
    return layers
