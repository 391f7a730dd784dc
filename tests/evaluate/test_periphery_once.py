"""The experiment's periphery is parsed once (in evaluate) and handed to every session as one object."""

from __future__ import annotations

import pytest

import anacompile.runtime.session as session_module
from anacompile.crossbar.periphery import Periphery
from anacompile.errors import ConfigError
from anacompile.evaluate.monte_carlo import evaluate
from anacompile.runtime.session import AnalogSession


def test_sessions_of_an_evaluation_do_not_parse_the_overrides_again(compiled_mlp, monkeypatch):
    parsed = evaluate(compiled_mlp, times="1s", chips=2, periphery_overrides={"adc_bits": 6})
    evaluate(compiled_mlp, times="1s", chips=1, periphery_overrides={"adc_bits": 5})  # a new job: a new session

    def refuse(*args, **kwargs):
        raise AssertionError("the session parsed the periphery overrides again")

    monkeypatch.setattr(session_module, "get_periphery", refuse)
    again = evaluate(compiled_mlp, times="1s", chips=2, periphery_overrides={"adc_bits": 6})
    assert again.accuracy == parsed.accuracy
    assert again.periphery_overrides == {"adc_bits": 6}


def test_a_resolved_periphery_is_used_as_given_and_checked(compiled_mlp):
    base = AnalogSession(compiled_mlp, chip_seed=None).periphery
    p = base.replace(adc_bits=5)
    assert isinstance(p, Periphery) and AnalogSession(compiled_mlp, chip_seed=None, periphery=p).periphery is p
    with pytest.raises(ConfigError, match="not both"):
        AnalogSession(compiled_mlp, chip_seed=None, periphery=p, periphery_overrides={"adc_bits": 6})
    with pytest.raises(ConfigError, match="tile_rows changes how weights are split"):
        AnalogSession(compiled_mlp, chip_seed=None, periphery=base.replace(tile_rows=64))
