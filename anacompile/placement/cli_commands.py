"""CLI for placement: ``anacompile sensitivity`` and ``anacompile compile --accuracy-budget`` (registered in cli.py)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from anacompile.cli_options import EXECUTION_PROVIDER, option_given, periphery_sets
from anacompile.cli_output import JSON_HELP, check_json_target, json_to_stdout, write_json

__all__ = ["print_placement", "sensitivity_command"]

err_console = Console(stderr=True)
out_console = Console()


def sensitivity_command(
    ctx: typer.Context,
    model: Path = typer.Argument(..., help="Source ONNX model (compiled all-analog first) or a compiled model."),
    data: str | None = typer.Option(
        None, "--data", help="Data for built-in metrics: digits or an .npz with the model inputs (and labels)."
    ),
    metric: str | None = typer.Option(
        None,
        "--metric",
        help="accuracy, agreement, cosine, nmse, or FILE.py:FUNCTION (metric(run) -> float, higher is better).",
    ),
    times: str = typer.Option("1s,1d", "--times", help="Times since programming; the ranking uses the last."),
    chips: int = typer.Option(3, "--chips", help="Chips per configuration."),
    seed: int = typer.Option(0, "--seed", help="Experiment seed (compile and chips)."),
    device: str = typer.Option(
        "pcm", "--device", "-d", help="Device preset or file (source models; refused for a compiled one)."
    ),
    periphery: str = typer.Option(
        "standard", "--periphery", help="Periphery preset or file (source models; refused for a compiled one)."
    ),
    set_: list[str] = typer.Option(
        [],
        "--set",
        help="Override a periphery key, e.g. --set adc_bits=6: a source model is compiled with it, a compiled one's sessions change it (as evaluate --set).",
    ),
    calibration: str | None = typer.Option(
        None, "--calibration", help="Calibration data: digits or an .npz (source models; refused for a compiled one)."
    ),
    compensation: str | None = typer.Option(None, "--compensation", help="Drift compensation override."),
    json_path: str | None = typer.Option(None, "--json", metavar="PATH", help=JSON_HELP),
    plot: Path | None = typer.Option(None, "--plot", help="Write the per-layer bar plot (PNG/SVG/PDF)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
    execution_provider: str | None = EXECUTION_PROVIDER,
) -> None:
    """Per-layer sensitivity: the metric with only each layer analog and with all but it analog, ranked."""
    from anacompile.cli_progress import progress as _progress
    from anacompile.evaluate.times import format_time
    from anacompile.model_io import check_output_path
    from anacompile.placement.plot import plot_sensitivity
    from anacompile.placement.sensitivity import sensitivity

    check_json_target(json_path, [model], force)
    if plot is not None:
        check_output_path(plot, [model], force)
    from anacompile.placement._prepare import is_compiled

    overrides = periphery_sets(set_)
    source = {"device": device, "periphery": periphery, "calibration": calibration}
    if is_compiled(model):  # only the ones given, which the API refuses in one line (never dropped)
        source = {k: v for k, v in source.items() if option_given(ctx, k)}
    options = {**source, "periphery_overrides": overrides, "seed": seed}
    with _progress("configs x chips x times") as advance:
        r = sensitivity(
            model,
            metric=metric,
            data=data,
            times=times,
            chips=chips,
            compensation=compensation,
            progress=advance,
            providers=execution_provider,
            **options,
        )
    table = Table(
        title=f"{model.name}: per-layer sensitivity of {r.metric}, {r.chips} chips, FP32 {r.baseline:.4f}; "
        "all analog "
        + ", ".join(f"{format_time(t)} {m:.4f}" for t, m in zip(r.times_s, r.all_analog_mean, strict=True))
    )
    for col in ("rank", "layer", "op", "MACs"):
        table.add_column(col)
    for t in r.times_s:
        table.add_column(f"only it analog {format_time(t)}")
    for t in r.times_s:
        table.add_column(f"all but it {format_time(t)}")
    for i, la in enumerate(r.layers, start=1):
        table.add_row(
            str(i),
            la.name,
            la.op,
            f"{la.macs:,}",
            *[f"{m:.4f} +- {s:.4f}" for m, s in zip(la.only_mean, la.only_std, strict=True)],
            *[f"{m:.4f} +- {s:.4f}" for m, s in zip(la.all_but_mean, la.all_but_std, strict=True)],
        )
    if not json_to_stdout(json_path):
        out_console.print(table)
    if json_path is not None:
        write_json(json_path, r.to_dict())
        if not json_to_stdout(json_path):
            err_console.print(f"wrote {json_path}")
    if plot is not None:
        plot_sensitivity(r, plot)
        err_console.print(f"wrote {plot}")


def run_placement(
    model: Path,
    output: Path | None,
    *,
    budget: float,
    at: str,
    metric: str | None,
    data: str | None,
    chips: int,
    placement_json: Path | None,
    verify_chips: int = 8,
    confidence: float = 0.95,
    plot: Path | None,
    force: bool,
    json_out: str | None,
    options: dict,
    providers: str | None = None,
) -> None:
    """``compile --accuracy-budget``: search, compile, verify on ``providers``; print the placement (or its
    JSON)."""
    from anacompile.cli_progress import progress as _progress
    from anacompile.placement.search import place

    with _progress("configs x chips") as advance:
        result = place(
            model,
            output,
            accuracy_budget=budget,
            at=at,
            metric=metric,
            data=data,
            chips=chips,
            verify_chips=verify_chips,
            confidence=confidence,
            placement_path=placement_json,
            plot=plot,
            force=force,
            progress=advance,
            providers=providers,
            **options,
        )
    if json_out is not None:
        write_json(json_out, result.placement_dict())
        if json_to_stdout(json_out):
            return
    print_placement(result)
    from anacompile.compiler import read_report
    from anacompile.model_io import load_proto

    for note in read_report(load_proto(result.output)).notes:  # the compile's own notes, as a plain compile's
        err_console.print(f"[yellow]note:[/] {escape(note)}")
    out_console.print(f"wrote [bold]{result.output}[/], {result.placement_path}" + (f", {plot}" if plot else ""))


def print_placement(result) -> None:
    """The placement found: per digital / upgraded layer, and the totals against the budget."""
    from anacompile.evaluate.times import format_time

    table = Table(
        title=f"placement of {Path(result.model).name}: {result.metric} within {result.budget:g} of FP32 "
        f"{result.baseline:.4f} at {format_time(result.at_s)}"
    )
    table.add_column("layer")
    table.add_column("placement")
    table.add_column("loss alone analog")
    for name in result.ranking:
        where = "digital" if name in result.digital else result.layer_strategies.get(name, "single")
        table.add_row(escape(name), escape(where), f"{result.layer_loss.get(name, float('nan')):.4f}")
    verdict = "[green]meets[/]" if result.meets_budget else "[red]misses[/]"
    table.caption = (
        f"{result.analog_mac_share:.1%} of MACs and {result.analog_parameter_share:.1%} of weights analog, "
        f"{result.devices:,} devices; {result.metric} {result.verified_mean:.4f} +- "
        f"{result.verified_se:.4f} (SE; std {result.verified_std:.4f}) on {result.verify_chips} fresh chips, "
        f"{result.confidence:.0%} lower bound {result.verified_lcb:.4f} (target {result.target:.4f}): "
        f"{verdict} the budget; {result.evaluations} configs searched, {len(result.rounds)} verification round(s)"
    )
    if result.unexercised:
        table.caption += (
            f"; {result.analog_mac_share_exercised:.1%} of the MACs the data reaches are analog "
            f"({len(result.unexercised)} layer(s) it never reaches stay analog)"
        )
    out_console.print(table)
    for note in result.notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}")
