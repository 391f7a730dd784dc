"""Tile maps for a real chip: what to program into which crossbar tile, from a compiled model.

``anacompile export-tiles model.analog.onnx -o tiles/`` writes, for every physical tile of every analog layer,
one NPZ file (and with ``--csv`` one CSV file) and, for the whole model, one ``layout.json`` that validates
against the JSON Schema :data:`TILE_LAYOUT_SCHEMA` (``anacompile/schemas/tile_layout.schema.json``,
``schema_version`` :data:`TILE_LAYOUT_VERSION`).

A layer computes y = x W + b with W of shape (K, N) (for a Conv, K runs over (input channel, kernel offset),
channel-major; for a recurrent cell, one layer per gate matrix). Its tiles form a grid of row tiles (blocks of
K, each with its own DAC input range and ADC; partial sums are added digitally) by column tiles (blocks of
``tile_cols`` columns of N). Tile (r, c) holds the weight block ``W[rows[0]:rows[1], columns[0]:columns[1]]``
on its devices at rows 0..(rows[1]-rows[0])-1 and columns 0..(columns[1]-columns[0])-1; the rest of the tile is
unused.

Per tile NPZ (``<layer>.r<r>c<c>.npz``), float32 (float64 for the scalars):

* ``g_target_us`` (P, 2, rows, columns): target conductance of every device in µS; axis 0 the differential
  pair, least significant first (significance F_p in ``layout.json``), axis 1 the polarity (0 = G+, 1 = G-);
* ``col_scale`` (columns,): gamma, the digital per-column output scale (max |W| of the column in the tile);
* ``out_scale`` (columns,): the digital scale the ADC output (in ADC codes) is multiplied by, gamma D alpha_in;
* ``in_scale`` (): the digital scale applied to the input before the DAC, 1 / (alpha_in d);
* ``input_range`` (): alpha_in, the input that maps to the DAC's full scale (static ranges; 1.0 with abs-max
  noise management, where the range is each vector's abs-max, see ``input_range_mode``);
* ``output_range`` (columns,): the layer output at which the ADC saturates, adc_bound gamma alpha_in
  (absent when the ADC is unbounded).

Per layer NPZ (``<layer>.npz``): ``bias`` (N,), added digitally after the partial sums.

The weights follow from the export alone (Mackin et al. 2019; reference/papers.md, "Differential pairs and
significance"):

    W[rows, columns] = col_scale * sum_p F_p (G+_p - G-_p) / gain_us

with ``gain_us`` and F_p in ``layout.json``; noise off (the targets), this is the compiler's own decode.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import tempfile
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from anacompile import contract, devices
from anacompile._version import __version__
from anacompile.contract import read_report
from anacompile.crossbar.periphery import InputRange, Periphery
from anacompile.crossbar.reference import layer_scales
from anacompile.errors import OutputError, UnsupportedModelError
from anacompile.mapping.registry import mapping_from_dict
from anacompile.model_io import ModelInput, model_label, read_model

__all__ = ["TILE_LAYOUT_SCHEMA", "TILE_LAYOUT_VERSION", "export_tiles", "load_tile_layout_schema"]

logger = logging.getLogger(__name__)

TILE_LAYOUT_VERSION = 1
"""``schema_version`` of ``layout.json``; raised on any incompatible change of the layout or the files."""
TILE_LAYOUT_SCHEMA = "tile_layout.schema.json"
"""File name of the layout's JSON Schema inside the package (``anacompile/schemas/``)."""
WEIGHT_FORMULA = "W[rows, columns] = col_scale * sum_p F_p * (g_target_us[p, 0] - g_target_us[p, 1]) / gain_us"


def load_tile_layout_schema() -> dict[str, Any]:
    """The JSON Schema of ``layout.json`` (shipped in the package)."""
    return json.loads(files("anacompile.schemas").joinpath(TILE_LAYOUT_SCHEMA).read_text(encoding="utf-8"))


def export_tiles(
    model: ModelInput, out_dir: str | os.PathLike[str], *, csv_files: bool = False, force: bool = False
) -> dict[str, Any]:
    """Write the tile map of a compiled model (simulation form) into ``out_dir``; return the layout.

    Args:
        model: compiled model (``anacompile compile`` output, simulation form): path, ModelProto or onnx-ir Model.
        out_dir: folder to create (it must not exist, or be empty, unless ``force``).
        csv_files: also write one CSV per tile (one row per device).
        force: write into an existing non-empty folder, replacing the files of the same names.

    Returns:
        The layout (what ``layout.json`` holds).

    Raises:
        UnsupportedModelError: not a compiled model, or a deployment form (which has no programming plans).
        OutputError: the folder's parent is missing, or the folder is not empty and ``force`` is not set.
    """
    out = Path(out_dir)
    if not out.parent.resolve().is_dir():
        raise OutputError(f"Output folder {out.parent} does not exist; create it first.")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not force)):
        raise OutputError(f"Output {out} exists and is not an empty folder; pass --force to write into it.")
    proto = read_model(model, load_external_data=True)
    meta = {p.key: p.value for p in proto.metadata_props}
    if meta.get("anacompile.target") == "deploy":
        raise UnsupportedModelError(
            f"{model_label(model)} is a deployment form, which has no programming plans; "
            "export the tiles of the simulation form (compile without --target)."
        )
    report = read_report(proto)
    device = devices.from_dict(report.device)
    mapping = mapping_from_dict(report.strategy)
    periphery = Periphery.from_dict(report.periphery)
    gain_us = float(mapping.gain_us(device.g_min_us, device.g_max_us))
    inits = {t.name: t for t in proto.graph.initializer}
    static = periphery.input_range is InputRange.STATIC and periphery.dac_bits is not None
    layout: dict[str, Any] = {
        "schema": "anacompile.tile-layout",
        "schema_version": TILE_LAYOUT_VERSION,
        "anacompile_version": __version__,
        "model": Path(model_label(model)).name,
        "device": {
            "name": report.device.get("name", ""),
            "g_min_us": float(device.g_min_us),
            "g_max_us": float(device.g_max_us),
        },
        "strategy": report.strategy,
        "conductances": {
            "unit": "uS",
            "axes": ["pair", "polarity", "row", "column"],
            "polarity": ["G+", "G-"],
            "pairs": [{"pair": p, "significance": float(f)} for p, f in enumerate(mapping.significance)],
            "gain_us": gain_us,
            "weight_formula": WEIGHT_FORMULA,
        },
        "tile": {"rows": periphery.tile_rows, "columns": periphery.tile_cols},
        "periphery": report.periphery,
        "input_range_mode": "static" if static else "absmax",
        "seed": report.seed,
        "layers": [],
    }
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for layer in (lay for lay in report.layers if lay.analog):
            layout["layers"].append(_export_layer(layer, inits, periphery, staging, csv_files))
        (staging / "layout.json").write_text(json.dumps(layout, indent=1), encoding="utf-8")
        out.mkdir(exist_ok=True)
        for item in sorted(staging.iterdir()):
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("wrote the tile map of %d layers to %s", len(layout["layers"]), out)
    return layout


def _array(inits: dict, name: str) -> np.ndarray:
    import onnx

    if name not in inits:
        raise UnsupportedModelError(
            f"The compiled model lacks initializer {name!r}; recompile it with this anacompile."
        )
    return onnx.numpy_helper.to_array(inits[name])


def _export_layer(layer, inits: dict, periphery: Periphery, folder: Path, csv_files: bool) -> dict[str, Any]:
    name = layer.name
    g = _array(inits, f"{name}.{contract.G_TARGET}").astype(np.float32)
    col_scale = _array(inits, f"{name}.{contract.COL_SCALE}")
    in_range = _array(inits, f"{name}.{contract.IN_RANGE}")
    if g.ndim == 4:  # a layer on one row tile is stored without the tile axis
        g, col_scale, in_range = g[:, :, None], col_scale[None], in_range[None]
    in_scale, out_scale = layer_scales(col_scale, in_range, periphery)
    k, n = (int(d) for d in layer.weight_shape)
    n_row_tiles, tile_rows = int(g.shape[2]), int(g.shape[3])
    tile_cols = periphery.tile_cols
    static = periphery.input_range is InputRange.STATIC and periphery.dac_bits is not None
    bias_file = f"{name}.npz"
    np.savez(folder / bias_file, bias=_array(inits, f"{name}.{contract.BIAS}").astype(np.float32))
    tiles = []
    for r in range(n_row_tiles):
        r0, r1 = r * tile_rows, min(k, (r + 1) * tile_rows)
        alpha_in = float(in_range[r].reshape(-1)[0]) if static else 1.0
        for c in range(-(-n // tile_cols)):
            c0, c1 = c * tile_cols, min(n, (c + 1) * tile_cols)
            stem = f"{name}.r{r}c{c}"
            arrays = {
                "g_target_us": np.ascontiguousarray(g[:, :, r, : r1 - r0, c0:c1]),
                "col_scale": col_scale[r].reshape(-1)[c0:c1].astype(np.float32),
                "out_scale": out_scale[r].reshape(-1)[c0:c1].astype(np.float32),
                "in_scale": np.float64(in_scale[r].reshape(-1)[0]),
                "input_range": np.float64(alpha_in),
            }
            if periphery.adc_bound is not None:
                arrays["output_range"] = (periphery.adc_bound * arrays["col_scale"] * alpha_in).astype(np.float32)
            np.savez(folder / f"{stem}.npz", **arrays)
            entry = {
                "id": stem,
                "row_tile": r,
                "column_tile": c,
                "file": f"{stem}.npz",
                "weight_rows": [r0, r1],
                "weight_columns": [c0, c1],
                "input_range": alpha_in,
                "devices": int(np.prod(arrays["g_target_us"].shape)),
            }
            if csv_files:
                entry["csv"] = csv_name = f"{stem}.csv"
                _write_csv(folder / csv_name, arrays["g_target_us"], r0, c0)
            tiles.append(entry)
    return {
        "name": name,
        "op": layer.op,
        "weight_shape": [k, n],
        "row_tiles": n_row_tiles,
        "column_tiles": -(-n // tile_cols),
        "rows_per_row_tile": tile_rows,
        "bias_file": bias_file,
        "tiles": tiles,
    }


def _write_csv(path: Path, g: np.ndarray, r0: int, c0: int) -> None:
    """One row per device: pair, polarity, tile row and column, source weight row and column, target µS."""
    pairs, _, rows, cols = g.shape
    p, s, i, j = (
        a.reshape(-1)
        for a in np.meshgrid(np.arange(pairs), np.arange(2), np.arange(rows), np.arange(cols), indexing="ij")
    )
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["pair", "polarity", "tile_row", "tile_column", "weight_row", "weight_column", "g_target_us"])
        writer.writerows(
            zip(
                p.tolist(),
                np.where(s == 0, "G+", "G-").tolist(),
                i.tolist(),
                j.tolist(),
                (i + r0).tolist(),
                (j + c0).tolist(),
                [f"{v:.9g}" for v in g.reshape(-1)],
                strict=True,
            )
        )
