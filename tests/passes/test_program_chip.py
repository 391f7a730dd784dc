"""ProgramChipPass: programmed conductances, drift exponents and the drift-compensation reference."""

from __future__ import annotations

import numpy as np

from anacompile.crossbar.periphery import DriftCompensation
from anacompile.mapping import SinglePairMapping
from anacompile.passes import MapConductancesPass, MarkAnalogOpsPass, PartitionWeightsPass, ProgramChipPass
from tests._support.passes import PCM, STANDARD, assert_idempotent, mlp, op_counts, plans, run_truthfully

M = SinglePairMapping()


def _mapped():
    model = mlp()
    for p in (MarkAnalogOpsPass(), PartitionWeightsPass(STANDARD), MapConductancesPass(PCM, M)):
        p(model)
    return model


def test_programs_every_layer_once_reproducibly():
    model = _mapped()
    counts = op_counts(model)
    assert run_truthfully(ProgramChipPass(PCM, M, DriftCompensation.GLOBAL, seed=3, chip=1), model)
    assert op_counts(model) == counts
    first = {name: (plan.g_prog.copy(), plan.nu.copy()) for name, plan in plans(model).items()}
    for plan in plans(model).values():
        assert plan.g_prog.shape == plan.nu.shape == plan.g_target.shape
        assert plan.g_prog.dtype == np.float32 and plan.g_prog.min() >= 0 and plan.nu.min() >= 0
        assert not np.array_equal(plan.g_prog, plan.g_target)  # programming noise
        assert plan.gdc_ref is not None
    assert_idempotent(ProgramChipPass(PCM, M, DriftCompensation.GLOBAL, seed=3, chip=1), model)
    again = _mapped()  # same seed and chip: the same chip
    ProgramChipPass(PCM, M, DriftCompensation.GLOBAL, seed=3, chip=1)(again)
    for name, plan in plans(again).items():
        np.testing.assert_array_equal(plan.g_prog, first[name][0])
        np.testing.assert_array_equal(plan.nu, first[name][1])
    other = _mapped()  # another chip: other draws
    ProgramChipPass(PCM, M, DriftCompensation.GLOBAL, seed=3, chip=2)(other)
    assert not np.array_equal(plans(other)["fc1"].g_prog, first["fc1"][0])
