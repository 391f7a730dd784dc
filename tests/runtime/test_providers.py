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
from anacompile.runtime.providers import CPU, resolve_providers
from anacompile.runtime.session import AnalogSession

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
