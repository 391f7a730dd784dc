"""CLI commands for deployment toolchains (registered by :mod:`anacompile.cli`): ``export-tiles``."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["export_tiles_command"]


def export_tiles_command(
    model: Path = typer.Argument(..., help="Compiled model (simulation form)."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for the tile map (created; must be empty)."),
    csv: bool = typer.Option(False, "--csv", help="Also write one CSV per tile (one row per device)."),
    force: bool = typer.Option(False, "--force", help="Write into an existing non-empty folder."),
) -> None:
    """Write per tile the target conductances (uS), weight ranges and scales, plus layout.json."""
    from rich.console import Console

    from anacompile.tile_export import export_tiles

    layout = export_tiles(model, output, csv_files=csv, force=force)
    tiles = sum(len(layer["tiles"]) for layer in layout["layers"])
    Console().print(f"wrote {tiles} tiles of {len(layout['layers'])} layers to [bold]{output}[/] (layout.json)")
