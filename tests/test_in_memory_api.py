"""The public API on in-memory models: ModelProto / onnx_ir.Model in, compiled model out, no file written."""

from __future__ import annotations

import shutil
import tempfile

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from anacompile.cli import main
from anacompile.compiler import compile_model, read_report
from anacompile.errors import AnacompileError, ConfigError, ModelLoadError
from anacompile.evaluate.monte_carlo import evaluate
from anacompile.model_io import model_file


@pytest.fixture()
def no_files(tmp_path, monkeypatch):
    """Run in an empty working directory with a private temporary folder; ``no_files.start()`` begins the
    watch, ``no_files.check()`` asserts that since then no temporary folder was made and both stay empty."""
    work, temp = tmp_path / "work", tmp_path / "temp"
    work.mkdir()
    temp.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    created = []
    real_mkdtemp = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: created.append(1) or real_mkdtemp(*a, **k))

    class Watch:
        @staticmethod
        def start() -> None:
            created.clear()

        @staticmethod
        def check() -> None:
            assert list(work.iterdir()) == [] and list(temp.iterdir()) == []
            assert created == [], "a temporary folder was made"

    return Watch


def _cli_output(tmp_path, source, *args) -> bytes:
    out = tmp_path / "cli.analog.onnx"
    assert main(["compile", str(source), "-o", str(out), *args]) == 0
    return out.read_bytes()


def test_model_proto_in_compiled_proto_out_same_bytes_as_cli(tmp_path, mlp_hwa, no_files):
    source = tmp_path / "src" / "mlp.onnx"
    source.parent.mkdir()
    shutil.copy(mlp_hwa, source)
    expected = _cli_output(tmp_path / "src", source, "--calibration", "digits", "--seed", "3", "--chip", "1")
    proto = onnx.load(str(source))
    before = proto.SerializeToString()
    no_files.start()
    compiled, report = compile_model(proto, calibration="digits", seed=3, chip=1)
    assert isinstance(compiled, onnx.ModelProto)
    assert compiled.SerializeToString() == expected  # byte for byte
    assert proto.SerializeToString() == before  # the caller's model is untouched
    assert report.output == "" and "in-memory ModelProto" in report.source
    assert read_report(compiled).layers == report.layers
    no_files.check()


def test_ir_model_in_ir_model_out_same_bytes_as_cli(tmp_path, mlp_fp, no_files):
    expected = _cli_output(tmp_path, mlp_fp, "--seed", "5", "--strategy", "dual")
    model = ir.load(str(mlp_fp))
    no_files.start()
    compiled, report = compile_model(model, seed=5, strategy="dual")
    assert isinstance(compiled, ir.Model)
    assert ir.serde.serialize_model(compiled).SerializeToString() == expected
    assert report.totals["analog_layers"] == 2
    assert all(n.domain == "" for n in model.graph)  # the source model is still the digital one
    no_files.check()


def test_seed_changes_the_bytes(mlp_hwa):
    a, _ = compile_model(onnx.load(str(mlp_hwa)), seed=1)
    b, _ = compile_model(onnx.load(str(mlp_hwa)), seed=2)
    assert a.SerializeToString() != b.SerializeToString()


def test_external_data_model_in_memory(tmp_path, mlp_hwa):
    """An onnx-ir model whose tensors live in an external data file compiles through a private folder and
    comes back with its tensors in memory, equal to the compile of the same model held in memory."""
    ext = tmp_path / "ext" / "mlp.onnx"
    ext.parent.mkdir()
    onnx.save_model(
        onnx.load(str(mlp_hwa)), str(ext), save_as_external_data=True, location="mlp.onnx.data", size_threshold=0
    )
    compiled, _ = compile_model(ir.load(str(ext)), seed=4)
    reference, _ = compile_model(onnx.load(str(mlp_hwa)), seed=4)
    got = {v.name: v.const_value.numpy() for v in compiled.graph.initializers.values()}
    assert not any(isinstance(v.const_value, ir.ExternalTensor) for v in compiled.graph.initializers.values())
    want = {t.name: onnx.numpy_helper.to_array(t) for t in reference.graph.initializer}
    assert got.keys() == want.keys()
    for name, array in want.items():
        np.testing.assert_array_equal(got[name], array, err_msg=name)


def test_written_output_from_memory(tmp_path, mlp_hwa):
    out = tmp_path / "m.analog.onnx"
    report = compile_model(onnx.load(str(mlp_hwa)), out, seed=3)
    assert out.is_file() and report.output == str(out)
    same, _ = compile_model(onnx.load(str(mlp_hwa)), seed=3)
    assert out.read_bytes() == same.SerializeToString()


def test_evaluate_in_memory_equals_by_path(compiled_mlp):
    by_path = evaluate(compiled_mlp, times="1s,1d", chips=2)
    in_memory = evaluate(onnx.load(str(compiled_mlp)), times="1s,1d", chips=2)
    assert in_memory.accuracy == by_path.accuracy and in_memory.baseline == by_path.baseline
    assert "in-memory" in in_memory.model


def test_bad_in_memory_inputs(tmp_path, mlp_hwa):
    with pytest.raises(ConfigError, match="model: expected a path"):
        compile_model(b"not a model")
    with pytest.raises(ModelLoadError, match="no graph"):
        compile_model(onnx.ModelProto())
    ext = tmp_path / "mlp.onnx"
    onnx.save_model(onnx.load(str(mlp_hwa)), str(ext), save_as_external_data=True, size_threshold=0)
    dangling = onnx.load(str(ext), load_external_data=False)
    with pytest.raises(ModelLoadError, match="external data"), model_file(dangling):
        pass
    with pytest.raises(AnacompileError, match="external data"):
        compile_model(dangling)


def test_sensitivity_and_placement_in_memory(tmp_path, mlp_hwa):
    import anacompile
    from anacompile.placement.sensitivity import sensitivity

    kw = {"metric": "accuracy", "data": "digits", "times": "1d", "chips": 1, "seed": 2}
    by_path = sensitivity(mlp_hwa, **kw).to_dict()
    in_memory = sensitivity(onnx.load(str(mlp_hwa)), **kw).to_dict()
    assert in_memory["layers"] == by_path["layers"] and "in-memory" in in_memory["model"]
    compiled, report = anacompile.compile_model(
        ir.load(str(mlp_hwa)), accuracy_budget=1.0, metric="accuracy", data="digits", chips=2, verify_chips=2
    )
    assert isinstance(compiled, ir.Model) and report.placement.meets_budget and report.output == ""
    assert list(tmp_path.iterdir()) == []


def test_cost_in_memory_equals_by_path(compiled_mlp):
    from anacompile.cost.model import estimate_cost

    by_path = estimate_cost(compiled_mlp)
    in_memory = estimate_cost(onnx.load(str(compiled_mlp)))
    assert "in-memory" in in_memory.model
    in_memory.model = in_memory.counts.model = by_path.model
    assert in_memory == by_path
