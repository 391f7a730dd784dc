"""``anacompile finetune``: the typer command over :func:`anacompile.finetune.finetune`.

The main app (:mod:`anacompile.cli`) registers :func:`finetune_command`. It is one call to the public API plus a
short summary on stdout, or exactly one JSON document with ``--json PATH`` (``-`` for stdout). Progress goes
to stderr. Importing this module does not import torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from anacompile.cli_output import JSON_HELP, json_to_stdout, write_json
from anacompile.finetune.train import FinetuneConfig as FinetuneDefaults

__all__ = ["default_output_path", "finetune_command"]


def default_output_path(model: Path) -> Path:
    """``model.onnx`` -> ``model.hwa.onnx`` beside it."""
    stem = model.name[: -len(".onnx")] if model.name.endswith(".onnx") else model.name
    return model.with_name(stem + ".hwa.onnx")


def finetune_command(
    model: Annotated[Path, typer.Argument(help="FP32 ONNX model to fine-tune.")],
    calibration: Annotated[
        str,
        typer.Option(
            "--calibration", help="Training inputs: digits or an .npz named after the model inputs (labels optional)."
        ),
    ],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Tuned model (default MODEL.hwa.onnx).")] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Most epochs (early stop on held-out inputs).")] = 30,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate (cosine decay).")] = 1e-3,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Samples per step.")] = 64,
    patience: Annotated[
        int,
        typer.Option(
            "--patience",
            help="Stop after N epochs without a better held-out loss and keep the best epoch (0: full schedule, "
            "final weights).",
        ),
    ] = FinetuneDefaults.patience,
    eta: Annotated[
        str,
        typer.Option(
            "--eta",
            help="Weight-noise std relative to max|W|, or device: the RMS weight error the --device leaves on "
            "this model's weights over --device-times.",
        ),
    ] = str(FinetuneDefaults.eta),
    device_times: Annotated[
        str, typer.Option("--device-times", help="Times after programming that --eta device averages over.")
    ] = FinetuneDefaults.device_times,
    device: Annotated[
        str, typer.Option("--device", "-d", help="Device preset or file (as for compile), for --eta device.")
    ] = "pcm",
    strategy: Annotated[
        str, typer.Option("--strategy", help="Programming strategy (as for compile), for --eta device.")
    ] = "single",
    noise_scope: Annotated[str, typer.Option("--noise-scope", help="max|W| per column or per tensor.")] = "column",
    val_draws: Annotated[
        int, typer.Option("--val-draws", help="Weight-noise draws (chips) the held-out loss averages over.")
    ] = FinetuneDefaults.val_draws,
    noise_draw: Annotated[
        str,
        typer.Option(
            "--noise-draw", help="Weight noise: batch (one draw per mini-batch, as a chip) or product (per product)."
        ),
    ] = "batch",
    clip_a: Annotated[float, typer.Option("--clip-a", help="Clip weights to +-a std(W) (0: off).")] = 2.5,
    loss: Annotated[
        str, typer.Option("--loss", help="Distillation loss: kl (class scores), mse (regression), cosine (embeddings).")
    ] = FinetuneDefaults.loss,
    temperature: Annotated[
        float, typer.Option("--temperature", help="Temperature of the kl loss.")
    ] = FinetuneDefaults.temperature,
    labels: Annotated[
        bool, typer.Option("--labels/--no-labels", help="Add a task loss with the calibration data's labels.")
    ] = False,
    learn_input_ranges: Annotated[
        bool,
        typer.Option(
            "--learn-input-ranges/--no-learn-input-ranges",
            help="Learn static DAC input ranges; written as JSON for compile --input-ranges.",
        ),
    ] = False,
    input_ranges_out: Annotated[
        Path | None,
        typer.Option("--input-ranges-out", help="Where learned ranges go (default OUTPUT.input_ranges.json)."),
    ] = None,
    batchnorm: Annotated[
        str, typer.Option("--batchnorm", help="BatchNorm: train (batch statistics) or frozen.")
    ] = "train",
    periphery: Annotated[
        str, typer.Option("--periphery", help="Periphery simulated in training (as for compile).")
    ] = "calibrated",
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a periphery key (repeatable).")] = None,
    max_samples: Annotated[int | None, typer.Option("--max-samples", help="Use at most this many samples.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of shuffling, split and noise.")] = 0,
    threads: Annotated[int | None, typer.Option("--threads", help="torch threads.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")] = False,
    json_out: Annotated[str | None, typer.Option("--json", metavar="PATH", help=JSON_HELP)] = None,
) -> None:
    """Fine-tune MODEL hardware-aware by distillation from its FP32 outputs (needs anacompile[train])."""
    from anacompile.cli_options import periphery_sets

    overrides = periphery_sets(set_)  # checked before torch is even imported
    from anacompile.finetune.train import FinetuneConfig, finetune, parse_eta

    config = FinetuneConfig(
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        patience=patience,
        eta=parse_eta(eta),
        device_times=device_times,
        val_draws=val_draws,
        noise_scope=noise_scope,
        noise_draw=noise_draw,
        clip_a=clip_a,
        loss=loss,
        temperature=temperature,
        learn_input_ranges=learn_input_ranges,
        batchnorm=batchnorm,
        seed=seed,
        max_samples=max_samples,
    )
    out = output if output is not None else default_output_path(model)
    result = finetune(
        model,
        calibration,
        out,
        config=config,
        labels=labels,
        periphery=periphery,
        periphery_overrides=overrides,
        device=device,
        strategy=strategy,
        input_ranges_output=input_ranges_out,
        force=force,
        show_progress=not json_to_stdout(json_out),
        threads=threads,
    )
    if json_out is not None:
        write_json(json_out, result.to_dict())
        if json_to_stdout(json_out):
            return
    console = Console()
    err = Console(stderr=True)
    for note in result.notes:
        err.print(f"[yellow]note:[/] {note}")
    console.print(
        f"{len(result.analog_layers)} analog layers trained hardware-aware (eta {result.eta:.4f}); "
        f"{result.epochs_run} epochs "
        f"(best {result.best_epoch}) in {result.seconds:.1f} s; distillation loss on held-out inputs "
        f"{result.val_loss_before:.4g} -> {result.val_loss_after:.4g}"
    )
    if result.input_ranges_file:
        console.print(f"wrote learned input ranges to [bold]{result.input_ranges_file}[/] (compile --input-ranges)")
    console.print(f"wrote [bold]{result.output}[/]")
