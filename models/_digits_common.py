"""Shared code of the ``models/train_digits_*.py`` scripts (not part of the ``anacompile`` package).

Each script trains one small network on the fixed scikit-learn digits split of
:func:`anacompile.evaluate.datasets.load_digits_split`, first in plain FP32 and then hardware-aware (HWA),
and exports both as self-contained ONNX files (opset 17, input ``input``, output ``logits``, dynamic batch).

Hardware-aware training follows Joshi et al. 2020 (Nat. Commun. 11, 2473): starting from the FP32 model,
every mini-batch draws fresh Gaussian noise ``N(0, (eta * max|W_layer|)^2)`` for every weight matrix (Linear,
Conv, LSTM ``W`` and ``R``; never biases, norms or embeddings), the forward and backward pass run on the noisy
weights, the gradients are applied to the clean weights, and after every optimizer step each weight matrix is
clipped to ``+-a * std(W_layer)``.

Requires the ``torch`` extra (``pip install -e .[torch]``). Everything runs on the CPU and is deterministic.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import random
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from anacompile.evaluate.datasets import load_digits_split
from anacompile.finetune.hwa import clip_bound, weight_noise
from anacompile.finetune.settings import HWA_CLIP_A, HWA_ETA

MODELS_DIR = Path(__file__).resolve().parent
OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


# --------------------------------------------------------------------------------------------- setup / data


def seed_everything(seed: int, threads: int) -> None:
    """Seed python, numpy and torch, pin the thread count and ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (legacy global RNG, seeded for any library code using it)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


@dataclass(frozen=True)
class Data:
    """The fixed digits split as torch tensors, features reshaped to the network's input shape."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_data(sample_shape: tuple[int, ...], holdout: float = 0.0, seed: int = 0) -> Data:
    """Load the fixed split; ``sample_shape`` is the per-sample input shape, e.g. ``(64,)`` or ``(1, 8, 8)``.

    With ``holdout > 0`` (hyper-parameter search only) the *test* tensors are replaced by a stratified
    validation part carved out of the training split, so that the real test split is never looked at.
    """
    train, test = load_digits_split()
    x_tr, y_tr, x_te, y_te = train.x, train.y, test.x, test.y
    if holdout > 0:
        from sklearn.model_selection import train_test_split

        x_tr, x_te, y_tr, y_te = train_test_split(x_tr, y_tr, test_size=holdout, random_state=seed, stratify=y_tr)

    def tx(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32).reshape((-1, *sample_shape)))

    return Data(tx(x_tr), torch.from_numpy(np.asarray(y_tr)), tx(x_te), torch.from_numpy(np.asarray(y_te)))


# ------------------------------------------------------------------------------------------- HWA machinery


def weight_matrices(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The parameters a crossbar would hold: weights of Linear / Conv layers, ``W`` and ``R`` of RNNs."""
    out: list[tuple[str, nn.Parameter]] = []
    for mod_name, mod in model.named_modules():
        if isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            out.append((f"{mod_name}.weight", mod.weight))
        elif isinstance(mod, nn.RNNBase):
            for p_name, p in mod.named_parameters(recurse=False):
                if p_name.startswith(("weight_ih", "weight_hh")):
                    out.append((f"{mod_name}.{p_name}", p))
    return out


@contextlib.contextmanager
def noisy_weights(params: list[nn.Parameter], eta: float, generator: torch.Generator) -> Iterator[None]:
    """Temporarily add ``N(0, (eta * max|W|)^2)`` to every weight matrix in ``params`` (one draw per call).

    Inside the context the forward and backward pass see the noisy weights; on exit the clean values are
    restored in place, so the ``.grad`` computed at the noisy weights is then applied to the clean ones.
    """
    if eta <= 0:
        yield
        return
    clean = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p in params:
            p.add_(weight_noise(p, eta, generator))  # the one noise formula: anacompile.finetune.hwa
    try:
        yield
    finally:
        with torch.no_grad():
            for p, c in zip(params, clean, strict=True):
                p.copy_(c)


def clip_weights(params: list[nn.Parameter], a: float) -> None:
    """Clip every weight matrix in place to ``+-a * std(W)`` (its own standard deviation)."""
    if a <= 0:
        return
    with torch.no_grad():
        for p in params:
            bound = clip_bound(p, a)
            p.clamp_(-bound, bound)


# ------------------------------------------------------------------------------------------------- training


@dataclass
class TrainConfig:
    """Hyper-parameters of one training phase."""

    epochs: int
    lr: float
    batch_size: int = 64
    weight_decay: float = 0.0
    eta: float = 0.0  # HWA weight-noise level (0: plain FP32 training)
    clip_a: float = 0.0  # HWA clipping at +-a*std (0: none)
    seed: int = 0
    grad_clip: float = 0.0  # global gradient-norm clipping (0: none)
    cosine: bool = True  # cosine learning-rate decay to 0 over the phase


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    """Logits of ``model`` in eval mode."""
    was_training = model.training
    model.eval()
    out = torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)])
    model.train(was_training)
    return out


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict(model, x).argmax(1) == y).float().mean())


def train(model: nn.Module, data: Data, cfg: TrainConfig, log_every: int = 10, tag: str = "") -> nn.Module:
    """Train ``model`` in place with Adam(W) on the training split; returns the model."""
    gen = torch.Generator().manual_seed(cfg.seed)  # shuffling
    noise_gen = torch.Generator().manual_seed(cfg.seed + 1_000_003)  # weight noise
    params = [p for _, p in weight_matrices(model)]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(data.x_train)
    steps_per_epoch = (n + cfg.batch_size - 1) // cfg.batch_size
    total = cfg.epochs * steps_per_epoch
    sched = (
        torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * min(s, total) / total)))
        if cfg.cosine and total > 0
        else None
    )
    loss_fn = nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=gen)
        tot_loss = 0.0
        for i in range(0, n, cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            xb, yb = data.x_train[idx], data.y_train[idx]
            opt.zero_grad(set_to_none=True)
            with noisy_weights(params, cfg.eta, noise_gen):
                loss = loss_fn(model(xb), yb)
                loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            clip_weights(params, cfg.clip_a)
            if sched is not None:
                sched.step()
            tot_loss += loss.item() * len(idx)
        if epoch % log_every == 0 or epoch == cfg.epochs:
            acc = accuracy(model, data.x_test, data.y_test)
            print(
                f"  [{tag}] epoch {epoch:4d}  loss {tot_loss / n:.4f}  eval acc {acc:.4f}"
                f"  ({time.perf_counter() - t0:.1f} s)",
                flush=True,
            )
    model.eval()
    return model


@torch.no_grad()
def noisy_accuracy(model: nn.Module, data: Data, eta: float, draws: int, seed: int = 12345) -> tuple[float, float]:
    """Mean and std of the eval accuracy over ``draws`` weight-noise draws at level ``eta`` (robustness)."""
    m = copy.deepcopy(model).eval()
    params = [p for _, p in weight_matrices(m)]
    gen = torch.Generator().manual_seed(seed)
    accs = []
    for _ in range(draws):
        with noisy_weights(params, eta, gen):
            accs.append(accuracy(m, data.x_test, data.y_test))
    return float(np.mean(accs)), float(np.std(accs))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------- ONNX export


def _prune_graph(graph: onnx.GraphProto) -> None:
    """Drop nodes whose outputs nobody uses and initializers no node reads."""
    outputs = {o.name for o in graph.output}
    while True:
        used = set(outputs)
        for node in graph.node:
            used.update(i for i in node.input if i)
        dead = [n for n in graph.node if not any(o in used for o in n.output if o)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    used = {i for n in graph.node for i in n.input if i} | outputs
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    for vi in [v for v in graph.value_info if v.name not in used]:
        graph.value_info.remove(vi)


def _rename_input(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name == old:
                node.input[k] = new


def tidy_graph(model: onnx.ModelProto) -> list[str]:
    """Small, semantics-preserving clean-ups of the TorchScript exporter's output; returns what was done.

    * ``Identity`` nodes that merely forward an initializer (the exporter emits them for BatchNorm running
      statistics) are removed and their consumers read the initializer directly.
    * The all-zero initial states ``initial_h`` / ``initial_c`` that the exporter builds for ``LSTM`` nodes
      with ``Shape -> Gather -> ConstantOfShape`` are dropped (ONNX defaults them to zeros), which removes
      the shape arithmetic from the graph.
    * Initializers the exporter calls ``onnx::<Op>_<n>`` are renamed after their module: ``<module>.W`` /
      ``.R`` / ``.B`` for LSTM (already in ONNX gate order i, o, f, c; torch's is i, f, g, o) and
      ``<module>.weight_t`` for the (in, out) weight of a MatMul (a Linear applied to a 3-D input).
    """
    g = model.graph
    done: list[str] = []
    inits = {i.name for i in g.initializer}
    graph_outputs = {o.name for o in g.output}
    for node in list(g.node):
        if node.op_type == "Identity" and node.input[0] in inits and node.output[0] not in graph_outputs:
            _rename_input(g, node.output[0], node.input[0])
            g.node.remove(node)
            done.append(f"removed Identity {node.output[0]} <- initializer {node.input[0]}")
    producers = {o: n for n in g.node for o in n.output}
    for node in g.node:
        if node.op_type not in ("LSTM", "GRU", "RNN"):
            continue
        for k in (5, 6):  # initial_h, initial_c
            if k >= len(node.input) or not node.input[k]:
                continue
            prod = producers.get(node.input[k])
            if prod is None or prod.op_type != "ConstantOfShape":
                continue
            value = [a for a in prod.attribute if a.name == "value"]
            if value and np.any(onnx.numpy_helper.to_array(value[0].t) != 0):
                continue
            done.append(f"dropped zero {('initial_h', 'initial_c')[k - 5]} of {node.op_type} {node.name}")
            node.input[k] = ""
        while node.input and not node.input[-1]:
            node.input.pop()
    # The exporter names weights it had to rewrite "onnx::<Op>_<n>" (MatMul: the transposed torch weight of a
    # Linear applied to a 3-D input; LSTM: W/R/B re-ordered to ONNX gate order). Name them after the module.
    suffixes = {"MatMul": {1: "weight_t"}, "LSTM": {1: "W", 2: "R", 3: "B"}, "GRU": {1: "W", 2: "R", 3: "B"}}
    for node in g.node:
        prefix = node.name.strip("/").rsplit("/", 1)[0].replace("/", ".")
        for k, suffix in suffixes.get(node.op_type, {}).items():
            old = node.input[k] if k < len(node.input) else ""
            new = f"{prefix}.{suffix}"
            if not prefix or not old.startswith("onnx::") or old not in inits or new in inits:
                continue
            for init in g.initializer:
                if init.name == old:
                    init.name = new
            _rename_input(g, old, new)
            inits = (inits - {old}) | {new}
            done.append(f"renamed initializer {old} -> {new}")
    _prune_graph(g)
    return done


def export_onnx(
    model: nn.Module,
    sample_shape: tuple[int, ...],
    path: Path,
    doc: str,
    metadata: dict[str, str],
) -> onnx.ModelProto:
    """Export ``model`` (eval mode) with the TorchScript exporter, tidy it, check it and save it to ``path``.

    BatchNormalization is kept as its own node (``training=PRESERVE`` on an eval-mode model skips the
    exporter's Conv+BN fusion), weights are stored inside the file, the batch dimension is dynamic.
    """
    model = model.eval()
    example = torch.zeros((2, *sample_shape), dtype=torch.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and the LSTM batch-size notice
        torch.onnx.export(
            model,
            (example,),
            str(tmp),
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            training=torch.onnx.TrainingMode.PRESERVE,
            do_constant_folding=True,
            export_params=True,
            keep_initializers_as_inputs=False,
        )
    m = onnx.load(str(tmp))
    tmp.unlink()
    for line in tidy_graph(m):
        print(f"  tidy: {line}")
    m.doc_string = doc
    m.producer_name = "anacompile models/ (torch.onnx TorchScript exporter)"
    del m.metadata_props[:]
    for k, v in metadata.items():
        m.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(m, full_check=True)
    onnx.save_model(m, str(path), save_as_external_data=False)
    onnx.checker.check_model(str(path), full_check=True)
    return m


def onnx_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Test accuracy and logits of the ONNX file at ``path`` run with onnxruntime (CPU)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    logits = sess.run([OUTPUT_NAME], {INPUT_NAME: x.astype(np.float32)})[0]
    # also exercise the dynamic batch dimension with batch size 1
    one = sess.run([OUTPUT_NAME], {INPUT_NAME: x[:1].astype(np.float32)})[0]
    if not np.allclose(one, logits[:1], atol=1e-4, rtol=1e-4):
        raise AssertionError(f"{path.name}: batch-1 logits differ from the batched run")
    return float((logits.argmax(1) == y).mean()), logits


def op_types(m: onnx.ModelProto) -> dict[str, int]:
    counts: dict[str, int] = {}
    for n in m.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return counts


def export_and_verify(
    model: nn.Module,
    data: Data,
    sample_shape: tuple[int, ...],
    path: Path,
    doc: str,
    metadata: dict[str, str],
) -> dict[str, object]:
    """Export, then check that onnxruntime reproduces the torch logits and accuracy on the test split."""
    torch_logits = predict(model, data.x_test).numpy()
    torch_acc = float((torch_logits.argmax(1) == data.y_test.numpy()).mean())
    meta = {**metadata, "test_accuracy_torch": f"{torch_acc:.4f}"}
    m = export_onnx(model, sample_shape, path, doc, meta)
    ort_acc, ort_logits = onnx_accuracy(path, data.x_test.numpy(), data.y_test.numpy())
    max_diff = float(np.abs(ort_logits - torch_logits).max())
    if ort_acc != torch_acc:
        raise AssertionError(f"{path.name}: onnxruntime accuracy {ort_acc} != torch accuracy {torch_acc}")
    if max_diff > 1e-3:
        raise AssertionError(f"{path.name}: onnxruntime logits differ from torch by {max_diff}")
    ops = op_types(m)
    size = path.stat().st_size
    sha = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    print(
        f"  wrote {path} ({size / 1024:.1f} KiB, sha256 {sha}): onnxruntime test acc {ort_acc:.4f} "
        f"(= torch), max |logit diff| {max_diff:.2e}\n  ops: {ops}"
    )
    return {"path": str(path), "acc": ort_acc, "ops": ops, "bytes": size, "max_diff": max_diff}


# ------------------------------------------------------------------------------------------------------ CLI


def base_parser(description: str, epochs: int, hwa_epochs: int, lr: float, hwa_lr: float) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--epochs", type=int, default=epochs, help="FP32 training epochs (default %(default)s)")
    p.add_argument("--lr", type=float, default=lr, help="FP32 Adam learning rate (default %(default)s)")
    p.add_argument("--hwa-epochs", type=int, default=hwa_epochs, help="HWA fine-tuning epochs (default %(default)s)")
    p.add_argument("--hwa-lr", type=float, default=hwa_lr, help="HWA fine-tuning learning rate (default %(default)s)")
    p.add_argument(
        "--eta",
        type=float,
        default=HWA_ETA,
        help="HWA weight-noise level: std = eta * max|W_layer| per weight matrix (default %(default)s)",
    )
    p.add_argument(
        "--clip-a",
        type=float,
        default=HWA_CLIP_A,
        help="HWA clipping of weights to +-a*std(W_layer) (default %(default)s)",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (fixed for bit-reproducibility)")
    p.add_argument("--out-dir", type=Path, default=MODELS_DIR, help="output directory (default: models/)")
    p.add_argument(
        "--holdout",
        type=float,
        default=0.0,
        help="hyper-parameter search only: evaluate on this fraction of the training split instead of "
        "the test split, and write nothing",
    )
    p.add_argument("--noise-draws", type=int, default=20, help="weight-noise draws for the robustness summary")
    return p


def run(
    args: argparse.Namespace,
    name: str,
    build: Callable[[], nn.Module],
    sample_shape: tuple[int, ...],
    architecture: str,
    fp_extra: dict[str, float] | None = None,
) -> None:
    """Train FP32 and export ``<name>_fp.onnx``; fine-tune HWA from it and export ``<name>_hwa.onnx``."""
    fp_extra = fp_extra or {}
    seed_everything(args.seed, args.threads)
    data = load_data(sample_shape, args.holdout, args.seed)
    model = build()
    n_params = count_parameters(model)
    print(f"{name}: {architecture}; {n_params} parameters; train {len(data.x_train)}, eval {len(data.x_test)}")
    script = f"models/train_{name}.py"

    fp_cfg = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed, **fp_extra)
    train(model, data, fp_cfg, tag="fp32")
    fp_acc = accuracy(model, data.x_test, data.y_test)
    fp_state = copy.deepcopy(model.state_dict())

    hwa_extra = {k: v for k, v in fp_extra.items() if k != "weight_decay"}
    hwa_cfg = TrainConfig(
        epochs=args.hwa_epochs,
        lr=args.hwa_lr,
        batch_size=args.batch_size,
        seed=args.seed + 1,
        eta=args.eta,
        clip_a=args.clip_a,
        **hwa_extra,
    )
    hwa = build()
    hwa.load_state_dict(fp_state)
    clip_weights([p for _, p in weight_matrices(hwa)], args.clip_a)
    train(hwa, data, hwa_cfg, tag=f"hwa eta={args.eta}")
    hwa_acc = accuracy(hwa, data.x_test, data.y_test)

    rob_fp = noisy_accuracy(model, data, args.eta, args.noise_draws)
    rob_hwa = noisy_accuracy(hwa, data, args.eta, args.noise_draws)
    print(
        f"{name}: clean eval acc fp32 {fp_acc:.4f}, hwa {hwa_acc:.4f}; with weight noise eta={args.eta} "
        f"({args.noise_draws} draws): fp32 {rob_fp[0]:.4f}+-{rob_fp[1]:.4f}, "
        f"hwa {rob_hwa[0]:.4f}+-{rob_hwa[1]:.4f}"
    )
    if args.holdout > 0:
        print("(holdout mode: accuracies are on a validation part of the training split; nothing written)")
        return

    common = {
        "dataset": "sklearn digits, anacompile.evaluate.datasets.load_digits_split (fixed split)",
        "architecture": architecture,
        "parameters": str(n_params),
        "training_script": script,
        "seed": str(args.seed),
    }
    fp_meta = {**common, "training": f"fp32, {args.epochs} epochs, AdamW lr {args.lr}"}
    hwa_meta = {
        **common,
        "training": (
            f"hwa fine-tuning from fp32: {args.hwa_epochs} epochs, lr {args.hwa_lr}, "
            f"weight noise eta {args.eta} "
            f"* max|W| per layer (forward only), clip +-{args.clip_a} std (Joshi et al. 2020)"
        ),
        "hwa_eta": str(args.eta),
        "hwa_clip_a": str(args.clip_a),
    }
    out: Path = args.out_dir
    r_fp = export_and_verify(
        model, data, sample_shape, out / f"{name}_fp.onnx", f"{name} (FP32): {architecture}", fp_meta
    )
    r_hwa = export_and_verify(
        hwa,
        data,
        sample_shape,
        out / f"{name}_hwa.onnx",
        f"{name} (HWA, eta={args.eta}): {architecture}",
        hwa_meta,
    )
    print(
        f"SUMMARY {name}: params {n_params}; onnxruntime test acc fp32 {r_fp['acc']:.4f}, "
        f"hwa {r_hwa['acc']:.4f}; "
        f"noisy (eta={args.eta}) fp32 {rob_fp[0]:.4f}+-{rob_fp[1]:.4f}, "
        f"hwa {rob_hwa[0]:.4f}+-{rob_hwa[1]:.4f}"
    )
