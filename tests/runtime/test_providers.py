"""Execution providers by name (``--execution-provider``, ``providers=``): checked, one-line errors.

No GPU is assumed: the CUDA provider is tested where onnxruntime has it (bench/gpu_overhead.py measures it on
a GPU machine); everywhere, an unavailable provider must be refused naming what is available, and the CPU
provider by name must give the default session's outputs exactly.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest

import anacompile
from anacompile.errors import ConfigError
from anacompile.runtime.providers import ALIASES, CPU, resolve_providers
from anacompile.runtime.session import AnalogSession
from tests._support.recording import record_session_providers

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


def test_short_and_full_names_resolve_with_the_cpu_last() -> None:
    assert resolve_providers(None) == [CPU]
    assert resolve_providers("cpu") == [CPU]
    assert resolve_providers(["CPUExecutionProvider"]) == [CPU]
    with pytest.raises(ConfigError, match="'gpu' is unknown; use one of cpu, cuda"):
        resolve_providers("gpu")


@pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime has CUDA: the refusal of a missing provider cannot happen")
def test_a_missing_cuda_provider_is_refused_naming_the_available_ones(compiled_mlp) -> None:
    with pytest.raises(ConfigError, match=r"'cuda' \(CUDAExecutionProvider\) is not available .* available: .*CPU"):
        AnalogSession(compiled_mlp, providers=["cuda"])
    with pytest.raises(ConfigError, match="install onnxruntime-gpu"):
        anacompile.evaluate(compiled_mlp, times="1s", chips=1, providers="cuda")
    r = subprocess.run(
        [sys.executable, "-m", "anacompile.cli", "evaluate", str(compiled_mlp), "--chips", "1", "--times", "1s"]
        + ["--execution-provider", "cuda"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "CUDAExecutionProvider" in r.stderr and "available" in r.stderr


def _outputs(path, providers) -> np.ndarray:
    session = AnalogSession(path, chip_seed=2, t_inference=86400.0, providers=providers)
    x = np.random.default_rng(0).random((32, 64), np.float32)
    return session.run({"input": x})[0], session.providers


def test_the_cpu_provider_by_name_gives_the_default_outputs(compiled_mlp) -> None:
    default, used = _outputs(compiled_mlp, None)
    named, used_named = _outputs(compiled_mlp, "cpu")
    assert used == used_named == [CPU]
    np.testing.assert_array_equal(default, named)


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA provider in this onnxruntime (CPU-only machine)")
def test_cuda_gives_the_cpu_outputs_to_float_tolerance(compiled_mlp) -> None:
    cpu, _ = _outputs(compiled_mlp, "cpu")
    cuda, used = _outputs(compiled_mlp, "cuda")
    assert used[0] == "CUDAExecutionProvider"
    np.testing.assert_allclose(cuda, cpu, rtol=1e-4, atol=1e-4 * float(np.abs(cpu).max()))


MISSING = next(short for short, full in ALIASES.items() if full not in ort.get_available_providers())
"""A provider this onnxruntime does not have (there is always one: no build has them all)."""


def test_mvm_error_and_sensitivity_run_on_the_providers_asked_for(compiled_mlp, monkeypatch) -> None:
    """``providers=`` reaches their sessions (the CPU by name gives the default results exactly), and one that
    is missing is refused in one line naming the available ones, before any work."""
    from anacompile.evaluate.mvm_error import mvm_error
    from anacompile.placement.sensitivity import sensitivity

    seen = record_session_providers(monkeypatch)
    kw = {"times": "1s", "chips": 2}
    default = mvm_error(compiled_mlp, samples=64, **kw).to_dict()
    assert mvm_error(compiled_mlp, samples=64, providers="cpu", **kw).to_dict() == default
    assert seen[-1] == [CPU]
    s_default = sensitivity(compiled_mlp, metric="accuracy", data="digits", **kw).to_dict()
    assert sensitivity(compiled_mlp, metric="accuracy", data="digits", providers=["cpu"], **kw).to_dict() == s_default
    assert seen[-1] == [CPU]
    seen.clear()
    for run in (
        lambda: mvm_error(compiled_mlp, providers=MISSING, **kw),
        lambda: sensitivity(compiled_mlp, metric="accuracy", data="digits", providers=MISSING, **kw),
    ):
        with pytest.raises(
            ConfigError, match=rf"'{MISSING}' \(\w+ExecutionProvider\) is not available.*available: .*CPU"
        ):
            run()
    assert not seen  # refused before a session was made


def test_every_command_with_sessions_takes_execution_provider(compiled_mlp, capsys) -> None:
    """``--execution-provider`` on evaluate, mvm-error and sensitivity (one shared option): cpu gives the
    default JSON, a missing provider one line on stderr naming the available ones."""
    import json

    from anacompile.cli import main

    base = {
        "evaluate": ["--chips", "1", "--times", "1s"],
        "mvm-error": ["--chips", "1", "--times", "1s", "--samples", "32"],
        "sensitivity": ["--chips", "1", "--times", "1s", "--metric", "accuracy", "--data", "digits"],
    }
    for command, args in base.items():
        docs = []
        for extra in ([], ["--execution-provider", "cpu"]):
            capsys.readouterr()
            assert main([command, str(compiled_mlp), *args, *extra, "--json", "-"]) == 0
            docs.append(json.loads(capsys.readouterr().out))
        assert docs[0] == docs[1], command
        assert main([command, str(compiled_mlp), *args, "--execution-provider", MISSING]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "available: " in err and CPU in err, (command, err)
