"""``anacompile optimize`` and ``anacompile program-verify``: typer commands over the public API.

The main app (:mod:`anacompile.cli`) registers these functions as sub-commands. Each is one call to the public
API (:func:`~anacompile.programming.optimizer.optimize_strategy`,
:func:`~anacompile.programming.program_verify.p_fail_curve`) plus a rich table on stdout, or exactly one JSON
document with ``--json PATH`` (``-`` for stdout). Progress goes to stderr. Errors are
:class:`~anacompile.errors.AnacompileError` subclasses, which the main app prints as one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from anacompile.cli_output import JSON_HELP, check_json_target, json_to_stdout, write_json
from anacompile.errors import ConfigError, OutputError

__all__ = ["optimize_command", "program_verify_command"]

_TIME_LABELS = {
    1.0: "1 s",
    60.0: "1 min",
    3600.0: "1 h",
    86400.0: "1 d",
    30 * 86400.0: "30 d",
    365 * 86400.0: "1 y",
}


def _label(t: float) -> str:
    return _TIME_LABELS.get(float(t), f"{t:g} s")


def _check_output(path: Path | None, force: bool, what: str) -> None:
    if path is None:
        return
    if path.exists() and not force:
        raise OutputError(f"{what} {path} exists; pass --force to overwrite it.")
    if not path.parent.is_dir():
        raise OutputError(f"Cannot write {what} {path}: folder {path.parent} does not exist.")


def optimize_command(
    weights: Annotated[Path, typer.Option("--weights", "-w", help="ONNX model (the matrices compile maps) or .npy.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Strategy JSON to write (for --strategy).")],
    device: Annotated[str, typer.Option("--device", "-d", help="Device preset or device file.")] = "pcm",
    plot: Annotated[Path | None, typer.Option("--plot", help="Also save a plot of G+-(W) per pair (PNG).")] = None,
    json_out: Annotated[str | None, typer.Option("--json", metavar="PATH", help=JSON_HELP)] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every draw.")] = 0,
    time_budget: Annotated[str, typer.Option("--time-budget", help="Search time limit, e.g. 30s, 2min.")] = "60s",
    nbins: Annotated[int, typer.Option("--nbins", help="Non-negative table points (mirrored: 2 nbins - 1).")] = 6,
    times: Annotated[str, typer.Option("--times", help="Time grid of the objective.")] = "1s,1min,1h,1d,30d,1y",
    repeats: Annotated[int, typer.Option("--repeats", help="Fresh-draw programmings for the comparison.")] = 30,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")] = False,
) -> None:
    """Optimise a weight-programming strategy (MSP/LSP pairs) for DEVICE and the weights of a model."""
    from anacompile import devices
    from anacompile.evaluate.times import parse_time, parse_times
    from anacompile.passes.mapped_weights import mapped_weight_matrices
    from anacompile.programming.optimizer import OptimizeSettings, optimize_strategy, plot_strategy
    from anacompile.programming.weight_error import load_weight_matrices

    _check_output(output, force, "strategy")
    _check_output(plot, force, "plot")
    check_json_target(json_out, [weights, output], force)
    dev = devices.get(device)
    settings = OptimizeSettings(
        nbins=nbins,
        times_s=tuple(parse_times(times)),
        n_repeats_final=repeats,
        time_budget_s=parse_time(time_budget),
    )
    # an ONNX model: the matrices compile maps (its own folding and analysis); a .npy array as it is
    mats = load_weight_matrices(weights) if weights.suffix.lower() == ".npy" else mapped_weight_matrices(weights)
    report = optimize_strategy(mats, dev, settings, seed=seed, show_progress=not json_to_stdout(json_out))
    report.mapping.save(output, force=force)
    if plot is not None:
        plot_strategy(report.mapping, plot, title=f"optimised strategy for {dev.name} ({weights.name})")
    if json_out is not None:
        write_json(json_out, report.to_dict() | {"strategy": str(output), "plot": str(plot) if plot else None})
        if json_to_stdout(json_out):
            return
    console = Console()
    n_chips = report.optimised.nmse.shape[0]
    table = Table(title=f"TNMSE x 1e4, fresh draws ({n_chips} chips, GDC), {weights.name} on {dev.name}")
    table.add_column("strategy")
    for t in report.times_s:
        table.add_column(_label(t), justify="right")
    table.add_column("time avg", justify="right")
    table.add_column("vs F=1", justify="right")
    f1 = report.naive.get(1.0)
    rows = [(f"dual F={f:g}" + (" *" if f == report.best_naive_f else ""), e) for f, e in report.naive.items()]
    rows.append((f"optimised F={report.optimised_f:.2f}", report.optimised))
    for name, e in rows:
        red = f"{1 - e.tnmse / f1.tnmse:+.1%}" if f1 is not None else "-"
        table.add_row(
            name,
            *(f"{v * 1e4:.3f}" for v in e.mean_per_time),
            f"{e.tnmse * 1e4:.3f} ± {e.tnmse_sem * 1e4:.3f}",
            red,
        )
    console.print(table)
    best = report.best_naive_f
    console.print(
        f"* best naive dual pair. Optimised vs best naive (F={best:g}): {report.reduction_vs(best):+.1%} "
        f"({report.beats_best_naive()}, 2 standard errors); optimum F = {report.optimised_f:.2f} "
        f"(published: 2); search {report.elapsed_s:.1f} s, {report.generations} generations, "
        f"stopped: {report.stop_reason}; best single-coordinate move from the optimum: "
        f"{report.coordinate_check:+.3%} of the search loss."
    )
    console.print(f"wrote {output}" + (f" and {plot}" if plot else ""))


def program_verify_command(
    weights: Annotated[
        Path | None,
        typer.Option("--weights", "-w", help="Network weights (ONNX or .npy); default: digits MLP."),
    ] = None,
    strategy: Annotated[str, typer.Option("--strategy", help="single, dual, dual:F=..., or a strategy JSON.")] = "dual",
    device: Annotated[str, typer.Option("--device", "-d", help="Device preset or device file.")] = "pcm",
    budgets: Annotated[str, typer.Option("--budgets", help="Pulse budgets per weight.")] = "4,6,8,10,12,16,20,30,40",
    tol: Annotated[float, typer.Option("--tol", help="Tolerance on W / max|W| of the column.")] = 0.02,
    plot: Annotated[Path | None, typer.Option("--plot", help="Save the P_fail vs budget plot (PNG).")] = None,
    json_out: Annotated[str | None, typer.Option("--json", metavar="PATH", help=JSON_HELP)] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every draw.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing plot.")] = False,
) -> None:
    """P_fail vs pulse budget of closed-loop program-and-verify for three weight distributions."""
    from dataclasses import replace

    from anacompile import devices
    from anacompile.mapping import get_mapping
    from anacompile.programming.program_verify import (
        ProgramVerifyParams,
        p_fail_curve,
        plot_p_fail_curve,
        reference_weight_sets,
    )

    _check_output(plot, force, "plot")
    check_json_target(json_out, [weights] if weights is not None else [], force)
    try:
        budget_list = [int(b) for b in budgets.split(",") if b.strip()]
    except ValueError as err:
        raise ConfigError(f"--budgets {budgets!r}: give integers separated by commas, e.g. 5,10,20.") from err
    if not budget_list or min(budget_list) < 1:
        raise ConfigError(f"--budgets {budgets!r}: need at least one budget >= 1 pulse.")
    dev = devices.get(device)
    mapping = get_mapping(strategy)
    params = replace(ProgramVerifyParams(), tol=tol)
    ss = np.random.SeedSequence(seed)
    sets = reference_weight_sets(np.random.default_rng(ss.spawn(1)[0]), weights)
    curves = {
        name: p_fail_curve(mats, mapping, dev, np.random.default_rng(s), budget_list, params)
        for (name, mats), s in zip(sets.items(), ss.spawn(len(sets)), strict=True)
    }
    if plot is not None:
        plot_p_fail_curve(curves, plot, tol=tol)
    if json_out is not None:
        doc = {
            "strategy": mapping.to_dict(),
            "tol": tol,
            "default_budget": params.budget,
            "curves": {k: [vars(p) for p in v] for k, v in curves.items()},
        }
        write_json(json_out, doc)
        if json_to_stdout(json_out):
            return
    console = Console()
    name = mapping.to_dict()["name"]
    table = Table(title=f"P_fail (|ΔW| > {tol:g} max|W|) vs pulse budget, {name} on {dev.name}")
    table.add_column("budget", justify="right")
    for name in curves:
        table.add_column(name, justify="right")
    for i, b in enumerate(budget_list):
        table.add_row(str(b), *(f"{c[i].p_fail:.2%} ({c[i].mean_pulses:.1f} p)" for c in curves.values()))
    console.print(table)
    console.print(f"(mean pulses per weight in brackets; default budget {params.budget})")
    if plot is not None:
        console.print(f"wrote {plot}")
