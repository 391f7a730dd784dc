"""Placement: --digital / --layer-strategy, the switchable session, sensitivity and the budgeted search.

The test model is the digits MLP (models/train_digits_mlp.py, noise-trained) with an identity layer
between its two layers (ReLU after ReLU is ReLU: the FP32 function is unchanged), so there are three
analog layers. One layer is made fragile on purpose without changing the FP32 function: its input gets an
extra column that is always zero and its weight an extra row 40x larger than its largest weight. Per-column
scaling then maps the real weights onto 1/40 of the conductance range, so programming and output noise
swamp them; only the analog chip notices.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from anacompile.errors import ConfigError
from anacompile.evaluate.datasets import load_digits_split

LAYERS = ("fc1", "mid", "fc2")
FRAGILE_FACTOR = 40.0


def _mlp(source, fragile: str | None):
    src = {t.name: numpy_helper.to_array(t) for t in onnx.load(source).graph.initializer}
    weights = {"fc1": src["fc1.weight"].T, "mid": np.eye(128, dtype=np.float32), "fc2": src["fc2.weight"].T}
    biases = {"fc1": src["fc1.bias"], "mid": np.zeros(128, np.float32), "fc2": src["fc2.bias"]}
    nodes, inits, x = [], [], "input"
    for name in LAYERS:
        w = weights[name]
        if name == fragile:
            zero = f"{name}_zero"
            nodes += [
                helper.make_node("Slice", [x, "i0", "i1", "i1"], [f"{name}_col"]),
                helper.make_node("Mul", [f"{name}_col", "f0"], [zero]),
                helper.make_node("Concat", [x, zero], [f"{name}_x"], axis=1),
            ]
            w = np.vstack([w, np.full((1, w.shape[1]), FRAGILE_FACTOR * np.abs(w).max(), np.float32)])
            x = f"{name}_x"
        inits += [
            numpy_helper.from_array(w.astype(np.float32), f"{name}.w"),
            numpy_helper.from_array(biases[name].astype(np.float32), f"{name}.b"),
        ]
        nodes += [
            helper.make_node("MatMul", [x, f"{name}.w"], [f"{name}_mm"], name=name),
            helper.make_node("Add", [f"{name}_mm", f"{name}.b"], [f"{name}_y"]),
        ]
        x = f"{name}_y"
        if name != "fc2":
            nodes.append(helper.make_node("Relu", [x], [f"{name}_r"]))
            x = f"{name}_r"
    inits += [
        numpy_helper.from_array(np.array([0], np.int64), "i0"),
        numpy_helper.from_array(np.array([1], np.int64), "i1"),
        numpy_helper.from_array(np.array(0.0, np.float32), "f0"),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp3",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def models(tmp_path_factory, mlp_hwa):
    folder = tmp_path_factory.mktemp("placement")
    out = {}
    for fragile in (None, "mid", "fc2"):
        path = folder / f"mlp3_{fragile or 'plain'}.onnx"
        onnx.save(_mlp(mlp_hwa, fragile), path)
        out[fragile] = path
    return out


TEST = load_digits_split()[1]


def digits_accuracy(run):
    """A user's metric callable: their own data loop and decoding."""
    y = run({"input": TEST.x.astype(np.float32)})[0]
    return float(np.mean(np.argmax(y, axis=1) == TEST.y))


def test_fragile_model_keeps_its_fp32_function(models):
    import onnxruntime as ort

    x = TEST.x[:50].astype(np.float32)
    plain = ort.InferenceSession(str(models[None])).run(None, {"input": x})[0]
    for fragile in ("mid", "fc2"):
        y = ort.InferenceSession(str(models[fragile])).run(None, {"input": x})[0]
        np.testing.assert_allclose(y, plain, rtol=1e-5, atol=1e-5)


def test_digital_and_layer_strategy_in_the_report(tmp_path, models):
    from anacompile.compiler import compile_model

    r = compile_model(
        models[None], tmp_path / "a.onnx", calibration="digits", digital=["mid"], layer_strategies=["fc2=dual"]
    )
    rows = {row.name: row for row in r.layers}
    assert not rows["mid"].analog and "--digital mid" in rows["mid"].reason
    assert rows["fc2"].strategy == {"name": "dual", "F": 2.0} and rows["fc1"].strategy == {}
    assert rows["fc2"].devices == 2 * 2 * 128 * 10 and rows["fc1"].devices == 2 * 64 * 128
    macs = {"fc1": 64 * 128, "mid": 128 * 128, "fc2": 128 * 10}  # one sample
    assert {n: rows[n].macs for n in LAYERS} == macs
    t = r.totals
    assert t["analog_mac_share"] == pytest.approx((macs["fc1"] + macs["fc2"]) / sum(macs.values()))
    assert t["digital_macs"] == macs["mid"] and t["devices"] == rows["fc1"].devices + rows["fc2"].devices
    with pytest.raises(ConfigError, match=r"\['nope\*'\] match no analog-capable layer"):
        compile_model(models[None], tmp_path / "b.onnx", calibration="digits", digital=["nope*"])
    with pytest.raises(ConfigError, match="NAME=SPEC"):
        compile_model(models[None], tmp_path / "b.onnx", layer_strategies=["fc2"])
    assert not (tmp_path / "b.onnx").exists()


def test_switchable_session_is_exact(tmp_path, models):
    from anacompile.compiler import compile_model
    from anacompile.runtime.session import AnalogSession

    single, dual = tmp_path / "s.onnx", tmp_path / "d.onnx"
    compile_model(models[None], single, calibration="digits")
    compile_model(models[None], dual, calibration="digits", layer_strategies={"fc2": "dual"})
    x = {"input": TEST.x[:100].astype(np.float32)}
    plain = AnalogSession(single, chip_seed=2, t_inference=86400)
    sw = AnalogSession(single, chip_seed=2, t_inference=86400, switchable=True)
    np.testing.assert_array_equal(sw.run(x)[0], plain.run(x)[0])  # switches on: the analog output itself
    sw.set_digital(LAYERS)
    np.testing.assert_array_equal(sw.run(x)[0], sw.run_digital(x)[0])  # all off: the FP32 model itself
    sw.set_digital([])
    sw.set_layer_strategy("fc2", "dual")  # re-mapped and re-programmed on the same chip
    ref = AnalogSession(dual, chip_seed=2, t_inference=86400)
    assert ref.layers[2].mapping.to_dict() == {"name": "dual", "F": 2.0}
    # the session re-encodes the weight decoded from the plan, the compiler the source weight: float32 rounding
    np.testing.assert_allclose(sw.layer_state(sw.layers[2])[0], ref.layer_state(ref.layers[2])[0], rtol=1e-5, atol=1e-7)
    sw.program(2)  # restart the chip's per-run noise stream, as a fresh session starts it
    y, y_ref = sw.run(x)[0], ref.run(x)[0]  # = compiled with --layer-strategy fc2=dual (an ADC code may flip)
    assert np.mean(np.abs(y - y_ref) > 1e-4) < 0.01 and np.array_equal(y.argmax(1), y_ref.argmax(1))
    sw.set_layer_strategy("fc2", "single")  # back: the cached programmed state, read again at t
    np.testing.assert_array_equal(sw.layer_state(sw.layers[2])[0], plain.layer_state(plain.layers[2])[0])
    assert not np.array_equal(ref.layer_state(ref.layers[2])[0], plain.layer_state(plain.layers[2])[0])
    with pytest.raises(ConfigError, match="switchable=True"):
        plain.set_digital(["fc1"])


@pytest.mark.parametrize("fragile", ["mid", "fc2"])
def test_sensitivity_finds_the_fragile_layer_reproducibly(models, fragile):
    from anacompile.placement.sensitivity import sensitivity

    kw = {"metric": digits_accuracy, "times": "1s,1d", "chips": 2, "calibration": "digits"}
    r = sensitivity(models[fragile], seed=5, **kw)
    assert r.ranking[0] == fragile
    top, rest = r.layers[0], r.layers[1:]
    assert top.loss_alone > 0.2 and all(la.loss_alone < 0.05 for la in rest)  # alone it ruins the model
    assert top.gain_digital > 0.2  # and keeping only it digital gives the accuracy back
    assert r.all_analog_mean[-1] < r.baseline - 0.2
    again = sensitivity(models[fragile], seed=5, **kw).to_dict()
    assert again == r.to_dict()
    other = sensitivity(models[fragile], seed=6, **kw).to_dict()
    assert other["layers"] != again["layers"]


def test_accuracy_budget_placement_meets_budget_and_replays(tmp_path, models):
    import anacompile
    from anacompile.cli import main

    out = tmp_path / "placed.onnx"
    report = anacompile.compile_model(
        models["mid"],
        out,
        accuracy_budget=0.02,
        at="1d",
        metric=digits_accuracy,
        calibration="digits",
        plot=tmp_path / "search.png",
    )
    p = report.placement
    assert p.meets_budget and p.verified_mean >= p.baseline - 0.02
    assert p.digital == ["mid"] or p.layer_strategies.get("mid")  # the fragile layer is dealt with
    assert "fc1" not in p.digital and "fc2" not in p.digital  # the robust ones stay analog
    assert 0 < p.analog_mac_share == report.totals["analog_mac_share"]
    assert p.verify_seed != report.seed and p.evaluations < 20
    assert (tmp_path / "search.png").stat().st_size > 0
    doc = json.loads((tmp_path / "placed.placement.json").read_text())
    assert doc["digital"] == p.digital and doc["meets_budget"]
    replay = tmp_path / "replay.onnx"
    assert (
        main(
            [
                "compile",
                str(models["mid"]),
                "-o",
                str(replay),
                "--calibration",
                "digits",
                "--digital",
                f"@{tmp_path / 'placed.placement.json'}",
            ]
        )
        == 0
    )
    assert replay.read_bytes() == out.read_bytes()  # the same compiled plan, byte for byte
    with pytest.raises(ConfigError, match="pass accuracy_budget"):
        anacompile.compile_model(models["mid"], tmp_path / "x.onnx", metric=digits_accuracy)


def test_verification_misses_step_back_and_the_last_resort_is_reported(tmp_path, models, monkeypatch):
    """Fresh chips that miss make the search step back and verify again on new seeds; when every round
    misses, the result says so, keeps one layer analog and still writes a replayable placement."""
    import anacompile.evaluate.monte_carlo as mc
    from anacompile.placement.search import STRONG, place

    real = mc.evaluate
    calls: list[int] = []

    def fresh_chips_fail(*args, **kwargs):  # the first `misses` verifications lose 0.5 on every chip
        r = real(*args, **kwargs)
        calls.append(kwargs["seed"])
        if len(calls) <= misses:
            r.accuracy = [[a - 0.5 for a in row] for row in r.accuracy]
        return r

    monkeypatch.setattr(mc, "evaluate", fresh_chips_fail)
    kw = {"accuracy_budget": 0.02, "metric": digits_accuracy, "calibration": "digits", "chips": 2, "verify_chips": 3}
    misses = 1
    p = place(models["mid"], tmp_path / "a.onnx", **kw)
    assert [r.passed for r in p.rounds] == [False, True] and p.meets_budget
    assert len({r.seed for r in p.rounds}) == 2 and 0 not in {r.seed for r in p.rounds}  # fresh seeds each round
    assert "stepped back" in " ".join(p.notes)
    first, second = p.rounds
    assert set(first.digital) <= set(second.digital)
    assert all(second.layer_strategies.get(n) == STRONG for n in ("fc1", "mid", "fc2") if n not in second.digital)
    misses, calls[:] = 99, []
    p = place(models["mid"], tmp_path / "b.onnx", max_rounds=8, **kw)
    assert not p.meets_budget and not any(r.passed for r in p.rounds)
    assert "even the last resort" in p.notes[-1] or "no placement passed" in p.notes[-1]
    assert len(p.rounds[-1].digital) == 2 and p.analog_mac_share > 0  # one layer stays analog
    assert json.loads((tmp_path / "b.placement.json").read_text())["meets_budget"] is False


def test_every_compile_option_reaches_the_budgeted_compile(tmp_path, models, monkeypatch):
    """``compile --accuracy-budget`` hands the search every compile option the plain compile takes (it
    dropped --chip-state, --target and --allow-invalid)."""
    import inspect

    import anacompile.placement.search as search
    from anacompile.cli import main
    from anacompile.compiler import compile_model

    seen: dict = {}

    def capture(model, output, **kwargs):
        seen.update(kwargs)
        raise ConfigError("captured")

    monkeypatch.setattr(search, "place", capture)
    ranges = tmp_path / "ranges.json"
    ranges.write_text(json.dumps({"fc1": 1.0}))
    given = {
        "device": "pcm",
        "periphery": "standard",
        "periphery_overrides": {"adc_bits": 6},  # parsed at the CLI's edge
        "strategy": "single",
        "calibration": "digits",
        "seed": 3,
        "chip": 2,
        "programming": "verify",
        "input_ranges": ranges,
        "target": "deploy",
        "allow_invalid": True,
        "shared_weights": "replicate",
        "chip_state": "none",
    }
    args = ["compile", str(models[None]), "-o", str(tmp_path / "o.onnx"), "--accuracy-budget", "0.5"]
    args += ["-d", "pcm", "--periphery", "standard", "--set", "adc_bits=6", "--strategy", "single"]
    args += ["--calibration", "digits", "--seed", "3", "--chip", "2", "--programming", "verify"]
    args += ["--input-ranges", str(ranges), "--target", "deploy", "--allow-invalid"]
    args += ["--shared-weights", "replicate", "--chip-state", "none"]
    assert main(args) == 1 and seen
    options = set(inspect.signature(compile_model).parameters) - {"model", "output", "force"}
    assert options <= set(seen), sorted(options - set(seen))
    for key, value in given.items():
        assert seen[key] == value, key


def test_budgeted_compile_honours_chip_state_and_target(tmp_path, models, capsys):
    """The placement verified is written in the form asked for: ``--chip-state none`` (the plan only) and
    ``--target deploy`` (verified on the simulation form, then compiled to the deployment form); replaying
    the placement JSON with the same options gives the same bytes."""
    from anacompile.cli import main
    from anacompile.compiler import read_report
    from anacompile.passes.deploy_form import META_TARGET

    common = ["--calibration", "digits", "--accuracy-budget", "0.5", "--metric", "accuracy", "--data", "digits"]
    common += ["--chips", "2", "--verify-chips", "2"]
    for extra, check in (
        (["--chip-state", "none"], lambda p: read_report(p).chip_state == "none"),
        (["--target", "deploy"], lambda p: {m.key: m.value for m in p.metadata_props}.get(META_TARGET) == "deploy"),
    ):
        out = tmp_path / f"{extra[1]}.onnx"
        capsys.readouterr()
        assert main(["compile", str(models[None]), "-o", str(out), *common, *extra]) == 0
        assert check(onnx.load(str(out))), extra
        assert "note: output ranges calibrated per tile" in capsys.readouterr().err  # the compile's notes too
        replay = tmp_path / f"{extra[1]}.replay.onnx"
        placement = f"@{tmp_path / (extra[1] + '.placement.json')}"
        args = ["compile", str(models[None]), "-o", str(replay), "--calibration", "digits", "--digital", placement]
        assert main([*args, *extra]) == 0
        assert replay.read_bytes() == out.read_bytes()
    from anacompile.placement.search import place

    with pytest.raises(ConfigError, match="--chip-state none stores no programmed chip"):  # before any search
        place(models[None], tmp_path / "x.onnx", accuracy_budget=0.5, chip_state="none", target="deploy")
    assert not (tmp_path / "x.onnx").exists()
