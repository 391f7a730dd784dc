"""ProgramChipPass: program one simulated chip (programming noise, drift exponents) and its GDC reference.

The compiled file carries the programmed state of chip ``chip`` of experiment ``seed``, so that a stock
onnxruntime runs that chip at any ``t_inference`` with no anacompile installed. The analog session
re-programs any other chip from the stored targets with the same functions
(:mod:`anacompile.programming.chip_state`).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from anacompile.crossbar.periphery import DriftCompensation
from anacompile.mapping import ConductanceMapping
from anacompile.passes._layer import ChipState, analog_layers, plan_mapping
from anacompile.passes._tensor_store import TensorStore, as_array, release
from anacompile.programming.chip_state import program_layer

__all__ = ["ProgramChipPass"]


class ProgramChipPass(ir.passes.InPlacePass):
    """Record the :class:`~anacompile.passes._layer.ChipState` (``g_prog``, ``nu``, ``gdc_ref``) of every analog
    layer."""

    def __init__(
        self,
        device,
        mapping: ConductanceMapping,
        compensation: DriftCompensation,
        seed: int = 0,
        chip: int = 0,
        method: str = "gaussian",
        store: TensorStore | None = None,
    ) -> None:
        super().__init__()
        self.store = store  # when given, g_prog and nu go to its file at once (bounded memory)
        self.device = device
        self.mapping = mapping
        self.compensation = compensation
        self.seed = seed
        self.chip = chip
        self.method = method

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for index, (_, plan) in enumerate(analog_layers(model)):
            if plan.get(ChipState) is not None:
                continue
            mapping = plan_mapping(plan, self.mapping)
            gain = mapping.gain_us(self.device.g_min_us, self.device.g_max_us)
            plan.check_ready(ChipState)
            g_prog, nu, gdc_ref = program_layer(
                as_array(plan.g_target, np.float64),
                mapping.significance,
                gain,
                self.device,
                self.seed,
                self.chip,
                index,
                self.compensation,
                self.method,
            )
            release(plan.g_target)
            if self.store is None:
                plan.write(ChipState(g_prog.astype(np.float32), nu.astype(np.float32), gdc_ref))
            else:
                plan.write(
                    ChipState(
                        self.store.put(f"{plan.name}.g_prog", g_prog.astype(np.float32)),
                        self.store.put(f"{plan.name}.nu", nu.astype(np.float32)),
                        gdc_ref,
                    )
                )
            modified = True
        return ir.passes.PassResult(model, modified=modified)
