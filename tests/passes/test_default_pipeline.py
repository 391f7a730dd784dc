"""default_pipeline: the compiler's passes composed with onnx-ir's own passes give compile_model's output."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx import helper, numpy_helper
from onnx_ir.passes import common

import anacompile.passes
from anacompile.compiler import compile_model, read_report


def _with_junk(source) -> onnx.ModelProto:
    """The source with an Identity before its first layer and a dead branch: what common passes clean up."""
    m = onnx.load(str(source))
    first = m.graph.node[0]
    x = first.input[0]
    first.input[0] = "x_identity"
    m.graph.node.insert(0, helper.make_node("Identity", [x], ["x_identity"], name="junk_identity"))
    m.graph.initializer.append(numpy_helper.from_array(np.ones(3, np.float32), "junk_const"))
    m.graph.node.append(helper.make_node("Neg", ["junk_const"], ["junk_out"], name="junk_dead"))
    return m


def test_composed_with_onnx_ir_common_passes_equals_compile_model(mlp_hwa):
    options = {"device": "pcm", "periphery": "standard", "strategy": "dual", "seed": 4, "chip": 2}
    expected, report = compile_model(onnx.load(str(mlp_hwa)), calibration="digits", **options)
    model = ir.from_proto(_with_junk(mlp_hwa))
    pipeline = ir.passes.Sequential(
        common.IdentityEliminationPass(),
        common.RemoveUnusedNodesPass(),
        anacompile.passes.default_pipeline(calibration="digits", model=model, **options),
        common.RemoveUnusedOpsetsPass(),
        common.LiftConstantsToInitializersPass(),
    )
    result = pipeline(model)
    assert result.modified
    assert not any(n.name.startswith("junk") for n in result.model.graph)
    got = ir.serde.serialize_model(result.model)
    onnx.checker.check_model(got, full_check=True)
    assert got.SerializeToString() == expected.SerializeToString()  # byte for byte
    assert read_report(got).layers == report.layers


def test_default_pipeline_order_and_deploy(mlp_hwa):
    pm = anacompile.passes.default_pipeline(target="deploy", seed=1)
    names = [type(p).__name__ for p in pm.passes]
    assert names[0] == "CountMacsPass" and names[-1] == "VerifyAnalogModelPass"
    assert names.index("RecordLayerReportsPass") < names.index("RewriteToAnalogOpsPass")
    assert names.index("MakeDeployFormPass") < names.index("WriteCompileReportPass")
    model = ir.load(str(mlp_hwa))
    pm(model)
    expected, _ = compile_model(onnx.load(str(mlp_hwa)), target="deploy", seed=1)
    assert ir.serde.serialize_model(model).SerializeToString() == expected.SerializeToString()


def test_default_pipeline_takes_every_compile_option_and_chip_state(mlp_hwa):
    """The pipeline takes compile_model's options (but the file-handling ones), chip_state included: with
    ``chip_state="none"`` it gives compile_model's plan-only bytes; a bad combination is refused up front."""
    import inspect

    import pytest

    from anacompile.errors import ConfigError

    file_handling = {"model", "output", "force", "allow_invalid"}  # compile_model's source and output checks
    options = set(inspect.signature(compile_model).parameters) - file_handling
    assert options <= set(inspect.signature(anacompile.passes.default_pipeline).parameters)
    model = ir.load(str(mlp_hwa))
    anacompile.passes.default_pipeline(calibration="digits", model=model, chip_state="none", seed=3)(model)
    expected, report = compile_model(onnx.load(str(mlp_hwa)), calibration="digits", chip_state="none", seed=3)
    assert report.chip_state == "none"
    assert ir.serde.serialize_model(model).SerializeToString() == expected.SerializeToString()
    with pytest.raises(ConfigError, match="--chip-state none stores no programmed chip"):
        anacompile.passes.default_pipeline(chip_state="none", target="deploy")
    with pytest.raises(ConfigError, match="--chip-state 'half': use one of"):
        anacompile.passes.default_pipeline(chip_state="half")
