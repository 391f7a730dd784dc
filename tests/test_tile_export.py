"""Tile maps (export-tiles): the layer weights rebuilt from the export alone; layout.json valid by its schema."""

from __future__ import annotations

import csv
import json

import jsonschema
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from anacompile.cli import main
from anacompile.errors import OutputError, UnsupportedModelError
from anacompile.tile_export import export_tiles, load_tile_layout_schema


def _source_weights(path) -> dict[str, np.ndarray]:
    """W (K, N) of every Gemm of the source model, y = x W, read with onnx alone."""
    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    out = {}
    for node in model.graph.node:
        if node.op_type == "Gemm":
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            w = inits[node.input[1]]
            out[node.name.strip("/").replace("/", "_")] = w.T if trans_b else w
    return out


def _rebuild(folder, layout, layer) -> np.ndarray:
    """The layer's weights from the export alone: numpy and layout.json, no anacompile."""
    f = np.array([p["significance"] for p in layout["conductances"]["pairs"]])
    gain = layout["conductances"]["gain_us"]
    k, n = layer["weight_shape"]
    w = np.full((k, n), np.nan)
    for tile in layer["tiles"]:
        data = np.load(folder / tile["file"])
        g = data["g_target_us"].astype(np.float64)
        (r0, r1), (c0, c1) = tile["weight_rows"], tile["weight_columns"]
        assert g.shape == (len(f), 2, r1 - r0, c1 - c0)
        assert np.all((g >= layout["device"]["g_min_us"]) & (g <= layout["device"]["g_max_us"]))
        w[r0:r1, c0:c1] = np.tensordot(f, g[:, 0] - g[:, 1], axes=1) / gain * data["col_scale"]
    assert not np.isnan(w).any()  # the tiles cover W exactly once
    return w


@pytest.mark.parametrize(
    ("strategy", "tile"), [("single", []), ("dual", ["--set", "tile_rows=48", "--set", "tile_cols=32"])]
)
def test_export_rebuilds_weights_and_validates(tmp_path, mlp_hwa, strategy, tile):
    compiled = tmp_path / "mlp.analog.onnx"
    assert (
        main(["compile", str(mlp_hwa), "-o", str(compiled), "--periphery", "ideal", "--strategy", strategy, *tile]) == 0
    )
    out = tmp_path / "tiles"
    assert main(["export-tiles", str(compiled), "-o", str(out), "--csv"]) == 0
    layout = json.loads((out / "layout.json").read_text())
    jsonschema.validate(layout, load_tile_layout_schema())
    source = _source_weights(mlp_hwa)
    assert [layer["name"] for layer in layout["layers"]] == list(source)
    for layer in layout["layers"]:
        w = source[layer["name"]]
        rebuilt = _rebuild(out, layout, layer)
        # exact to the float32 precision of the stored targets: within one ulp of the column's scale
        ulp = np.spacing(np.abs(w).max(axis=0, keepdims=True).astype(np.float32))
        assert np.all(np.abs(rebuilt - w) <= ulp), layer["name"]
        assert np.mean(rebuilt.astype(np.float32) == w) > 0.8  # most weights bit for bit
    if tile:  # 64 x 128 on 48-row, 32-column tiles: 2 x 4 tiles, the second row tile 16 rows
        fc1 = layout["layers"][0]
        assert (fc1["row_tiles"], fc1["column_tiles"], len(fc1["tiles"])) == (2, 4, 8)
        assert fc1["tiles"][-1]["weight_rows"] == [48, 64] and fc1["tiles"][-1]["weight_columns"] == [96, 128]
    # the CSV lists the same devices as the NPZ
    tile0 = layout["layers"][1]["tiles"][0]
    g = np.load(out / tile0["file"])["g_target_us"]
    with open(out / tile0["csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == g.size == tile0["devices"]
    for row in rows[:: max(1, len(rows) // 50)]:
        p, s = int(row["pair"]), 0 if row["polarity"] == "G+" else 1
        assert float(row["g_target_us"]) == pytest.approx(
            g[p, s, int(row["tile_row"]), int(row["tile_column"])], rel=1e-8
        )
        assert int(row["weight_row"]) == int(row["tile_row"]) + tile0["weight_rows"][0]


def test_schema_rejects_a_broken_layout(tmp_path, compiled_mlp):
    layout = export_tiles(compiled_mlp, tmp_path / "t")
    schema = load_tile_layout_schema()
    jsonschema.validate(layout, schema)
    broken = json.loads(json.dumps(layout))
    del broken["layers"][0]["tiles"][0]["weight_rows"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
    broken = dict(layout, schema_version=2)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
    scales = np.load(tmp_path / "t" / layout["layers"][0]["tiles"][0]["file"])
    assert {"g_target_us", "col_scale", "out_scale", "in_scale", "input_range", "output_range"} <= set(scales.files)
    assert float(scales["input_range"]) == layout["layers"][0]["tiles"][0]["input_range"] > 0


def test_export_refuses(tmp_path, compiled_mlp, mlp_hwa):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep")
    with pytest.raises(OutputError, match="not an empty folder"):
        export_tiles(compiled_mlp, tmp_path / "full")
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["x"]
    with pytest.raises(UnsupportedModelError, match="no anacompile report"):
        export_tiles(mlp_hwa, tmp_path / "a")
    dep = tmp_path / "dep.onnx"
    assert main(["compile", str(mlp_hwa), "-o", str(dep), "--target", "deploy"]) == 0
    with pytest.raises(UnsupportedModelError, match="deployment form"):
        export_tiles(dep, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
