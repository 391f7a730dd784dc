"""``anacompile.finetune``: hardware-aware fine-tuning of any ONNX model by distillation from its FP32 self.

The FP32 model is lowered to a trainable torch module (:mod:`anacompile.finetune.lowering`); the products the
compiler maps to crossbars run through the analog tile model of :mod:`anacompile.finetune.hwa` (weight noise,
DAC/ADC quantisation and clipping with straight-through gradients, read and output noise, calibrated or learned
input ranges, weight clipping); and the weights are trained so that the noisy model's outputs match the FP32
model's own outputs on the calibration inputs (knowledge distillation: no labels needed; with labels a task
loss is added). This is the HWA fine-tuning recipe of Joshi et al. 2020 and Rasch et al. 2023 (start from the
trained FP32 model, retrain with the hardware model in the forward pass), with the FP32 model as its own
teacher. The trained weights are written back into the original graph (:meth:`OnnxModule.export`).

Defaults and why:

* ``eta = "device"``: the weight-noise std of each layer, relative to the per-column max, is the RMS weight error
  that the device model and programming strategy of ``compile`` leave on that layer's weights after global drift
  compensation, averaged over 1 s - 1 y (:mod:`anacompile.finetune.device_noise`; Joshi et al. 2020 train at the
  chip's own programming noise). Clipping at 2.5 std, Adam with lr 1e-3 and cosine decay, batch 64: the models/
  HWA recipe (reference values of Joshi et al. 2020 and the aihwkit tutorials).
* The periphery is compile's default (``calibrated``: ADC gains from the calibration data), calibrated on the
  same first 256 calibration inputs as ``compile``; one weight-noise draw per mini-batch, shared by all time
  steps of a recurrent layer (a chip's conductances do not change while a sequence runs).
* ``epochs = 30``, the whole cosine schedule, final weights kept (``patience = 0``), as the reference recipes
  train a fixed schedule (Joshi et al. 2020; the models/ HWA phases ran 20-50 epochs). The distillation loss of
  a held-out tenth of the calibration inputs (the same 8 noise draws, i.e. 8 simulated chips, every epoch) is
  reported per epoch; ``patience > 0`` stops early on it and keeps the best epoch. Measured on the digits LSTM:
  the best-validation epoch (19 of 29, lr not yet annealed) gave 95.99 % at 1 d on 25 chips, the final state
  96.30 %: 126 held-out samples x 8 chips are too few to rank epochs 0.3 points apart.
* loss: ``kl`` at temperature 1, the KL divergence from the FP32 model's output distribution to the noisy
  model's over each output's last axis (the inputs of a final Softmax/LogSoftmax when the model ends in one):
  Hinton et al.'s soft-target distillation in its plain form, i.e. cross-entropy against the teacher's own
  class probabilities. It scores what a classifier's user reads (the distribution, its argmax) and leaves the
  student free to grow its margins where the teacher is sure, which is what noise robustness needs; matching
  the logits themselves (``mse``, normalised by the teacher's variance: the high-temperature limit) also pins
  logit offsets and unlikely classes that do not change the output. Measured on the digits LSTM (25 chips,
  final weights): kl 96.70 / 96.04 % at 1 d / 1 y, mse 96.30 / 95.79. For outputs that are not class scores
  use ``mse`` (regression) or ``cosine`` (embeddings).
* BatchNormalization trains as in the reference's fine-tuning (batch statistics in the forward pass, running
  statistics updated with the node's momentum), so the exported running statistics are those of the noisy
  network; ``batchnorm="frozen"`` keeps the FP32 statistics.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from anacompile.errors import ConfigError, DataError, UnsupportedModelError
from anacompile.finetune._torch import require_torch
from anacompile.finetune.device_noise import DEVICE_TIMES, parse_device_times
from anacompile.finetune.settings import HWA_CLIP_A, HWANoise

__all__ = ["FinetuneConfig", "FinetuneResult", "calibrate_simulator", "finetune", "load_calibration", "parse_eta"]

logger = logging.getLogger(__name__)

LOSSES = ("mse", "kl", "cosine")
BATCHNORM_MODES = ("train", "frozen")


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of one fine-tuning run (see the module docstring for the reasons behind the defaults).

    Attributes:
        epochs: most passes over the training part of the calibration inputs.
        lr: Adam learning rate (cosine decay to 0 over ``epochs``).
        batch_size: samples per step.
        patience: stop after this many epochs without a better validation loss and keep the best epoch's
            weights; 0 (default): run the whole cosine schedule and keep the final weights.
        val_fraction: share of the calibration inputs held out for early stopping.
        val_draws: weight-noise draws (simulated chips) the held-out loss is averaged over.
        eta: weight-noise std relative to max|W|, or ``"device"``: for each analog layer, the RMS weight error the
            device model leaves on that layer's weights over ``device_times``
            (:func:`anacompile.finetune.device_noise.device_etas`).
        device_times: times after programming that ``eta="device"`` averages the weight error over.
        noise_scope: ``column`` or ``tensor`` (what max|W| is taken over).
        noise_draw: ``batch`` (one weight-noise draw per layer and mini-batch, shared by a recurrent layer's time
            steps, as on the chip) or ``product`` (a fresh draw at every product).
        clip_a: clip analog weights to +-clip_a std(W) after every step (0: off).
        loss: ``kl`` (softened softmax, temperature; for class scores), ``mse`` (normalised logit matching) or
            ``cosine`` (embeddings).
        temperature: temperature of the ``kl`` loss.
        label_weight: weight of the cross-entropy task loss when labels are used.
        learn_input_ranges: learn the static DAC input ranges (written beside the model for ``--input-ranges``).
        batchnorm: ``train`` (batch statistics, running statistics updated) or ``frozen``.
        seed: seed of the shuffling, the validation split and every noise draw.
        max_samples: use at most this many calibration samples (None: all).
    """

    epochs: int = 30
    lr: float = 1e-3
    batch_size: int = 64
    patience: int = 0
    val_fraction: float = 0.1
    val_draws: int = 8
    eta: float | str = "device"
    device_times: str = DEVICE_TIMES
    noise_scope: str = "column"
    noise_draw: str = "batch"
    clip_a: float = HWA_CLIP_A
    loss: str = "kl"
    temperature: float = 1.0
    label_weight: float = 1.0
    learn_input_ranges: bool = False
    batchnorm: str = "train"
    seed: int = 0
    max_samples: int | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "val_draws"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"finetune {name}={v!r}: must be a positive integer.")
        if not isinstance(self.patience, int) or self.patience < 0:
            raise ConfigError(f"finetune patience={self.patience!r}: must be an integer >= 0 (0: no early stop).")
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < 1):
            raise ConfigError(f"finetune lr={self.lr!r}: must be in (0, 1).")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"finetune val_fraction={self.val_fraction!r}: must be in [0, 1).")
        if self.loss not in LOSSES:
            raise ConfigError(f"finetune loss={self.loss!r}: must be one of {', '.join(LOSSES)}.")
        if self.batchnorm not in BATCHNORM_MODES:
            raise ConfigError(f"finetune batchnorm={self.batchnorm!r}: must be one of {', '.join(BATCHNORM_MODES)}.")
        if not self.temperature > 0:
            raise ConfigError(f"finetune temperature={self.temperature!r}: must be > 0.")
        if self.label_weight < 0:
            raise ConfigError(f"finetune label_weight={self.label_weight!r}: must be >= 0.")
        if self.max_samples is not None and self.max_samples < 2:
            raise ConfigError(f"finetune max_samples={self.max_samples!r}: must be >= 2.")
        if isinstance(self.eta, str):
            if self.eta != "device":
                raise ConfigError(f"finetune eta={self.eta!r}: give a number in [0, 1) or device.")
            parse_device_times(self.device_times)
        HWANoise(0.0 if isinstance(self.eta, str) else self.eta, self.noise_scope, self.clip_a, self.noise_draw)


@dataclass
class FinetuneResult:
    """What a fine-tuning run did; ``model`` is the tuned ONNX model (also written to ``output``)."""

    model: onnx.ModelProto = field(repr=False)
    output: str | None
    analog_layers: list[str]
    input_ranges: dict[str, float] | None
    eta: float
    eta_per_layer: dict[str, float]
    input_ranges_file: str | None
    config: dict[str, Any]
    periphery: dict[str, Any]
    samples_train: int
    samples_val: int
    epochs_run: int
    best_epoch: int
    history: list[dict[str, float]]
    val_loss_before: float
    val_loss_after: float
    distill_on: list[str]
    seconds: float
    export_max_abs_diff: float
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (without the model)."""
        d = asdict(self)
        d.pop("model")
        return d


# --------------------------------------------------------------------------------------------- data


def load_calibration(
    calibration: Any, proto: onnx.ModelProto, need_labels: bool
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Calibration inputs as ``compile`` takes them: ``digits`` (training split), an .npz, or an iterable of
    feed dicts (arrays named after the model inputs, batch first; a ``labels`` entry optional).

    Returns:
        (feeds, labels or None).
    """
    from anacompile.evaluate.data import LABELS_KEY, load_feeds, model_input_specs

    if isinstance(calibration, (str, os.PathLike)):
        feeds, labels = load_feeds(calibration, proto, part="train")
    elif isinstance(calibration, Mapping):
        feeds, labels = _stack([calibration], proto, LABELS_KEY)
    elif isinstance(calibration, Iterable):
        feeds, labels = _stack(list(calibration), proto, LABELS_KEY)
    else:
        raise DataError(
            f"calibration: expected digits, an .npz path or an iterable of feed dicts, got "
            f"{type(calibration).__name__}."
        )
    names = [s[0] for s in model_input_specs(proto)]
    missing = [n for n in names if n not in feeds]
    if missing:
        raise DataError(f"calibration data has no array for model input(s) {missing} (has {sorted(feeds)}).")
    n = {len(v) for v in feeds.values()}
    if len(n) != 1 or min(n) < 2:
        raise DataError(
            f"calibration data: every input needs the same number (>= 2) of samples, got "
            f"{ {k: len(v) for k, v in feeds.items()} }."
        )
    if need_labels and labels is None:
        raise DataError("labels requested (--labels) but the calibration data has none (an array 'labels').")
    return feeds, labels


def _stack(batches: list[Mapping[str, Any]], proto: onnx.ModelProto, labels_key: str):
    from anacompile.evaluate.data import model_input_specs

    if not batches:
        raise DataError("calibration: the iterable of feed dicts is empty.")
    specs = model_input_specs(proto)
    feeds: dict[str, np.ndarray] = {}
    for name, _, dtype in specs:
        try:
            feeds[name] = np.concatenate([np.asarray(b[name]) for b in batches]).astype(dtype, copy=False)
        except KeyError as err:
            raise DataError(f"calibration: a feed dict has no entry for model input {name!r}.") from err
    labels = None
    if all(labels_key in b for b in batches):
        labels = np.concatenate([np.asarray(b[labels_key]).reshape(-1) for b in batches])
    return feeds, labels


def _load_model(model: Any) -> tuple[onnx.ModelProto, Path | None]:
    from anacompile.model_io import load_proto

    if isinstance(model, onnx.ModelProto):
        return copy.deepcopy(model), None
    if isinstance(model, (str, os.PathLike)):
        return load_proto(model, load_external_data=True), Path(model)
    try:
        import onnx_ir as ir

        if isinstance(model, ir.Model):
            return ir.serde.serialize_model(model), None
    except ImportError:  # pragma: no cover - onnx-ir is a base dependency
        pass
    raise ConfigError(f"model: expected a path, an onnx.ModelProto or an onnx_ir.Model, got {type(model).__name__}.")


# ------------------------------------------------------------------------------------- analog layers


def analog_layer_names(
    proto: onnx.ModelProto, tile_rows: int
) -> tuple[dict[str, list[tuple[str, int | None]]], list[str]]:
    """What the compiler maps to crossbars, by lowering key: key -> [(compiler layer name, input group)].

    Runs the compiler's own planning passes (:func:`~anacompile.passes.pipeline.planning_pipeline`: fold weight
    chains, split grouped convolutions, mark analog ops) on a copy, so that fine-tuning puts noise exactly where
    the chip will have it. Returns the mapping and notes.
    """
    import re

    import onnx_ir as ir

    from anacompile.passes._layer import analog_layers
    from anacompile.passes.pipeline import planning_pipeline
    from anacompile.passes.recurrent import RecurrentLayer

    irm = ir.serde.deserialize_model(copy.deepcopy(proto))
    keys: dict[int, str] = {}
    seen: set[str] = set()
    for index, node in enumerate(irm.graph):
        name = node.name if node.name and node.name not in seen else f"{node.name or node.op_type}#{index}"
        seen.add(name)
        keys[id(node)] = name
    by_clean = {"".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in k).strip("_"): k for k in keys.values()}
    planning_pipeline()(irm)  # the compiler's own planning passes, as compile runs them
    out: dict[str, list[tuple[str, int | None]]] = {}
    notes: list[str] = []
    for node, plan in analog_layers(irm):
        key = keys.get(id(node))
        group = None
        if key is None:  # a per-group conv made by SplitGroupedConvsPass: <base>_g<k>
            m = re.fullmatch(r"(.*)_g(\d+)", node.name or "")
            if m is None or m.group(1) not in by_clean:
                notes.append(f"layer {plan.name}: no source node found; trained without analog noise")
                continue
            key, group = by_clean[m.group(1)], int(m.group(2))
        rec = plan.op if isinstance(plan.op, RecurrentLayer) else None
        if rec is not None:
            suffix = "" if len(rec.spec.directions) == 1 else ("_fwd", "_bwd")[rec.direction]
            key = key + suffix + rec.part
        out.setdefault(key, []).append((plan.name, group))
        if plan.k > tile_rows:
            notes.append(
                f"layer {plan.name}: {plan.k} rows on {math.ceil(plan.k / tile_rows)} row tiles; trained "
                "with one column scale, input range and ADC over the whole column"
            )
    return out, notes


# -------------------------------------------------------------------------------------------- finetune


def finetune(
    model: Any,
    calibration: Any,
    output: str | os.PathLike[str] | None = None,
    *,
    config: FinetuneConfig | None = None,
    labels: bool = False,
    periphery: Any = "calibrated",
    periphery_overrides: dict[str, Any] | list[str] | None = None,
    device: Any = "pcm",
    strategy: Any = "single",
    input_ranges_output: str | os.PathLike[str] | None = None,
    force: bool = False,
    show_progress: bool = True,
    threads: int | None = None,
) -> FinetuneResult:
    """Fine-tune an ONNX model hardware-aware by distillation from its own FP32 outputs.

    Args:
        model: the FP32 ONNX model: a path, an ``onnx.ModelProto`` or an ``onnx_ir.Model``.
        calibration: training inputs: ``digits`` (the training split), an .npz with arrays named after the
            model inputs, or an iterable of feed dicts.
        output: where to write the tuned model (None: only returned).
        config: training settings (:class:`FinetuneConfig`).
        labels: add a cross-entropy task loss on the first output with the calibration data's labels.
        periphery: periphery preset or file whose DAC/ADC, output ranges, read noise and output noise the
            training simulates (the one you will compile with; ``calibrated`` is compile's default).
        periphery_overrides: per-key overrides, as for ``compile``.
        device: device preset or file (as ``compile --device``) that ``eta="device"`` measures.
        strategy: programming strategy (as ``compile --strategy``) that ``eta="device"`` measures.
        input_ranges_output: where learned input ranges go (default ``<output>.input_ranges.json``); only with
            ``config.learn_input_ranges``.
        force: overwrite existing outputs.
        show_progress: rich progress bar with the loss on stderr.
        threads: torch intra-op threads (None: torch's default).

    Returns:
        The :class:`FinetuneResult` (the tuned model, history, before/after validation loss).

    Raises:
        AnacompileError: missing torch (says which extra to install), an uncovered op, bad data or options.
    """
    torch = require_torch()
    from anacompile.crossbar.periphery import get_periphery
    from anacompile.finetune.hwa import AnalogSimulator, clip_bound
    from anacompile.finetune.lowering import OnnxModule
    from anacompile.model_io import atomic_output, check_output_path

    cfg = config or FinetuneConfig()
    t_start = time.perf_counter()
    proto, source = _load_model(model)
    out_path = ranges_path = None
    if output is not None:
        out_path = check_output_path(output, [source] if source else [], force)
        if cfg.learn_input_ranges:
            ranges_path = check_output_path(
                input_ranges_output or f"{out_path}.input_ranges.json", [source] if source else [], force
            )
    peri = get_periphery(periphery, periphery_overrides)
    feeds, label_array = load_calibration(calibration, proto, labels)
    if threads is not None:
        torch.set_num_threads(int(threads))
    module = OnnxModule(proto)
    layer_names, notes = analog_layer_names(proto, peri.tile_rows)
    if not layer_names:
        raise UnsupportedModelError(
            "the compiler maps no layer of this model to crossbars (no MatMul/Gemm/Conv/"
            "LSTM/GRU/RNN with a constant weight): nothing to fine-tune hardware-aware."
        )
    gen = torch.Generator().manual_seed(cfg.seed)
    eta0 = 0.0 if isinstance(cfg.eta, str) else float(cfg.eta)
    sim = AnalogSimulator(peri, HWANoise(eta0, cfg.noise_scope, cfg.clip_a, cfg.noise_draw), set(layer_names), gen)
    module.mvm_hook = sim

    names = module.input_names
    n_total = len(next(iter(feeds.values())))
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(n_total)
    if cfg.max_samples is not None:
        order = order[: cfg.max_samples]
    n_val = int(round(cfg.val_fraction * len(order))) if len(order) >= 20 else 0
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    if n_val == 0:
        val_idx = train_idx
        notes.append("fewer than 20 calibration samples: early stopping watches the training samples")
    x_all = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feeds.items()}
    y_all = None if label_array is None or not labels else torch.from_numpy(np.asarray(label_array).astype(np.int64))

    distill = _distill_values(proto)
    batch_axes = _batch_axes(module, x_all, names, distill, torch)

    def batches(idx: np.ndarray, size: int):
        for i in range(0, len(idx), size):
            sel = torch.from_numpy(idx[i : i + size])
            yield sel, [x_all[k].index_select(0, sel) for k in names]

    # teacher: the FP32 model's own values, once (exact digital forward)
    module.eval()
    sim.mode = "off"
    teacher: list[list[Any]] = [[] for _ in distill]
    with torch.no_grad():
        for _, xs in batches(np.arange(n_total), 256):
            for k, v in enumerate(module(*xs, fetch=distill)):
                teacher[k].append(v.detach())
    teacher_t = [torch.cat(t, dim=batch_axes[k]) for k, t in enumerate(teacher)]
    scales = [float(t.float().var()) if t.numel() > 1 else 1.0 for t in teacher_t]
    scales = [s if s > 0 else 1.0 for s in scales]
    weight_names = sorted({n for key in layer_names for n in _spec_weights(module, key)})
    clip_params = [module.tensor(n) for n in weight_names if isinstance(module.tensor(n), torch.nn.Parameter)]

    def clip_weights() -> None:
        if cfg.clip_a <= 0:
            return
        with torch.no_grad():
            for p in clip_params:
                bound = clip_bound(p, cfg.clip_a)
                p.clamp_(-bound, bound)

    # clip first, then calibrate the simulator's input (and output) ranges on the weights it starts from
    clip_weights()
    from anacompile.passes.pipeline import CALIBRATION_SAMPLES

    # the first CALIBRATION_SAMPLES inputs, in file order: what compile --calibration calibrates the chip on
    calibrate_simulator(
        module, sim, {k: v[:CALIBRATION_SAMPLES] for k, v in x_all.items()}, names, cfg.learn_input_ranges
    )
    missing = sorted(set(layer_names) - sim.seen)
    if missing:
        notes.append(f"analog layers never reached by the calibration inputs: {missing}")
    if cfg.eta == "device":
        from anacompile.finetune.device_noise import device_etas

        sim.layer_eta = device_etas(sim.weights, device, strategy, cfg.device_times, seed=cfg.seed)
        sizes = {k: m.size for k, m in sim.weights.items()}
        # the model's overall level (RMS over all weights), for the report
        eta_value = math.sqrt(sum(sim.layer_eta[k] ** 2 * sizes[k] for k in sizes) / max(sum(sizes.values()), 1))
        logger.info("eta=device over %s: %s", cfg.device_times, sim.layer_eta)
    else:
        eta_value = eta0
    sim.noise = HWANoise(eta_value, cfg.noise_scope, cfg.clip_a, cfg.noise_draw)

    def loss_fn(sel: Any, outs: list[Any]) -> Any:
        total = 0.0
        for k, s in enumerate(outs):
            t = teacher_t[k].index_select(batch_axes[k], sel)
            total = total + _distill_loss(cfg, s, t, scales[k], batch_axes[k], torch)
        if y_all is not None:
            logits = outs[0]
            if batch_axes[0] != 0:
                logits = logits.movedim(batch_axes[0], 0)
            total = total + cfg.label_weight * torch.nn.functional.cross_entropy(
                logits.reshape(logits.shape[0], -1), y_all.index_select(0, sel)
            )
        return total

    params = [p for _, p in module.named_onnx_parameters()]
    if sim.learned is not None:
        params += list(sim.learned.parameters())

    val_seed = cfg.seed + 1_000_003

    def validate() -> float:
        module.eval()
        saved = gen.get_state()
        gen.manual_seed(val_seed)  # the same noise draws at every validation
        tot, n = 0.0, 0
        with torch.no_grad():
            for sel, xs in batches(val_idx, 256):
                for _ in range(cfg.val_draws):  # several chips: one weight draw is one chip, too noisy to compare
                    sim.new_draw()
                    tot += float(loss_fn(sel, module(*xs, fetch=distill))) * len(sel)
                    n += len(sel)
        gen.set_state(saved)
        return tot / max(n, 1)

    module.batchnorm_train = cfg.batchnorm == "train"
    opt = torch.optim.Adam(params, lr=cfg.lr)
    steps_per_epoch = math.ceil(len(train_idx) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps))
    )
    before = validate()
    best, best_epoch, wait = before, 0, 0
    best_state = _snapshot(module, sim) if cfg.patience else None
    history: list[dict[str, float]] = []
    shuffle = torch.Generator().manual_seed(cfg.seed + 7)
    progress = _progress(show_progress)
    epochs_run = 0
    with progress:
        task = progress.add_task("finetune", total=total_steps, loss=float("nan"), val=before)
        for epoch in range(1, cfg.epochs + 1):
            module.train()
            perm = train_idx[torch.randperm(len(train_idx), generator=shuffle).numpy()]
            tot, n = 0.0, 0
            for sel, xs in batches(perm, cfg.batch_size):
                opt.zero_grad(set_to_none=True)
                sim.new_draw()
                loss = loss_fn(sel, module(*xs, fetch=distill))
                loss.backward()
                opt.step()
                sched.step()
                clip_weights()
                if sim.learned is not None:
                    with torch.no_grad():
                        for p in sim.learned.parameters():
                            p.clamp_(min=1e-6)
                tot += float(loss.detach()) * len(sel)
                n += len(sel)
                progress.update(task, advance=1, loss=tot / n)
            epochs_run = epoch
            val = validate()
            history.append({"epoch": epoch, "train_loss": tot / max(n, 1), "val_loss": val})
            progress.update(task, val=val)
            logger.info("epoch %d: train loss %.5f, validation loss %.5f", epoch, tot / max(n, 1), val)
            if not cfg.patience:  # the full schedule: the final (annealed) state is the result
                best, best_epoch = val, epoch
            elif val < best:
                best, best_epoch, best_state, wait = val, epoch, _snapshot(module, sim), 0
            else:
                wait += 1
                if wait >= cfg.patience:
                    logger.info("early stop after epoch %d (best %d)", epoch, best_epoch)
                    break
    if cfg.patience:
        _restore(module, sim, best_state)
    module.eval()
    sim.mode = "off"
    tuned = module.export()
    tuned.doc_string = (tuned.doc_string + "\n" if tuned.doc_string else "") + (
        f"Hardware-aware fine-tuned by anacompile finetune (distillation from the FP32 model, eta {eta_value:.4f} "
        f"per {cfg.noise_scope}, {best_epoch} epochs)."
    )
    diff = _check_export(tuned, module, x_all, names, torch)
    ranges = None
    if cfg.learn_input_ranges:
        ranges = {}
        for key, plans in layer_names.items():
            values = sim.input_range(key).detach().reshape(-1).tolist()
            for plan_name, group in plans:
                ranges[plan_name] = float(values[group if group is not None else 0])
    if out_path is not None:
        with atomic_output(out_path) as tmp:
            onnx.save_model(tuned, str(tmp))
            onnx.checker.check_model(str(tmp), full_check=True)
        if ranges_path is not None:
            with atomic_output(ranges_path) as tmp:
                Path(tmp).write_text(json.dumps(ranges, indent=1), encoding="utf-8")
    return FinetuneResult(
        model=tuned,
        output=None if out_path is None else str(out_path),
        analog_layers=sorted(name for plans in layer_names.values() for name, _ in plans),
        input_ranges=ranges,
        eta=eta_value,
        eta_per_layer=dict(sim.layer_eta) or {k: eta_value for k in layer_names},
        input_ranges_file=None if ranges_path is None else str(ranges_path),
        config=asdict(cfg),
        periphery=peri.to_dict(),
        samples_train=len(train_idx),
        samples_val=len(val_idx) if n_val else 0,
        epochs_run=epochs_run,
        best_epoch=best_epoch,
        history=history,
        val_loss_before=before,
        val_loss_after=best,
        distill_on=distill,
        seconds=time.perf_counter() - t_start,
        export_max_abs_diff=diff,
        notes=notes,
    )


def parse_eta(text: str | float) -> float | str:
    """``"0.06"`` -> 0.06, ``"device"`` -> ``"device"`` (the CLI's --eta); anything else is a one-line error."""
    if isinstance(text, (int, float)) or text == "device":
        return text
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"finetune --eta {text!r}: give a number in [0, 1) or device.") from None


def calibrate_simulator(
    module: Any, sim: Any, x_all: Mapping[str, Any], names: list[str], learn: bool = False, batch: int = 256
) -> None:
    """Calibrate the simulator as ``compile --calibration`` calibrates the chip, and switch it to ``noisy``.

    ``finetune`` passes the first ``CALIBRATION_SAMPLES`` (256) calibration inputs, as many as ``compile`` reads.

    One digital pass records every analog layer's static input range (max |x|, as the compiler's default
    ``input_range_percentile`` 100) and crossbar matrix; with ``output_range: calibrated`` a second pass sets each
    layer's output gain from the |tile outputs| the DAC codes give with ideal weights
    (:meth:`~anacompile.finetune.hwa.AnalogSimulator.finish_output_calibration`).
    """
    torch = require_torch()
    from anacompile.crossbar.periphery import OutputRange

    n = len(next(iter(x_all.values())))

    def run(mode: str) -> None:
        sim.mode = mode
        with torch.no_grad():
            for i in range(0, n, batch):
                module(*[x_all[k][i : i + batch] for k in names])

    module.eval()
    run("calibrate")
    sim.finish_calibration(learn)
    if sim.periphery.output_range is OutputRange.CALIBRATED and sim.periphery.adc_bound is not None:
        run("calibrate_output")
        sim.finish_output_calibration()
    sim.mode = "noisy"


def _spec_weights(module: Any, key: str) -> list[str]:
    """ONNX names of the weight tensors of the analog layer ``key`` (from its node's inputs)."""
    for node in module.nodes:
        if key == node.name or (key.startswith(node.name) and node.op_type in ("LSTM", "GRU", "RNN")):
            if node.op_type in ("LSTM", "GRU", "RNN"):
                return [n for n in node.inputs[1:3] if module.is_stored(n)]
            return [node.inputs[1]] if module.is_stored(node.inputs[1]) else []
    return []


def _distill_values(proto: onnx.ModelProto) -> list[str]:
    """The values to match: each float output, or the logits feeding it when it is a Softmax/LogSoftmax."""
    producers = {o: n for n in proto.graph.node for o in n.output}
    values = []
    for out in proto.graph.output:
        if out.type.tensor_type.elem_type not in (
            onnx.TensorProto.FLOAT,
            onnx.TensorProto.DOUBLE,
            onnx.TensorProto.FLOAT16,
        ):
            continue
        name = out.name
        node = producers.get(name)
        while node is not None and node.op_type == "Identity":
            name = node.input[0]
            node = producers.get(name)
        if node is not None and node.op_type in ("Softmax", "LogSoftmax"):
            name = node.input[0]
        values.append(name)
    if not values:
        raise UnsupportedModelError("the model has no floating-point output to distil from.")
    return values


def _batch_axes(module: Any, x_all: dict, names: list[str], values: list[str], torch: Any) -> list[int]:
    """The batch axis of each distilled value: the axis whose size follows the batch (probed with 2 and 3)."""
    with torch.no_grad():
        a = module(*[x_all[k][:2] for k in names], fetch=values)
        b = module(*[x_all[k][:3] for k in names], fetch=values)
    axes = []
    for name, u, v in zip(values, a, b, strict=True):
        diff = [i for i, (p, q) in enumerate(zip(u.shape, v.shape, strict=True)) if p == 2 and q == 3]
        if not diff:
            raise UnsupportedModelError(
                f"value {name!r} has no batch axis (shape {list(u.shape)} for a batch of 2); "
                "distillation needs per-sample outputs."
            )
        axes.append(diff[0])
    return axes


def _distill_loss(cfg: FinetuneConfig, s: Any, t: Any, scale: float, axis: int, torch: Any) -> Any:
    f = torch.nn.functional
    if cfg.loss == "mse":
        return f.mse_loss(s, t) / scale
    if cfg.loss == "cosine":
        return (1 - f.cosine_similarity(s, t, dim=-1)).mean()
    temp = cfg.temperature
    log_p = f.log_softmax(s / temp, dim=-1)
    q = f.softmax(t / temp, dim=-1)
    n = s.shape[axis]
    return f.kl_div(log_p, q, reduction="sum") / n * temp * temp


def _snapshot(module: Any, sim: Any) -> dict:
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    if sim.learned is not None:
        state["__ranges__"] = {k: v.detach().clone() for k, v in sim.learned.items()}
    return state


def _restore(module: Any, sim: Any, state: dict) -> None:
    ranges = state.get("__ranges__")
    module.load_state_dict({k: v for k, v in state.items() if k != "__ranges__"})
    if ranges is not None and sim.learned is not None:
        with __import__("torch").no_grad():
            for k, v in ranges.items():
                sim.learned[k].copy_(v)


def _check_export(tuned: onnx.ModelProto, module: Any, x_all: dict, names: list[str], torch: Any) -> float:
    """Full checker on the exported model, and the largest |difference| from the torch module in onnxruntime."""
    import onnxruntime as ort

    try:
        onnx.checker.check_model(tuned, full_check=True)
    except Exception as err:  # ValidationError / InferenceError
        raise UnsupportedModelError(f"the tuned model fails onnx.checker's full check: {err}") from err
    sess = ort.InferenceSession(tuned.SerializeToString(), providers=["CPUExecutionProvider"])
    xs = {k: x_all[k][:64].numpy() for k in names}
    ref = sess.run(None, xs)
    with torch.no_grad():
        got = module(*[torch.from_numpy(xs[k]) for k in names])
    diff = 0.0
    for r, g in zip(ref, got, strict=True):
        if np.issubdtype(np.asarray(r).dtype, np.floating):
            diff = max(diff, float(np.max(np.abs(np.asarray(r) - g.detach().numpy()))))
    return diff


def _progress(show: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  val {task.fields[val]:.4f}"),
        TimeElapsedColumn(),
        console=console,
        disable=not show or not console.is_terminal,
        transient=False,
    )
