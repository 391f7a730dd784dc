"""Typed per-layer specs of the compiled graph: the tile constants and each analog layer's geometry.

These replace the string-keyed constants dict and the rule "``g_target.ndim == 5`` means tiled" that were
spread over the compiler and the runtime: the rule lives in :meth:`LayerSpec.from_plan_shape` alone.
"""

from __future__ import annotations

from collections.abc import ItemsView
from dataclasses import asdict, dataclass, fields

__all__ = ["PLAN_RANK_ONE_TILE", "PLAN_RANK_TILED", "LayerSpec", "TileConstants"]

PLAN_RANK_ONE_TILE = 4
"""Rank of ``L.g_target`` of a layer on one row tile: (P, 2, rows, N)."""
PLAN_RANK_TILED = 5
"""Rank of ``L.g_target`` of a layer over several row tiles: (P, 2, n_tiles, rows, N)."""


@dataclass(frozen=True)
class TileConstants:
    """The scalars of the tile arithmetic in DAC/ADC code units (the ``AnalogMatMul`` attributes but ``seed``).

    Computed from a periphery by :func:`anacompile.crossbar.reference.tile_constants` (which documents the
    formulas); the numpy reference, the ONNX body and the session read the same values.
    """

    dac_step: float
    dac_levels: float
    code_gain: float
    adc_step: float
    code_bound: float
    ir_drop: float
    ir_a_scale: float
    noise_k1: float
    noise_k2: float
    noise_std: float

    def as_attributes(self) -> dict[str, float]:
        """Attribute name -> value, as stored on an ``AnalogMatMul`` node."""
        return {k: float(v) for k, v in asdict(self).items()}

    # read-only mapping access, for code written against the former dict
    def __getitem__(self, key: str) -> float:
        if key not in self.keys():
            raise KeyError(key)
        return float(getattr(self, key))

    def keys(self) -> tuple[str, ...]:
        """Field names."""
        return tuple(f.name for f in fields(self))

    def items(self) -> ItemsView[str, float]:
        """(name, value) pairs."""
        return self.as_attributes().items()


@dataclass(frozen=True)
class LayerSpec:
    """One analog layer of a compiled graph: its name, position and geometry.

    Attributes:
        name: the layer (also the ``AnalogMatMul`` node's name and its initializers' prefix).
        index: position among the model's analog layers in graph order (subgraphs included); keys the
            layer's random streams.
        pairs: device pairs P per weight.
        n_tiles: row tiles; ``tiled`` layers (n_tiles > 1) keep a tile axis in every per-layer tensor.
        rows: rows per tile as stored (K for a one-tile layer, tile_rows for a tiled one).
        n_out: columns N.
        tiled: the layer runs the ``tiled`` overload.
    """

    name: str
    index: int
    pairs: int
    n_tiles: int
    rows: int
    n_out: int
    tiled: bool

    @classmethod
    def from_plan_shape(cls, name: str, index: int, shape: tuple[int, ...] | list[int]) -> LayerSpec:
        """The spec of a layer from the shape of its programming plan ``L.g_target``."""
        shape = tuple(int(d) for d in shape)
        if len(shape) == PLAN_RANK_TILED:
            return cls(name, index, shape[0], shape[2], shape[3], shape[4], True)
        if len(shape) == PLAN_RANK_ONE_TILE:
            return cls(name, index, shape[0], 1, shape[2], shape[3], False)
        raise ValueError(f"{name}: programming plan of shape {list(shape)}; expected (P, 2, [n_tiles,] rows, N).")

    @property
    def tile_axis(self) -> tuple[int, ...]:
        """The leading tile axis of per-layer tensors: ``(n_tiles,)`` when tiled, else ``()``."""
        return (self.n_tiles,) if self.tiled else ()

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """Shape of the effective weights ``L.w_eff``: ([n_tiles,] rows, N)."""
        return (*self.tile_axis, self.rows, self.n_out)

    @property
    def scale_shape(self) -> tuple[int, ...]:
        """Shape of the output scales ``L.scale`` and ``L.out_scale``: ([n_tiles,] 1, N)."""
        return (*self.tile_axis, 1, self.n_out)
