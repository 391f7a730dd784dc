"""Work that does not depend on the chip or on t is done once (issue 14, item 4), with the same values.

* the experiment's noise bank is a function of (seed, size): drawn once per process and shared, read-only;
* the read noise's amplitude Q_s(g_prog) does not depend on t: a chip read at many times computes it once.
"""

from __future__ import annotations

import numpy as np
import pytest

from anacompile.devices import PCMDevice
from anacompile.programming import chip_state
from anacompile.programming.chip_state import (
    bank_rng,
    chip_rng,
    experiment_noise_bank,
    noise_bank,
    read_noise_q,
    read_weights,
)


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch):
    monkeypatch.setattr(chip_state, "_BANKS", {})


def test_bank_is_the_seeded_draw_shared_and_read_only(monkeypatch):
    bank = experiment_noise_bank(7, 4096)
    np.testing.assert_array_equal(bank, noise_bank(4096, bank_rng(7, 4096)))
    assert not bank.flags.writeable
    with pytest.raises(ValueError):
        bank[0] = 1.0
    draws = []
    monkeypatch.setattr(chip_state, "noise_bank", lambda size, rng: draws.append(size) or np.zeros(size, np.float32))
    assert experiment_noise_bank(7, 4096) is bank  # no second draw
    assert draws == []
    other = experiment_noise_bank(8, 4096)  # another experiment: its own draw
    assert draws == [4096] and other is not bank


def test_scaled_bank_is_the_bank_times_the_scale():
    scaled = experiment_noise_bank(3, 1024, 0.25)
    np.testing.assert_array_equal(scaled, experiment_noise_bank(3, 1024) * np.float32(0.25))
    assert not scaled.flags.writeable


def test_cache_stays_under_its_bound(monkeypatch):
    monkeypatch.setattr(chip_state, "BANK_CACHE_BYTES", 3 * 4096 * 4)
    for seed in range(6):
        experiment_noise_bank(seed, 4096)
    assert sum(b.nbytes for b in chip_state._BANKS.values()) <= 3 * 4096 * 4
    assert list(k[0] for k in chip_state._BANKS) == [3, 4, 5]  # least recently used out first
    big = experiment_noise_bank(99, 4 * 4096)  # larger than the bound: drawn, not kept
    assert big.size == 4 * 4096 and (99, 4 * 4096, 1.0) not in chip_state._BANKS


def test_read_with_kept_q_s_equals_the_plain_read():
    device = PCMDevice()
    rng = np.random.default_rng(0)
    g_prog = rng.uniform(0.0, device.g_max_us, (2, 2, 40, 12)).astype(np.float32)
    nu = rng.uniform(0.02, 0.08, g_prog.shape).astype(np.float32)
    q = read_noise_q(g_prog, device)
    assert q is not None and q.dtype == np.float32
    np.testing.assert_allclose(q, device.read_noise_q(g_prog.astype(np.float64)), rtol=1e-5)  # float32 of the formula
    for t in (1.0, 3600.0, 3.15e7):
        plain = read_weights(g_prog, nu, t, device, [1.0, 0.5], 10.0, chip_rng(1, 2, "read", 0, t))
        kept = read_weights(g_prog, nu, t, device, [1.0, 0.5], 10.0, chip_rng(1, 2, "read", 0, t), q_s=q)
        np.testing.assert_array_equal(kept, plain)
    wrong = read_weights(g_prog, nu, 3600.0, device, [1.0, 0.5], 10.0, chip_rng(1, 2, "read", 0, 3600.0), q_s=q * 1.05)
    assert not np.array_equal(
        wrong, read_weights(g_prog, nu, 3600.0, device, [1.0, 0.5], 10.0, chip_rng(1, 2, "read", 0, 3600.0))
    )


def test_session_computes_q_s_once_per_programmed_chip(monkeypatch, tmp_path):
    from anacompile.compiler import compile_model
    from anacompile.runtime import session as session_module
    from tests._support.session_passes import MODELS

    out = tmp_path / "mlp.analog.onnx"
    compile_model(MODELS / "digits_mlp_hwa.onnx", out, calibration="digits")
    calls = []
    real = session_module.read_noise_q
    monkeypatch.setattr(session_module, "read_noise_q", lambda g, d: calls.append(1) or real(g, d))
    s = session_module.AnalogSession(out, chip_seed=0)
    layers = sum(layer.owns_tiles for layer in s.layers)
    for t in (1.0, 3600.0, 86400.0):
        s.set_time(t)
    assert len(calls) == layers  # once per layer, not per t
    s.program(1)
    s.set_time(5.0)
    assert len(calls) == 2 * layers  # a new chip: computed again
