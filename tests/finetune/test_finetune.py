"""anacompile.finetune end to end on the digits MLP (a few seconds of training), the CLI, and the torch-less path."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import numpy_helper

torch = pytest.importorskip("torch", reason="the finetune tests need the train extra (torch==2.13.0)")

import anacompile  # noqa: E402
from anacompile.cli import main  # noqa: E402
from anacompile.compiler import compile_model  # noqa: E402
from anacompile.errors import AnacompileError, DataError  # noqa: E402
from anacompile.finetune import FinetuneConfig, finetune  # noqa: E402
from anacompile.finetune._torch import MissingDependencyError, require_torch  # noqa: E402
from anacompile.finetune.cli_commands import finetune_command  # noqa: E402
from tests.conftest import MODELS, ROOT  # noqa: E402

FAST = FinetuneConfig(epochs=2, max_samples=300, patience=0, loss="mse")


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "mlp.hwa.onnx"
    result = finetune(MODELS / "digits_mlp_fp.onnx", "digits", out, config=FAST, show_progress=False, threads=1)
    return out, result


def test_tuned_model_is_the_source_graph_with_new_weights(tuned):
    out, result = tuned
    src, got = onnx.load(MODELS / "digits_mlp_fp.onnx"), onnx.load(out)
    onnx.checker.check_model(str(out), full_check=True)
    assert [n.SerializeToString() for n in got.graph.node] == [n.SerializeToString() for n in src.graph.node]
    assert got.graph.input == src.graph.input and got.graph.output == src.graph.output
    assert got.opset_import == src.opset_import and got.ir_version == src.ir_version
    old = {i.name: numpy_helper.to_array(i) for i in src.graph.initializer}
    new = {i.name: numpy_helper.to_array(i) for i in got.graph.initializer}
    assert old.keys() == new.keys()
    assert all(old[k].shape == new[k].shape and old[k].dtype == new[k].dtype for k in old)
    assert any(not np.array_equal(old[k], new[k]) for k in old)
    assert result.analog_layers == ["fc1_Gemm", "fc2_Gemm"]
    assert result.export_max_abs_diff < 1e-4  # onnxruntime on the exported file = the torch module
    assert result.val_loss_after <= result.val_loss_before
    assert result.best_epoch == result.epochs_run == 2  # patience 0: the whole schedule, final weights kept
    assert result.samples_train + result.samples_val == 300


def test_weights_are_clipped_to_the_configured_bound(tuned):
    got = {i.name: numpy_helper.to_array(i) for i in onnx.load(tuned[0]).graph.initializer}
    w = got["fc1.weight"]
    # clipped after the last step; a step later the std moved a little, so allow a small margin
    assert np.abs(w).max() <= 2.5 * w.std() * 1.05


def test_same_seed_same_weights(tuned, tmp_path):
    again = finetune(MODELS / "digits_mlp_fp.onnx", "digits", config=FAST, show_progress=False, threads=1)
    first = {i.name: numpy_helper.to_array(i) for i in onnx.load(tuned[0]).graph.initializer}
    for init in again.model.graph.initializer:
        np.testing.assert_array_equal(numpy_helper.to_array(init), first[init.name])


def test_compiler_takes_the_tuned_model(tuned, tmp_path):
    report = compile_model(tuned[0], tmp_path / "mlp.analog.onnx", calibration="digits")
    assert report.totals["analog_layers"] == 2


def test_in_memory_models_and_feed_dicts():
    proto = onnx.load(MODELS / "digits_mlp_fp.onnx")
    rng = np.random.default_rng(0)
    feeds = [{"input": rng.uniform(0, 1, (50, 64)).astype(np.float32)} for _ in range(3)]
    cfg = FinetuneConfig(epochs=1, patience=0)
    a = finetune(proto, feeds, config=cfg, show_progress=False)
    b = finetune(ir.serde.deserialize_model(proto), iter(feeds), config=cfg, show_progress=False)
    assert a.samples_train + a.samples_val == 150
    for x, y in zip(a.model.graph.initializer, b.model.graph.initializer, strict=True):
        np.testing.assert_array_equal(numpy_helper.to_array(x), numpy_helper.to_array(y))


def test_labels_add_a_task_loss_and_need_labels(tmp_path):
    with pytest.raises(DataError, match="labels"):
        finetune(
            MODELS / "digits_mlp_fp.onnx",
            [{"input": np.zeros((30, 64), np.float32)}],
            labels=True,
            config=FAST,
            show_progress=False,
        )
    res = finetune(MODELS / "digits_mlp_fp.onnx", "digits", labels=True, config=FAST, show_progress=False)
    plain = finetune(MODELS / "digits_mlp_fp.onnx", "digits", config=FAST, show_progress=False)
    assert res.history[0]["train_loss"] > plain.history[0]["train_loss"]  # distillation + cross-entropy


def test_learned_input_ranges_feed_compile(tmp_path):
    out = tmp_path / "cnn.hwa.onnx"
    cfg = FinetuneConfig(epochs=1, max_samples=200, patience=0, learn_input_ranges=True)
    res = finetune(MODELS / "digits_cnn_fp.onnx", "digits", out, config=cfg, show_progress=False)
    ranges = json.loads((tmp_path / "cnn.hwa.onnx.input_ranges.json").read_text())
    assert set(ranges) == set(res.analog_layers) and all(v > 0 for v in ranges.values())
    report = compile_model(out, tmp_path / "cnn.analog.onnx", input_ranges=tmp_path / "cnn.hwa.onnx.input_ranges.json")
    assert report.totals["analog_layers"] == 3


def test_bad_options_and_outputs_are_one_line_errors(tmp_path):
    with pytest.raises(AnacompileError, match="epochs"):
        FinetuneConfig(epochs=0)
    with pytest.raises(AnacompileError, match="loss"):
        FinetuneConfig(loss="l1")
    existing = tmp_path / "x.onnx"
    existing.write_bytes(b"keep")
    with pytest.raises(AnacompileError, match="exists"):
        finetune(MODELS / "digits_mlp_fp.onnx", "digits", existing, config=FAST)
    assert existing.read_bytes() == b"keep"


def test_cli_finetune(tmp_path, capsys):
    out = tmp_path / "t.onnx"
    code = main(
        [
            "finetune",
            str(MODELS / "digits_mlp_fp.onnx"),
            "--calibration",
            "digits",
            "-o",
            str(out),
            "--epochs",
            "1",
            "--max-samples",
            "200",
            "--json",
            "-",
        ]
    )
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["output"] == str(out) and doc["epochs_run"] == 1
    assert main(["finetune", str(MODELS / "digits_mlp_fp.onnx"), "--calibration", "digits", "-o", str(out)]) == 1
    assert "exists" in capsys.readouterr().err


def test_cli_defaults_are_the_config_defaults():
    from anacompile.finetune.train import parse_eta

    defaults = FinetuneConfig()
    params = inspect.signature(finetune_command).parameters
    assert parse_eta(params["eta"].default) == defaults.eta
    api = inspect.signature(finetune).parameters
    for name in ("periphery", "device", "strategy"):
        assert params[name].default == api[name].default, name
    assert api["periphery"].default == inspect.signature(compile_model).parameters["periphery"].default
    for name in (
        "epochs",
        "lr",
        "batch_size",
        "patience",
        "device_times",
        "val_draws",
        "noise_scope",
        "noise_draw",
        "clip_a",
        "loss",
        "temperature",
        "learn_input_ranges",
        "batchnorm",
        "seed",
        "max_samples",
    ):
        assert params[name].default == getattr(defaults, name), name


def test_simulator_is_calibrated_like_the_compiled_chip(tmp_path):
    """Input ranges and output gains of the training simulator = those compile --calibration sets on the chip."""
    from anacompile.crossbar.periphery import get_periphery
    from anacompile.feeds import load_feeds
    from anacompile.finetune.hwa import AnalogSimulator, HWANoise
    from anacompile.finetune.lowering import OnnxModule
    from anacompile.finetune.train import analog_layer_names, calibrate_simulator
    from anacompile.runtime.session import AnalogSession

    src = MODELS / "digits_lstm_fp.onnx"
    compiled = tmp_path / "m.analog.onnx"
    compile_model(src, compiled, calibration="digits")
    chip = {layer.name: layer for layer in AnalogSession(compiled).layers}
    proto = onnx.load(src)
    module = OnnxModule(proto)
    layers, _ = analog_layer_names(proto, 512)
    sim = AnalogSimulator(get_periphery("calibrated"), HWANoise(), set(layers), torch.Generator().manual_seed(0))
    module.mvm_hook = sim
    feeds, _ = load_feeds("digits", proto, part="train", limit=256)  # compile reads 256 calibration samples
    calibrate_simulator(module, sim, {k: torch.from_numpy(v) for k, v in feeds.items()}, module.input_names)
    assert len(layers) == len(chip) == 2
    for key, [(name, _)] in layers.items():
        assert float(sim.input_range(key)) == pytest.approx(float(chip[name].in_range.reshape(-1)[0]), rel=1e-5)
        g = float(chip[name].out_gain.reshape(-1)[0])
        assert abs(g - 1) > 0.2  # these layers' outputs do not meet the fixed bound: the gain matters
        assert sim.gains[key] == pytest.approx(g, rel=1e-3)


def test_python_api_is_the_cli_verb():
    assert anacompile.finetune is sys.modules["anacompile.finetune"]
    assert callable(anacompile.finetune)


def test_without_torch_the_error_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'anacompile\[train\]'"):
        require_torch()
    code = main(["finetune", str(MODELS / "digits_mlp_fp.onnx"), "--calibration", "digits", "-o", "/tmp/none.onnx"])
    assert code == 1
    err = capsys.readouterr().err
    assert "anacompile[train]" in err and "Traceback" not in err


def test_base_package_and_compiler_never_import_torch():
    code = (
        "import sys, anacompile, anacompile.cli, anacompile.compiler, anacompile.finetune, "
        "anacompile.evaluate.monte_carlo; anacompile.finetune.FinetuneConfig(); "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
