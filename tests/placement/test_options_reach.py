"""Options of ``sensitivity`` and ``compile --accuracy-budget`` reach their sessions, or are refused in one line.

* ``sensitivity --set`` on a compiled model: its sessions change those periphery keys, as ``evaluate --set``
  does (it was silently ignored there); a key that changes the tiling is a one-line error, nothing written.
* ``compile --accuracy-budget --execution-provider``: the search's and the verifications' sessions run on it;
  one this onnxruntime lacks is a one-line error before any work, nothing written. A plain compile runs no
  analog session, so there the search's options are refused rather than dropped.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from anacompile.errors import ConfigError
from anacompile.runtime.providers import ALIASES, CPU
from tests._support.recording import record_session_providers

MISSING = next(short for short, full in ALIASES.items() if full not in ort.get_available_providers())
"""A provider this onnxruntime does not have (``cuda`` on a CPU-only machine)."""

KW = {"metric": "accuracy", "data": "digits", "times": "1s", "chips": 2}


def _main(capsys, *args: str) -> tuple[int, str, str]:
    from anacompile.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err.strip()


def test_sensitivity_set_changes_a_compiled_models_periphery_as_evaluate_does(compiled_mlp):
    """All-analog under ``adc_bits=3`` is evaluate's accuracy under the same override on the same chips, and
    not the accuracy without it."""
    import anacompile
    from anacompile.placement.sensitivity import sensitivity

    coarse = {"adc_bits": 3}
    plain = sensitivity(compiled_mlp, **KW)
    changed = sensitivity(compiled_mlp, periphery_overrides=coarse, **KW)
    ev = anacompile.evaluate(compiled_mlp, times="1s", chips=2, periphery_overrides=coarse)
    ev_plain = anacompile.evaluate(compiled_mlp, times="1s", chips=2)
    assert changed.all_analog_mean == pytest.approx([float(np.mean([row[0] for row in ev.accuracy]))], abs=1e-12)
    assert plain.all_analog_mean == pytest.approx([float(np.mean([row[0] for row in ev_plain.accuracy]))], abs=1e-12)
    assert changed.all_analog_mean[0] < plain.all_analog_mean[0] - 0.01  # 3-bit ADC: clearly worse
    assert changed.baseline == plain.baseline  # FP32 is FP32


def test_sensitivity_set_on_the_cli_reaches_a_compiled_model(compiled_mlp, tmp_path, capsys):
    args = ["sensitivity", compiled_mlp, "--metric", "accuracy", "--data", "digits", "--times", "1s"]
    args += ["--chips", "2", "--json", "-"]
    docs = []
    for extra in ([], ["--set", "adc_bits=3"]):
        rc, out, err = _main(capsys, *args, *extra)
        assert rc == 0, err
        docs.append(json.loads(out))
    assert docs[1]["all_analog_mean"][0] < docs[0]["all_analog_mean"][0] - 0.01
    from anacompile.placement.sensitivity import sensitivity

    api = sensitivity(compiled_mlp, periphery_overrides={"adc_bits": 3}, **KW).to_dict()
    assert docs[1]["all_analog_mean"] == api["all_analog_mean"] and docs[1]["ranking"] == api["ranking"]
    # the tiling is fixed in a compiled model: one line asking for a recompile, no JSON written
    target = tmp_path / "s.json"
    rc, _, err = _main(capsys, *args[:-1], target, "--set", "tile_rows=64")
    assert rc == 1 and len(err.splitlines()) == 1, err
    assert "tile_rows" in err and "recompile" in err and not target.exists(), err


def test_budgeted_compile_runs_its_sessions_on_the_provider_asked_for(mlp_hwa, tmp_path, capsys, monkeypatch):
    """``--execution-provider cpu`` reaches the search's and every verification's session and gives the
    default's bytes; a missing provider is one line before any work, with nothing written."""
    seen = record_session_providers(monkeypatch)
    common = ["compile", mlp_hwa, "--calibration", "digits", "--accuracy-budget", "0.5", "--metric", "accuracy"]
    common += ["--data", "digits", "--chips", "2", "--verify-chips", "2"]
    outputs = []
    for name, extra in (("default", []), ("cpu", ["--execution-provider", "cpu"])):
        out = tmp_path / f"{name}.onnx"
        seen.clear()
        rc, _, err = _main(capsys, *common, "-o", out, *extra)
        assert rc == 0, err
        outputs.append((out.read_bytes(), (tmp_path / f"{name}.placement.json").read_text()))
        assert len(seen) >= 2, seen  # the search's session and at least one verification's
        assert all(p in (None, [CPU]) for p in seen), seen
        if extra:
            assert all(p == [CPU] for p in seen), seen  # by name, everywhere
    assert outputs[0][0] == outputs[1][0]
    doc = [json.loads(text) for _, text in outputs]
    assert doc[0]["digital"] == doc[1]["digital"] and doc[0]["verified_mean"] == doc[1]["verified_mean"]

    seen.clear()
    out = tmp_path / "missing.onnx"
    rc, _, err = _main(capsys, *common, "-o", out, "--execution-provider", MISSING)
    assert rc == 1 and len(err.splitlines()) == 1, err
    assert f"'{MISSING}'" in err and "available: " in err and CPU in err, err
    assert not seen and not out.exists() and not (tmp_path / "missing.placement.json").exists()


def test_a_plain_compile_refuses_the_searchs_options(mlp_hwa, tmp_path, capsys):
    """Without --accuracy-budget nothing would use them: one line naming them, nothing written."""
    out = tmp_path / "plain.onnx"
    for extra, names in (
        (["--execution-provider", "cpu"], "--execution-provider"),
        (["--metric", "accuracy", "--data", "digits"], "--metric, --data"),
        (["--chips", "5", "--at", "1h", "--confidence", "0.9"], "--at, --chips, --confidence"),
        (["--verify-chips", "8"], "--verify-chips"),  # its default value, given: still refused
    ):
        rc, _, err = _main(capsys, "compile", mlp_hwa, "-o", out, *extra)
        assert rc == 1 and len(err.splitlines()) == 1, err
        assert names in err and "--accuracy-budget" in err and not out.exists(), err
    rc, _, err = _main(capsys, "compile", mlp_hwa, "-o", out)  # their defaults alone: a plain compile
    assert rc == 0 and out.exists(), err


def test_the_api_takes_providers_for_the_search_only(mlp_hwa, tmp_path, monkeypatch):
    """``compile_model(accuracy_budget=..., providers=...)``: a missing provider is refused before anything is
    compiled; without a budget ``providers=`` is refused (a plain compile runs no analog session)."""
    import anacompile
    import anacompile.compiler

    with pytest.raises(ConfigError, match="providers= runs the placement search's sessions"):
        anacompile.compile_model(mlp_hwa, tmp_path / "x.onnx", providers="cpu")

    def never(*args, **kwargs):
        raise AssertionError("compiled before the provider was checked")

    monkeypatch.setattr(anacompile.compiler, "compile_model", never)
    with pytest.raises(ConfigError, match=rf"'{MISSING}' \(\w+ExecutionProvider\) is not available"):
        anacompile.compile_model(mlp_hwa, tmp_path / "x.onnx", accuracy_budget=0.5, providers=MISSING)
    assert not list(tmp_path.iterdir())


def test_sensitivity_refuses_source_options_on_a_compiled_model(compiled_mlp, tmp_path, capsys):
    """--device, --periphery and --calibration compile a source model; a compiled one has its own, so they
    are refused in one line before any work (they were ignored), and the defaults stay silent."""
    from anacompile.placement.sensitivity import sensitivity

    target = tmp_path / "s.json"
    args = ["sensitivity", compiled_mlp, "--metric", "accuracy", "--data", "digits", "--json", target]
    for extra, name in ((["--device", "pcm"], "device"), (["--periphery", "ideal"], "periphery")):
        rc, _, err = _main(capsys, *args, *extra)
        assert rc == 1 and len(err.splitlines()) == 1, err
        assert err.startswith(f"error: {name}: ") and "compiled already" in err and not target.exists(), err
    rc, _, err = _main(capsys, *args, "--calibration", "digits", "--times", "1s", "--chips", "1")
    assert rc == 1 and "calibration: " in err and not target.exists(), err
    with pytest.raises(ConfigError, match="periphery: .* is compiled already"):
        sensitivity(compiled_mlp, periphery="ideal", **KW)
