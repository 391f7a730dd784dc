"""MapConductancesPass: translate every analog layer's weights into target conductances.

Per tile and column the weights are normalised to u = W / gamma in [-1, 1] (gamma = max |W| of the
column within the tile, the digital output scale; Rasch et al. 2023), then the programming strategy
(:mod:`anacompile.mapping`) gives the target conductances of its P differential pairs.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from anacompile.mapping import ConductanceMapping, normalise_columns
from anacompile.passes._layer import Conductances, analog_layers, plan_mapping
from anacompile.passes._tensor_store import TensorStore, release

__all__ = ["MapConductancesPass"]


class MapConductancesPass(ir.passes.InPlacePass):
    """Record the :class:`~anacompile.passes._layer.Conductances` of every analog layer: ``col_scale``
    (n_tiles, 1, N) and ``g_target`` (P, 2, n_tiles, rows, N)."""

    def __init__(self, device, mapping: ConductanceMapping, store: TensorStore | None = None) -> None:
        super().__init__()
        self.device = device
        self.mapping = mapping
        self.store = store  # when given, g_target goes to its file at once (bounded memory)

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for node, plan in analog_layers(model):
            if plan.get(Conductances) is not None:
                continue
            plan.check_ready(Conductances)
            u, gamma = normalise_columns(plan.tiled_weight(), axis=1)
            mapping = plan_mapping(plan, self.mapping)
            g_target = mapping.encode(u, self.device.g_min_us, self.device.g_max_us).astype(np.float32)
            del u
            stored = g_target if self.store is None else self.store.put(f"{plan.name}.g_target", g_target)
            plan.write(Conductances(col_scale=gamma.astype(np.float32), g_target=stored))
            plan.release_weight()  # mapped: the source weight is no longer needed
            for value in node.inputs:  # unmap the source's memory-mapped external data, if any
                if value is not None:
                    release(value.const_value)
            modified = True
        return ir.passes.PassResult(model, modified=modified)
