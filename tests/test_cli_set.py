"""``--set KEY=VALUE``: parsed and checked once, at the command line's edge, on every command that takes it.

A bad key or value fails in one line naming the key and the valid keys or values, before any model is read
(here the model does not even exist); the API receives the parsed dict, and keeps accepting strings or dicts.
"""

from __future__ import annotations

import pytest
import typer

from anacompile.errors import ConfigError


def _set_commands() -> list[str]:
    """Every registered command with a ``--set`` option."""
    from anacompile.cli import app

    group = typer.main.get_command(app)
    return sorted(name for name, cmd in group.commands.items() if any("--set" in p.opts for p in cmd.params))


def _main(capsys, *args: str) -> tuple[int, str]:
    from anacompile.cli import main

    capsys.readouterr()
    rc = main(list(args))
    return rc, capsys.readouterr().err.strip()


def test_the_commands_with_set_are_known():
    assert _set_commands() == ["compile", "cost", "evaluate", "finetune", "mvm-error", "sensitivity"]


@pytest.mark.parametrize("command", _set_commands())
def test_a_bad_set_key_or_value_fails_before_any_work(command, tmp_path, capsys):
    missing = str(tmp_path / "missing.onnx")  # never read: the --set check comes first
    required = {"finetune": ["--calibration", "digits"]}.get(command, [])
    if command == "cost":  # the cost constants
        cases = [
            ("adc_bitz=6", ["'adc_bitz'", "allowed keys: name", "adc_energy_j"]),
            ("adc_energy_j=-3", ["adc_energy_j", ">= 0"]),
        ]
    else:  # the periphery
        cases = [
            ("adc_bitz=6", ["--set 'adc_bitz': not a periphery key", "valid keys: adc_bits, adc_bound"]),
            ("adc_bits=foo", ["--set adc_bits", "must be an integer in [2, 24]"]),
            ("input_range=wide", ["--set input_range", "must be one of static, absmax"]),
            ("drift.t0_s=10", ["'drift': not a periphery key"]),
        ]
    for item, expected in cases:
        rc, err = _main(capsys, command, missing, *required, "--set", item)
        assert rc == 1 and len(err.splitlines()) == 1, (command, item, err)
        assert "missing.onnx" not in err and all(e in err for e in expected), (command, item, err)
    if command != "cost":  # a combination that no periphery allows
        rc, err = _main(
            capsys, command, missing, *required, "--set", "bound_management=iterative", "--set", "adc_bound=none"
        )
        assert rc == 1 and "together" in err and "needs the DAC on" in err, err


def test_a_bad_sweep_value_fails_before_any_run(tmp_path, capsys):
    rc, err = _main(capsys, "evaluate", str(tmp_path / "missing.onnx"), "--sweep", "adc_bits=6,7,99")
    assert rc == 1 and "--sweep adc_bits" in err and "[2, 24]" in err, err


def test_the_cli_hands_the_api_the_parsed_dict(compiled_mlp, mlp_hwa, tmp_path, monkeypatch):
    """One parse, at the edge: compile, evaluate (with --sweep) and mvm-error get ``{"adc_bits": 6}``."""
    import anacompile.compiler
    import anacompile.evaluate.monte_carlo as mc
    import anacompile.evaluate.mvm_error as me
    from anacompile.cli import main

    seen: list = []

    def capture(*args, **kwargs):
        seen.append(kwargs["periphery_overrides"])
        raise ConfigError("captured")

    for module, name in ((anacompile.compiler, "compile_model"), (mc, "evaluate"), (me, "mvm_error")):
        monkeypatch.setattr(module, name, capture)
    assert main(["compile", str(mlp_hwa), "-o", str(tmp_path / "a.onnx"), "--set", "adc_bits=6"]) == 1
    assert main(["evaluate", str(compiled_mlp), "--set", "adc_bound=none", "--sweep", "adc_bits=6,7"]) == 1
    assert main(["mvm-error", str(compiled_mlp), "--set", "adc_bits=6"]) == 1
    assert seen == [{"adc_bits": 6}, {"adc_bound": None, "adc_bits": 6}, {"adc_bits": 6}]


def test_the_api_takes_strings_or_a_dict(compiled_mlp):
    import anacompile

    kw = {"times": "1s", "chips": 1}
    as_strings = anacompile.evaluate(compiled_mlp, periphery_overrides=["adc_bits=6", "out_noise=0.02"], **kw)
    as_dict = anacompile.evaluate(compiled_mlp, periphery_overrides={"adc_bits": 6, "out_noise": 0.02}, **kw)
    assert as_strings.to_dict() == as_dict.to_dict()
    assert as_dict.to_dict() != anacompile.evaluate(compiled_mlp, **kw).to_dict()  # the overrides took effect
    with pytest.raises(ConfigError, match="'adc_bitz': not a periphery key; valid keys: adc_bits"):
        anacompile.evaluate(compiled_mlp, periphery_overrides={"adc_bitz": 6}, **kw)
