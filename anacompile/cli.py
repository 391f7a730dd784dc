"""The ``anacompile`` command line: a thin typer app over the public API.

``anacompile MODEL.onnx [options]`` (no sub-command) is ``anacompile compile MODEL.onnx [options]``.
Errors anacompile raises on purpose print as one line on stderr and exit with 1 (``--verbose`` shows the
traceback); usage errors exit with 2. ``--json PATH`` writes the result as JSON to PATH on every command;
``--json -`` prints exactly one JSON document on stdout (and nothing else there); progress and
logs go to stderr.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from anacompile.cli_options import EXECUTION_PROVIDER, option_given, periphery_sets
from anacompile.cli_output import JSON_HELP, check_json_target, json_to_stdout, write_json
from anacompile.cli_progress import progress as _progress
from anacompile.deploy_commands import export_tiles_command
from anacompile.errors import AnacompileError

__all__ = ["app", "main"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Compile ONNX networks for analog in-memory-computing crossbars and evaluate them over time.",
)
err_console = Console(stderr=True)
out_console = Console()
_STATE = {"verbose": False}
METRIC_HELP = (
    "Metric, higher is better: accuracy (needs labels), agreement / cosine / nmse (negative NMSE) against "
    "the FP32 model's outputs, or FILE.py:FUNCTION, a function metric(run) -> float where run(feeds) "
    "returns the model's outputs (default: accuracy with labels, else agreement)."
)
CHIP_STATE_HELP = (
    "full: the file carries chip --chip of --seed programmed (runs in a stock onnxruntime); none: the plan "
    "and seed only (a third of the size, no sampling at compile time); the analog session programs the chip "
    "on load, with the same results."
)


def chip_state_line(report) -> str:
    """What a compiled file carries of the chip, for ``compile`` and ``inspect``."""
    state = getattr(report, "chip_state", "full")
    carried = "programmed in the file" if state == "full" else "programmed by the session on load"
    return f"chip state: {state} (chip {report.chip} of seed {report.seed}, {carried})"


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks and debug logs.")) -> None:
    _STATE["verbose"] = verbose
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )


SEARCH_DEFAULTED = ("at", "chips", "verify_chips", "confidence")
"""``compile``'s options of the placement search that have a default (refused without --accuracy-budget when
given)."""


@app.command("compile")
def compile_cmd(
    ctx: typer.Context,
    model: Path = typer.Argument(..., help="Source ONNX model."),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Output (default: MODEL.analog.onnx beside MODEL)."
    ),
    device: str = typer.Option(
        "pcm", "--device", "-d", help="Device preset (see `anacompile devices`) or device file."
    ),
    periphery: str = typer.Option(
        "calibrated",
        "--periphery",
        help="Periphery preset (calibrated: standard with ADC ranges calibrated on --calibration data; standard: Rasch et al. 2023, fixed ADC bound; ideal) or YAML/JSON file.",
    ),
    set_: list[str] = typer.Option([], "--set", help="Override a periphery key, e.g. --set adc_bits=6 (repeatable)."),
    strategy: str = typer.Option(
        "single", "--strategy", help="Programming strategy: single, dual, or a strategy JSON."
    ),
    calibration: str | None = typer.Option(
        None,
        "--calibration",
        help="Data for static input ranges and calibrated ADC ranges: digits or an .npz of arrays named after the inputs.",
    ),
    input_ranges: Path | None = typer.Option(
        None, "--input-ranges", help="JSON {layer: range} of provided (e.g. learned) static input ranges."
    ),
    seed: int = typer.Option(0, "--seed", help="Experiment seed."),
    chip: int = typer.Option(0, "--chip", help="Chip whose programmed state is stored in the file."),
    programming: str = typer.Option("gaussian", "--programming", help="Chip programming method."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output."),
    json_out: str | None = typer.Option(
        None, "--json", metavar="PATH", help="Write the compile report as JSON to PATH ('-' for stdout)."
    ),
    allow_invalid: bool = typer.Option(
        False, "--allow-invalid", help="Compile a source that fails onnx.checker's full check (refused by default)."
    ),
    digital: list[str] = typer.Option(
        [],
        "--digital",
        help="Keep layers digital: node/layer names, op types, glob patterns, or @placement.json (repeatable).",
    ),
    layer_strategy: list[str] = typer.Option(
        [],
        "--layer-strategy",
        help="A layer's own strategy NAME=SPEC (single, dual, npair:significance=1,2,4, FILE.json), or @placement.json (repeatable).",
    ),
    accuracy_budget: float | None = typer.Option(
        None,
        "--accuracy-budget",
        help="Choose per layer digital or an analog strategy: cheapest placement whose --metric at --at stays within this of FP32 (e.g. 0.02).",
    ),
    at: str = typer.Option("1d", "--at", help="Time since programming the accuracy budget holds at."),
    metric: str | None = typer.Option(None, "--metric", help=METRIC_HELP),
    data: str | None = typer.Option(
        None, "--data", help="Data for built-in metrics (--accuracy-budget): digits or an .npz."
    ),
    chips: int = typer.Option(3, "--chips", help="Chips per configuration of the placement search."),
    verify_chips: int = typer.Option(8, "--verify-chips", help="Fresh chips per verification of the placement found."),
    confidence: float = typer.Option(
        0.95, "--confidence", help="Verification passes when its lower confidence bound clears the budget."
    ),
    placement_json: Path | None = typer.Option(
        None, "--placement-json", help="Where to write the placement found (default: OUTPUT stem + .placement.json)."
    ),
    plot: Path | None = typer.Option(
        None, "--plot", help="Plot of the placement search (metric vs analog share of MACs)."
    ),
    target: str = typer.Option(
        "simulation",
        "--target",
        help="simulation (for evaluate) or deploy (what a device runtime loads: no simulation-only tensors, t_inference a plain input).",
    ),
    shared_weights: str = typer.Option(
        "share",
        "--shared-weights",
        help="A stored weight read by several MatMul/Gemm ops: share (programmed once, every use reads the same tiles) or replicate (a copy per use, each on its own tiles).",
    ),
    chip_state: str = typer.Option("full", "--chip-state", help=CHIP_STATE_HELP),
    execution_provider: str | None = EXECUTION_PROVIDER,
) -> None:
    """Compile MODEL for analog crossbar tiles and write the annotated ONNX model."""
    from anacompile.compiler import compile_model
    from anacompile.errors import ConfigError

    check_json_target(json_out, [model], force)
    overrides = periphery_sets(set_)
    if accuracy_budget is None:  # the search's options, never dropped silently
        given = {"--metric": metric, "--data": data, "--plot": plot, "--placement-json": placement_json}
        unused = [k for k, v in {**given, "--execution-provider": execution_provider}.items() if v is not None]
        unused += [f"--{n.replace('_', '-')}" for n in SEARCH_DEFAULTED if option_given(ctx, n)]
        if unused:
            raise ConfigError(
                f"{', '.join(unused)}: used by the placement search only; add --accuracy-budget B or drop them."
            )
    if accuracy_budget is not None:
        from anacompile.placement.cli_commands import run_placement

        options = {
            "device": device,
            "periphery": periphery,
            "periphery_overrides": overrides,
            "strategy": strategy,
            "calibration": calibration,
            "chip": chip,
            "programming": programming,
            "input_ranges": input_ranges,
            "digital": list(digital),
            "layer_strategies": list(layer_strategy),
            "shared_weights": shared_weights,
            "target": target,
            "allow_invalid": allow_invalid,
            "chip_state": chip_state,
        }
        run_placement(
            model,
            output,
            budget=accuracy_budget,
            at=at,
            metric=metric,
            data=data,
            chips=chips,
            verify_chips=verify_chips,
            confidence=confidence,
            placement_json=placement_json,
            plot=plot,
            force=force,
            json_out=json_out,
            options={**options, "seed": seed},
            providers=execution_provider,
        )
        return
    report = compile_model(
        model,
        output,
        device=device,
        periphery=periphery,
        periphery_overrides=overrides,
        strategy=strategy,
        calibration=calibration,
        seed=seed,
        chip=chip,
        programming=programming,
        force=force,
        input_ranges=input_ranges,
        digital=list(digital),
        layer_strategies=list(layer_strategy),
        target=target,
        allow_invalid=allow_invalid,
        shared_weights=shared_weights,
        chip_state=chip_state,
    )
    if json_out is not None:
        write_json(json_out, report.to_dict())
        if json_to_stdout(json_out):
            return
    _print_layers(report)
    for note in report.notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}")
    out_console.print(__import__("anacompile.cost.cli_command", fromlist=["x"]).cost_summary(report.output))
    out_console.print(f"wrote [bold]{escape(str(report.output))}[/]" + (f" and {json_out}" if json_out else ""))


def _print_layers(report) -> None:
    table = Table(title=escape(f"{Path(report.source).name} -> {report.device.get('name', '?')} crossbars"))
    sources = any("(" in getattr(layer, "weight_source", "") for layer in report.layers)  # a folded chain
    graphs = any(getattr(layer, "graph", "") for layer in report.layers)  # layers inside If/Loop/Scan bodies
    for col in (
        "layer",
        *(("graph",) if graphs else ()),
        "op",
        "weight",
        *(("weight source",) if sources else ()),
        "tiles",
        "utilisation",
        "mapping",
    ):
        table.add_column(col)
    for layer in report.layers:
        where = (escape(getattr(layer, "graph", "") or "(main)"),) if graphs else ()
        shape = "x".join(str(d) for d in layer.weight_shape) or "-"
        folded = getattr(layer, "weight_source", "")
        source = ((folded if "(" in folded else "-"),) if sources else ()
        shared = getattr(layer, "shared_with", None)
        if layer.analog:
            own = getattr(layer, "strategy", None)
            mapping = (
                "analog"
                + (
                    f" ({own.get('name')}{', F=' + str(own['F']) if 'F' in own else ''}"
                    f"{', F=' + ','.join(map(str, own['significance'])) if 'significance' in own else ''})"
                    if own
                    else ""
                )
                + (
                    f"; tiles read by {len(layer.uses)} ops (programmed once)"
                    if len(getattr(layer, "uses", [])) > 1
                    else f"; weight shared with {', '.join(shared) if isinstance(shared, list) else shared}"
                    f" (programmed once per use)"
                    if shared
                    else ""
                )
            )
            table.add_row(
                escape(layer.name),
                *where,
                escape(layer.op),
                shape,
                *map(escape, source),
                f"{layer.tiles[0]}x{layer.tiles[1]}",
                f"{layer.utilisation:.1%}",
                mapping,
            )
        else:
            table.add_row(
                escape(layer.name),
                *where,
                escape(layer.op),
                shape,
                *map(escape, source),
                "-",
                "-",
                escape(f"digital: {layer.reason}"),
            )
    t = report.totals
    table.caption = (
        f"{t['analog_layers']} analog, {t['digital_layers']} digital layers; {t['weights_mapped']:,} "
        f"weights mapped ({t['analog_parameter_share']:.1%} of parameters) on {t['tiles']} tiles"
        + (f"; {t['analog_mac_share']:.1%} of MACs analog, {t['devices']:,} devices" if "devices" in t else "")
    )
    out_console.print(table)
    out_console.print(escape(chip_state_line(report)), soft_wrap=True)


@app.command("inspect")
def inspect_cmd(
    model: Path = typer.Argument(..., help="Compiled model."),
    json_out: str | None = typer.Option(
        None, "--json", metavar="PATH", help=JSON_HELP + " Schema: anacompile/schemas/compile_report.schema.json."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --json file."),
) -> None:
    """Print the per-layer mapping report of a compiled model."""
    from anacompile.compiler import read_report
    from anacompile.model_io import load_proto

    check_json_target(json_out, [model], force)
    report = read_report(load_proto(model))
    report.source = report.source or str(model)  # the stored report carries no paths
    if json_out is not None:
        write_json(json_out, report.to_dict())
    if not json_to_stdout(json_out):
        _print_layers(report)


@app.command("devices")
def devices_cmd(
    json_out: str | None = typer.Option(None, "--json", metavar="PATH", help=JSON_HELP),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --json file."),
) -> None:
    """List the built-in device presets and their parameters."""
    from anacompile import devices

    check_json_target(json_out, (), force)
    data = {name: devices.get(name).to_dict() for name in devices.available()}
    if json_out is not None:
        write_json(json_out, data)
        if json_to_stdout(json_out):
            return
    for name, params in data.items():
        out_console.print(f"[bold]{name}[/]")
        out_console.print_json(json.dumps(params))


@app.command("evaluate")
def evaluate_cmd(
    model: Path = typer.Argument(..., help="Compiled model."),
    data: str = typer.Option(
        "digits",
        "--data",
        help="digits, an .npz with the model inputs and labels, or sentences / a .txt of sentences (cosine similarity of embeddings to FP32).",
    ),
    times: str = typer.Option("1s,1h,1d,1y", "--times", help="Times since programming, e.g. 1s,1h,1d,1y."),
    chips: int = typer.Option(25, "--chips", help="Number of simulated chips."),
    seed: int | None = typer.Option(None, "--seed", help="Experiment seed (default: the compile seed)."),
    compensation: str | None = typer.Option(
        None,
        "--compensation",
        help="Drift compensation: none, global, column, adabs; several separated by commas are compared side by side.",
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a periphery key for this evaluation, e.g. --set adc_bits=6."
    ),
    sweep: str | None = typer.Option(None, "--sweep", help="Sweep one periphery key, e.g. --sweep adc_bits=6,7,8,9."),
    strategy: str | None = typer.Option(
        None,
        "--strategy",
        help="Re-map the weights with programming strategies: single, dual, dual:F=2.5, FILE.json; several separated by commas are compared side by side.",
    ),
    programming: str | None = typer.Option(None, "--programming", help="Chip programming method: gaussian or verify."),
    workers: int = typer.Option(1, "--workers", help="Parallel worker processes (chips are split between them)."),
    json_path: str | None = typer.Option(None, "--json", metavar="PATH", help=JSON_HELP),
    csv_path: Path | None = typer.Option(None, "--csv", help="Stream one row per chip and time to this CSV file."),
    plot: Path | None = typer.Option(None, "--plot", help="Write a plot (PNG/SVG/PDF)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
    metric: str | None = typer.Option(None, "--metric", help=METRIC_HELP),
    resume: Path | None = typer.Option(
        None,
        "--resume",
        help="Continue an interrupted evaluation from the CSV it streamed (--csv); same options, same final result.",
    ),
    batch_memory: float | None = typer.Option(
        None,
        "--batch-memory",
        metavar="MIB",
        help="Bound (MiB; default: one core's L2 cache) on the estimated memory of one onnxruntime call running many (chip, t) pairs; 0: one per call. Same results.",
    ),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        help="Run the chips on an existing Dask cluster, dask://HOST:PORT (needs anacompile[cluster]); same result.",
    ),
    execution_provider: str | None = EXECUTION_PROVIDER,
) -> None:
    """Accuracy (or another metric) over time since programming, mean +- std over many simulated chips."""
    from anacompile.errors import ConfigError
    from anacompile.evaluate.monte_carlo import evaluate
    from anacompile.evaluate.plot import plot_accuracy_over_time, plot_sweep
    from anacompile.model_io import check_output_path

    if resume is not None:
        if csv_path is not None and csv_path.resolve() != resume.resolve():
            raise ConfigError(f"--resume {resume} continues that CSV; drop --csv {csv_path} or give the same file.")
        csv_path = None
    check_json_target(json_path, [model], force)
    for path in (plot, csv_path):
        if path is not None:
            check_output_path(path, [model], force)
    overrides = periphery_sets(set_)
    modes = [m.strip() for m in compensation.split(",")] if compensation else [None]
    strategies = [s.strip() for s in strategy.split(",")] if strategy else [None]
    runs: list[tuple[str, dict]] = []  # (label, evaluate kwargs)
    if (sweep is not None) + (len(modes) > 1) + (len(strategies) > 1) > 1:
        raise ConfigError("Compare one thing at a time: --sweep, several --compensation modes, or several --strategy.")
    if len(strategies) > 1:
        for strat in strategies:
            runs.append((strat, {"compensation": modes[0], "strategy": strat, "periphery_overrides": overrides}))
    elif sweep is not None:
        key, sep, values = sweep.partition("=")
        if not sep or not values.strip():
            raise ConfigError(f"--sweep {sweep!r}: write KEY=V1,V2,..., e.g. --sweep adc_bits=6,7,8,9.")
        for value in values.split(","):
            runs.append(
                (
                    f"{key.strip()}={value.strip()}",
                    {
                        "compensation": modes[0],
                        "strategy": strategies[0],
                        "periphery_overrides": {
                            **overrides,
                            **periphery_sets([f"{key.strip()}={value.strip()}"], "--sweep"),
                        },
                    },
                )
            )
    else:
        for mode in modes:
            runs.append(
                (mode or "", {"compensation": mode, "strategy": strategies[0], "periphery_overrides": overrides})
            )
    results = []
    embeddings = data == "sentences" or data.endswith(".txt")
    if embeddings and (
        sweep or len(strategies) > 1 or set_ or programming or csv_path or workers > 1 or metric or scheduler
    ):
        raise ConfigError("--data sentences (embedding similarity) supports --compensation comparisons only.")
    from anacompile.evaluate.monte_carlo import EvaluationInterrupted

    try:  # click turns a KeyboardInterrupt into a silent exit 130: say where the finished chips' rows are
        with _progress("chips x times") as advance:
            for i, (_, kwargs) in enumerate(runs):
                if embeddings:
                    from anacompile.evaluate.embeddings import evaluate_embeddings
                    from anacompile.evaluate.metrics import load_sentences

                    results.append(
                        evaluate_embeddings(
                            model,
                            load_sentences(None if data == "sentences" else data),
                            times=times,
                            chips=chips,
                            seed=seed,
                            compensation=kwargs["compensation"],
                            progress=lambda d, t, i=i: advance(i * t + d, t * len(runs)),
                        )
                    )
                    continue
                results.append(
                    evaluate(
                        model,
                        data=data,
                        times=times,
                        chips=chips,
                        seed=seed,
                        workers=workers,
                        programming=programming,
                        metric=metric,
                        batch_memory_mb=batch_memory,
                        scheduler=scheduler,
                        providers=execution_provider,
                        **_csv_or_resume(csv_path, resume, i, len(runs)),
                        progress=lambda d, t, i=i: advance(i * t + d, t * len(runs)),
                        **kwargs,
                    )
                )
    except EvaluationInterrupted as err:
        err_console.print(f"[red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from err
    labels = [label or r.compensation for (label, _), r in zip(runs, results, strict=True)]
    if not json_to_stdout(json_path):
        _print_results(model, data, results, labels, sweep_key=sweep.partition("=")[0].strip() if sweep else None)
    for r in results:
        for note in r.notes:
            err_console.print(f"[yellow]note:[/] {escape(note)}")
    if json_path is not None:
        _write_json(json_path, results, labels, sweep)
        if not json_to_stdout(json_path):
            err_console.print(f"wrote {json_path}")
    if plot is not None:
        if sweep:
            plot_sweep(results, sweep.partition("=")[0].strip(), [label.partition("=")[2] for label in labels], plot)
        else:
            suffix = " strategy" if len(strategies) > 1 else " compensation"
            plot_accuracy_over_time(results, plot, labels=[f"{label}{suffix}" for label in labels])
        err_console.print(f"wrote {plot}")


def _csv_or_resume(csv_path: Path | None, resume: Path | None, i: int, n: int) -> dict:
    """Run i's CSV: resumed where its file exists (an interrupted run), else streamed afresh."""
    if resume is None:
        return {"csv_path": _numbered(csv_path, i, n)}
    path = _numbered(resume, i, n)
    return {"resume": path} if path.exists() or n == 1 else {"csv_path": path}


def _numbered(path: Path | None, i: int, n: int) -> Path | None:
    if path is None or n == 1:
        return path
    return path.with_name(f"{path.stem}.{i}{path.suffix}")


def _print_results(model: Path, data: str, results, labels: list[str], sweep_key: str | None) -> None:
    from anacompile.evaluate.times import format_time

    first = results[0]
    what = (
        f"sweep of {sweep_key}"
        if sweep_key
        else ", ".join(labels) + (" strategy" if results[0].strategy else " compensation")
    )
    table = Table(title=escape(f"{model.name}: {first.metric} on {data}, {first.chips} chips, {what}"))
    table.add_column("time")
    for label in labels:
        table.add_column(label)
    pct = first.metric in ("accuracy", "agreement")
    fmt = (lambda v: f"{v:.2%}") if pct else (lambda v: f"{v:.4f}")
    table.add_row("FP32 baseline", *[fmt(r.baseline) for r in results])
    for j, t in enumerate(first.times_s):
        table.add_row(format_time(t), *[f"{fmt(r.accuracy_mean[j])} +- {fmt(r.accuracy_std[j])}" for r in results])
    out_console.print(table)


def _write_json(path: str | Path, results, labels: list[str], sweep: str | None) -> None:
    if len(results) == 1 and not sweep:
        write_json(path, results[0].to_dict())
        return
    first = results[0]
    doc = {
        "baseline": first.baseline,
        "times_s": first.times_s,
        "chips": first.chips,
        "seed": first.seed,
        "metric": first.metric,
        "labels": labels,
        "results": [r.to_dict() for r in results],
    }
    if sweep:
        doc["sweep"] = sweep
    write_json(path, doc)


@app.command("mvm-error")
def mvm_error_cmd(
    model: Path = typer.Argument(..., help="Compiled model."),
    data: str = typer.Option("digits", "--data", help="Built-in data set (digits) or .npz with the model inputs."),
    times: str = typer.Option("1s", "--times", help="Times since programming, e.g. 1s,1h,1d,1y."),
    chips: int = typer.Option(5, "--chips", help="Number of simulated chips."),
    seed: int | None = typer.Option(None, "--seed", help="Experiment seed (default: the compile seed)."),
    compensation: str | None = typer.Option(None, "--compensation", help="Drift compensation: none, global, column."),
    set_: list[str] = typer.Option([], "--set", help="Override a periphery key, e.g. --set adc_bits=6."),
    samples: int = typer.Option(256, "--samples", help="Input vectors per layer (from the data set)."),
    json_out: str | None = typer.Option(None, "--json", metavar="PATH", help=JSON_HELP),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --json file."),
    metric: str | None = typer.Option(None, "--metric", help=METRIC_HELP + " Scored end to end on the same chips."),
    execution_provider: str | None = EXECUTION_PROVIDER,
) -> None:
    """Relative MVM error ||y_analog - y|| / ||y|| of every analog layer on real inputs, at each time."""
    from anacompile.evaluate.mvm_error import mvm_error
    from anacompile.evaluate.times import format_time

    check_json_target(json_out, [model], force)
    overrides = periphery_sets(set_)
    with _progress("chips") as advance:
        r = mvm_error(
            model,
            data=data,
            times=times,
            chips=chips,
            seed=seed,
            compensation=compensation,
            periphery_overrides=overrides or None,
            samples=samples,
            progress=advance,
            metric=metric,
            providers=execution_provider,
        )
    if json_out is not None:
        write_json(json_out, r.to_dict())
        if json_to_stdout(json_out):
            return
    table = Table(
        title=escape(f"{model.name}: relative MVM error per layer, {r.chips} chips, {r.compensation} compensation")
    )
    table.add_column("layer")
    table.add_column("weight")
    for t in r.times_s:
        table.add_column(format_time(t))
    for name, shape, means, stds in zip(r.layers, r.shapes, r.error_mean, r.error_std, strict=True):
        table.add_row(
            escape(name),
            "x".join(map(str, shape)),
            *["not reached" if m is None else f"{m:.1%} +- {s:.1%}" for m, s in zip(means, stds, strict=True)],
        )
    if r.metric is not None:
        table.add_row(
            f"{r.metric} (FP32 {r.metric_baseline:.4f})",
            "",
            *[f"{m:.4f} +- {s:.4f}" for m, s in zip(r.metric_mean, r.metric_std, strict=True)],
        )
    out_console.print(table)
    for note in r.notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}")


@app.command("demo")
def demo_cmd(
    out_dir: Path = typer.Option(Path("anacompile-demo"), "--out", help="Folder for the demo's outputs."),
    chips: int = typer.Option(25, "--chips", help="Number of simulated chips."),
) -> None:
    """Compile the embedded digits MLP (noise-trained) for PCM and evaluate it over 1 s .. 1 y."""
    from importlib.resources import files

    from anacompile.compiler import compile_model
    from anacompile.evaluate.monte_carlo import evaluate
    from anacompile.evaluate.plot import plot_accuracy_over_time

    out_dir.mkdir(parents=True, exist_ok=True)
    source = out_dir / "digits_mlp_hwa.onnx"
    source.write_bytes(files("anacompile.data").joinpath("digits_mlp_hwa.onnx").read_bytes())
    compiled = out_dir / "digits_mlp_hwa.analog.onnx"
    report = compile_model(source, compiled, device="pcm", calibration="digits", force=True)
    _print_layers(report)
    modes = ["none", "global"]
    results = []
    with _progress("chips x times") as advance:
        for i, mode in enumerate(modes):
            results.append(
                evaluate(
                    compiled,
                    data="digits",
                    times="1s,1h,1d,1y",
                    chips=chips,
                    compensation=mode,
                    progress=lambda d, t, i=i: advance(i * t + d, t * len(modes)),
                )
            )
    _print_results(compiled, "digits", results, modes, sweep_key=None)
    _write_json(out_dir / "result.json", results, modes, None)
    plot_accuracy_over_time(results, out_dir / "result.png", labels=[f"{m} compensation" for m in modes])
    out_console.print(f"wrote {compiled}, {out_dir / 'result.json'}, {out_dir / 'result.png'}")


def _register_optional_commands() -> None:
    try:
        from anacompile.programming import cli_commands
    except ImportError:
        return
    if hasattr(cli_commands, "optimize_command"):
        app.command("optimize")(cli_commands.optimize_command)
    if hasattr(cli_commands, "program_verify_command"):
        app.command("program-verify")(cli_commands.program_verify_command)


_register_optional_commands()
app.command("export-tiles")(export_tiles_command)
app.command("sensitivity")(__import__("anacompile.placement.cli_commands", fromlist=["x"]).sensitivity_command)
app.command("cost")(__import__("anacompile.cost.cli_command", fromlist=["cost_command"]).cost_command)
app.command("finetune")(importlib.import_module("anacompile.finetune.cli_commands").finetune_command)
_COMMANDS = {
    "demo",
    "compile",
    "inspect",
    "devices",
    "evaluate",
    "optimize",
    "program-verify",
    "mvm-error",
    "sensitivity",
    "export-tiles",
    "cost",
    "finetune",
}


def _command_names() -> set[str]:
    """Every sub-command registered on the app (including those other modules register)."""
    names = {
        info.name or info.callback.__name__.replace("_", "-")
        for info in app.registered_commands
        if info.callback is not None
    }
    return names | _COMMANDS


def _looks_like_a_model(arg: str) -> bool:
    """The short form ``anacompile MODEL.onnx``: a path (an existing file, a suffix, or a folder in it)."""
    return Path(arg).exists() or "." in Path(arg).name or "/" in arg or "\\" in arg


def _unknown_command(name: str) -> str:
    """``unknown command 'inspekt'; did you mean 'inspect'?`` (difflib), listing the commands."""
    import difflib

    names = sorted(_command_names())
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return (
        f"unknown command '{name}'; {hint}commands: {', '.join(names)} (or give a model file: anacompile MODEL.onnx)."
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``anacompile MODEL.onnx ...`` is ``anacompile compile MODEL.onnx ...``.

    Returns the exit status: 0 success, 1 an :class:`AnacompileError` (printed as one line), 2 usage errors.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    first = next((i for i, a in enumerate(args) if not a.startswith("-")), None)
    if first is not None and args[first] not in _command_names():
        if not _looks_like_a_model(args[first]):
            err_console.print(f"[red]error:[/] {_unknown_command(args[first])}", highlight=False, soft_wrap=True)
            return 2
        args.insert(first, "compile")
    try:
        app(args, prog_name="anacompile")  # standalone mode: usage errors exit 2 with click's message
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except AnacompileError as err:
        if _STATE["verbose"]:
            raise
        err_console.print(f"[red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt as err:  # EvaluationInterrupted says where the rows of finished chips are
        err_console.print(
            f"[red]error:[/] {escape(str(err) or 'interrupted; no output was written.')}",
            highlight=False,
            soft_wrap=True,
        )
        return 130
    except Exception as err:  # a bug: still one line (the traceback with --verbose), and nothing half-written
        if _STATE["verbose"]:
            raise
        err_console.print(
            f"[red]error:[/] internal error ({type(err).__name__}: {escape(str(err))}); nothing was written. "
            "Re-run with --verbose and report the traceback.",
            highlight=False,
            soft_wrap=True,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())


def _console_main() -> None:
    """Console-script wrapper: exit with :func:`main`'s status."""
    sys.exit(main())
