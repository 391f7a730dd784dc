"""``anacompile cost MODEL``: energy, latency and area of one inference of a compiled model (registered in cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from anacompile.cli_output import json_to_stdout, write_json
from anacompile.errors import ConfigError, OutputError

__all__ = ["cost_command"]


def _dims(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit() or int(value) < 1:
            raise ConfigError(f"--dim {item!r}: write NAME=SIZE with a positive integer, e.g. --dim sequence=64.")
        out[name.strip()] = int(value)
    return out


def _check_output(path: Path | None, what: str, model: Path) -> None:
    if path is None:
        return
    if path.resolve() == model.resolve():
        raise OutputError(f"{what} {path} would overwrite the model; choose another path.")
    if not path.parent.is_dir():
        raise OutputError(f"Cannot write {what} {path}: folder {path.parent} does not exist.")


def cost_command(
    model: Annotated[Path, typer.Argument(help="Compiled model (anacompile compile output).")],
    params: Annotated[
        str, typer.Option("--params", "-p", help="Cost preset (ibm64core, isaac) or parameter file.")
    ] = "ibm64core",
    set_: Annotated[
        list[str], typer.Option("--set", help="Override one constant, e.g. --set adc_energy_j=2e-12.")
    ] = [],  # noqa: B006
    dim: Annotated[
        list[str], typer.Option("--dim", help="Symbolic input dimension size, e.g. --dim sequence=64.")
    ] = [],  # noqa: B006
    default_dim: Annotated[
        int, typer.Option("--default-dim", help="Size of other symbolic dimensions (batch is 1).")
    ] = 128,
    json_path: Annotated[
        str | None,
        typer.Option(
            "--json",
            metavar="PATH",
            help="Write the full report (every figure with its formula) as JSON "
            "to PATH ('-' for stdout: the table then goes to stderr).",
        ),
    ] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Save a plot of the energy per layer (PNG).")] = None,
) -> None:
    """Energy, latency and area per inference (batch 1): per layer and total, from a cited chip's constants."""
    from anacompile.cost import params as cost_params
    from anacompile.cost.model import estimate_cost
    from anacompile.cost.plot import plot_energy_per_layer

    constants = cost_params.get(params, set_ or None)  # the preset or file and --set, checked before any work
    if default_dim < 1:
        raise ConfigError(f"--default-dim {default_dim}: must be >= 1.")
    if not json_to_stdout(json_path):
        _check_output(None if json_path is None else Path(json_path), "JSON report", model)
    _check_output(plot, "plot", model)
    report = estimate_cost(model, constants, dims=_dims(dim), default_dim=default_dim)
    tot = report.totals
    console = Console(stderr=json_to_stdout(json_path))  # --json -: stdout holds the JSON alone
    table = Table(title=f"{model.name} on {report.params.name} ({report.params.citation}), per inference, batch 1")
    for col in (
        "layer",
        "tiles",
        "vectors x steps",
        "MVMs",
        "DAC",
        "ADC",
        "digital ops",
        "digital MACs",
        "energy (nJ)",
        "latency (µs)",
    ):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for lc in report.layers:
        c = lc.counts
        table.add_row(
            c.name if len(c.name) <= 40 else "…" + c.name[-39:],
            str(c.tiles),
            f"{c.vectors} x {c.steps}",
            f"{c.mvms:,}",
            f"{c.dac_conversions:,}",
            f"{c.adc_conversions:,}",
            f"{c.digital_ops:,}",
            f"{c.digital_macs:,}",
            f"{lc.energy_j * 1e9:.4g}",
            f"{lc.latency_s * 1e6:.4g}",
        )
    table.add_row(
        "total",
        str(tot["tiles"]),
        "",
        f"{tot['mvms']:,}",
        f"{tot['dac_conversions']:,}",
        f"{tot['adc_conversions']:,}",
        f"{tot['digital_ops']:,}",
        f"{tot['digital_macs']:,}",
        f"{tot['energy_j'] * 1e9:.4g}",
        f"{tot['latency_s'] * 1e6:.4g}",
    )
    console.print(table)
    base = tot["baseline"]
    ratio = base["analog_over_baseline"]
    console.print(
        f"area {tot['area_mm2']:.4g} mm² ({tot['tiles']} tiles); latency {tot['latency_s'] * 1e6:.4g} µs (tiles of a "
        f"layer in parallel, layers in sequence); pipelined across inferences: one every "
        f"{tot['pipelined_period_s'] * 1e6:.4g} µs; {tot['energy_per_mac_j'] * 1e12:.4g} pJ/MAC over "
        f"{tot['macs']:,} MACs; dims {report.counts.dims}."
    )
    console.print(
        f"digital baseline {base['name']}: {base['energy_j'] * 1e9:.4g} nJ ({base['formula']}; {base['source']}); "
        f"analog / baseline = {ratio:.3g}"
        if ratio is not None
        else "digital baseline: no MACs"
    )
    for note in report.notes:
        console.print(f"note: {note}")
    if json_path is not None:
        write_json(json_path, report.to_dict(), indent=1)
        if not json_to_stdout(json_path):
            console.print(f"wrote {json_path}")
    if plot is not None:
        plot_energy_per_layer(report, plot)
        console.print(f"wrote {plot}")


def cost_summary(model: str | Path, params: str = "ibm64core") -> str:
    """One line for the compile report: tiles, MVMs, energy, latency, area per inference on ``params``.

    Returns an explanation instead when the model cannot be costed (the compile has succeeded anyway).
    """
    from anacompile.cost.model import estimate_cost
    from anacompile.errors import AnacompileError

    try:
        tot = estimate_cost(model, params).totals
    except (AnacompileError, ValueError, OSError) as err:
        return f"cost: not estimated ({err})"
    return (
        f"cost on {params} (batch 1, symbolic dims 128; `anacompile cost` for details): {tot['tiles']} tiles, "
        f"{tot['mvms']:,} MVMs, {tot['energy_j'] * 1e9:.4g} nJ, {tot['latency_s'] * 1e6:.4g} µs, "
        f"{tot['area_mm2']:.4g} mm² per inference"
    )
