"""The compile report: what the compiler did with every weight-bearing op, stored in the model as JSON.

Written by the compiler into the model's metadata (``anacompile.report``), read by the runtime, ``inspect``
and the evaluation.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from anacompile._version import __version__
from anacompile.contract.names import CHIP_STATE_FULL, CHIP_STATE_NONE, CHIP_STATES, META_REPORT, SCALE, W_EFF
from anacompile.errors import UnsupportedModelError

__all__ = ["REPORT_SCHEMA_VERSION", "CompileReport", "LayerReport", "chip_state_inputs", "read_report"]

REPORT_SCHEMA_VERSION = 1
"""``schema_version`` of the compile report; its JSON Schema is ``anacompile/schemas/compile_report.schema.json``.
Fields may be added within a version (readers ignore unknown keys); removing, renaming or retyping one bumps it."""


@dataclass
class LayerReport:
    """One weight-bearing op: what the compiler did with it.

    ``weight_source`` spells where the weight comes from in the source model (``W``, or a folded chain such
    as ``Transpose(embed.weight)``). A stored tensor read by several ops (tied embeddings: a Gather and a
    MatMul) is programmed once per analog use, each on its own tiles; ``shared_with`` names the other ops.
    """

    name: str
    op: str
    analog: bool
    weight_shape: list[int] = field(default_factory=list)
    tiles: list[int] = field(default_factory=list)  # [row tiles, column tiles]
    utilisation: float = 0.0
    parameters: int = 0
    reason: str = ""
    weight_source: str = ""  # the source tensor(s) the weight is read from, with any folded ops
    shared_with: list[str] = field(default_factory=list)  # other ops reading the same stored tensor
    uses: list[str] = field(default_factory=list)  # AnalogMatMuls reading these tiles, when several share them
    macs: int = 0  # multiply-accumulates per inference (passes/count_macs.py); the op's share for a recurrent op;
    # a shared weight's row counts the MVMs of all its uses
    strategy: dict[str, Any] = field(default_factory=dict)  # its own strategy (--layer-strategy); {}: the model's
    devices: int = 0  # devices holding the weight: 2 per pair per weight
    graph: str = ""  # where the op lives: "" the main graph, else the If branch / Loop or Scan body path


@dataclass
class CompileReport:
    """The compile report, also stored as JSON in the model's ``metadata_props`` (``anacompile.report``).

    Its JSON form (:meth:`to_dict`, ``anacompile inspect --json PATH``) follows the JSON Schema shipped in the
    package (``anacompile/schemas/compile_report.schema.json``, version :data:`REPORT_SCHEMA_VERSION`), so
    tools read it without importing anacompile.
    """

    source: str
    output: str
    device: dict[str, Any]
    periphery: dict[str, Any]
    strategy: dict[str, Any]
    seed: int
    chip: int
    programming: str
    layers: list[LayerReport]
    notes: list[str] = field(default_factory=list)
    chip_state: str = CHIP_STATE_FULL  # what the file carries of the chip (contract.CHIP_STATES)
    anacompile_version: str = __version__
    schema_version: int = REPORT_SCHEMA_VERSION

    @property
    def totals(self) -> dict[str, Any]:
        """Weights mapped, share of parameters analog, tiles used."""
        analog = [layer for layer in self.layers if layer.analog]
        n_analog = sum(layer.parameters for layer in analog)
        n_all = sum(layer.parameters for layer in self.layers)
        macs_analog = sum(layer.macs for layer in analog)
        macs_all = sum(layer.macs for layer in self.layers)
        return {
            "analog_layers": len(analog),
            "digital_layers": len(self.layers) - len(analog),
            "weights_mapped": n_analog,
            "analog_parameter_share": (n_analog / n_all) if n_all else 0.0,
            "tiles": sum(layer.tiles[0] * layer.tiles[1] for layer in analog),
            "macs": macs_all,
            "digital_macs": macs_all - macs_analog,
            "analog_mac_share": (macs_analog / macs_all) if macs_all else 0.0,
            "devices": sum(layer.devices for layer in analog),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, totals included."""
        d = asdict(self)
        d["totals"] = self.totals
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompileReport:
        """Inverse of :meth:`to_dict`."""
        d = {k: v for k, v in d.items() if k != "totals"}
        d.setdefault("schema_version", 0)  # written before the report had a schema
        d["layers"] = [LayerReport(**layer) for layer in d["layers"]]
        return cls(**d)


def read_report(model: Any) -> CompileReport:
    """The compile report stored in a compiled model (``onnx.ModelProto`` or ``onnx_ir.Model``).

    Raises:
        UnsupportedModelError: the model has no report (not compiled by anacompile), or a corrupt one.
    """
    props = model.metadata_props
    meta = dict(props) if isinstance(props, dict) else {p.key: p.value for p in props}
    if META_REPORT not in meta:
        raise UnsupportedModelError("The model has no anacompile report: compile it with `anacompile compile` first.")
    try:
        d = json.loads(meta[META_REPORT])
    except (ValueError, RecursionError) as err:
        raise UnsupportedModelError(
            f"The model's anacompile report (metadata {META_REPORT!r}) is not valid JSON "
            f"({err}); the file is corrupt: recompile the source model."
        ) from err
    return _report_from_dict(d)


def chip_state_inputs(model: Any) -> set[str]:
    """The graph inputs a ``chip_state: none`` file has for the analog session to feed (``L.w_eff``,
    ``L.scale`` of every analog layer), which are not the model's data inputs; empty for any other model."""
    props = model.metadata_props
    meta = dict(props) if isinstance(props, dict) else {p.key: p.value for p in props}
    if META_REPORT not in meta or CHIP_STATE_NONE not in meta[META_REPORT]:  # cheap test before parsing
        return set()
    report = read_report(model)
    if report.chip_state != CHIP_STATE_NONE:
        return set()
    return {f"{layer.name}.{suffix}" for layer in report.layers if layer.analog for suffix in (W_EFF, SCALE)}


def _report_from_dict(d: Any) -> CompileReport:
    """The report, checked field by field against :class:`CompileReport` (a corrupt file gives one line)."""

    def bad(what: str) -> UnsupportedModelError:
        return UnsupportedModelError(f"The model's anacompile report is corrupt ({what}); recompile the source model.")

    if not isinstance(d, dict):
        raise bad(f"a JSON {type(d).__name__}, not an object")
    kinds = {
        "source": str,
        "output": str,
        "device": dict,
        "periphery": dict,
        "strategy": dict,
        "seed": int,
        "chip": int,
        "programming": str,
        "layers": list,
    }
    for key, kind in kinds.items():
        if not isinstance(d.get(key), kind) or isinstance(d.get(key), bool):
            raise bad(f"{key!r} is {type(d.get(key)).__name__ if key in d else 'missing'}, expected {kind.__name__}")
    for key in ("seed", "chip"):
        if not 0 <= d[key] < 2**63:
            raise bad(f"{key!r} = {d[key]} is out of range")
    if d.get("chip_state", CHIP_STATE_FULL) not in CHIP_STATES:  # absent: written before chip states (full)
        raise bad(f"'chip_state' = {d['chip_state']!r} is none of {', '.join(CHIP_STATES)}")
    fields = {f for f in LayerReport.__dataclass_fields__}
    for i, layer in enumerate(d["layers"]):
        if not isinstance(layer, dict) or not {"name", "op", "analog"} <= set(layer) or set(layer) - fields:
            raise bad(f"layer {i} is malformed")
    try:
        return CompileReport.from_dict(d)
    except (TypeError, ValueError, KeyError) as err:
        raise bad(str(err)) from err
