"""onnxruntime execution providers by short name (``cpu``, ``cuda``, ...), checked before a session runs.

``--execution-provider cuda`` (``providers=["cuda"]`` in Python) asks for onnxruntime's CUDA provider; the
CPU provider always follows the requested ones (onnxruntime runs there what a provider does not support).
A provider this onnxruntime build lacks, or one that fails to start (missing CUDA libraries: onnxruntime
then falls back to the CPU silently), is a one-line :class:`~anacompile.errors.ConfigError` naming the
providers that are available, never a silent change of device.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnxruntime as ort

from anacompile.errors import ConfigError

__all__ = ["ALIASES", "CPU", "check_session_providers", "provider_label", "resolve_providers"]

CPU = "CPUExecutionProvider"
ALIASES = {
    "cpu": CPU,
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}
"""Short names of onnxruntime's execution providers (any full name ``...ExecutionProvider`` works too)."""

_HINTS = {
    "CUDAExecutionProvider": "install onnxruntime-gpu (in place of onnxruntime) on a machine with CUDA",
    "TensorrtExecutionProvider": "install onnxruntime-gpu with TensorRT on a machine with CUDA",
}


def resolve_providers(spec: str | Sequence[str] | None) -> list[str]:
    """Full provider names for ``spec``: ``None`` (the CPU), ``"cuda"``, ``"cuda,cpu"`` or a list of short or
    full names; the CPU provider is appended when absent.

    Raises:
        ConfigError: an unknown name, or a provider this onnxruntime build does not have (the message lists
            the available ones).
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return [CPU]
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s).strip() for s in spec]
    available = ort.get_available_providers()
    out: list[str] = []
    for name in names:
        full = ALIASES.get(name.lower(), name)
        if not full.endswith("ExecutionProvider"):
            raise ConfigError(
                f"execution provider {name!r} is unknown; use one of {', '.join(ALIASES)} or a full onnxruntime "
                f"name (available here: {', '.join(available)})."
            )
        if full not in available:
            hint = _HINTS.get(full, "install an onnxruntime build that has it")
            raise ConfigError(
                f"execution provider {name!r} ({full}) is not available in this onnxruntime "
                f"{ort.__version__}; available: {', '.join(available)} ({hint})."
            )
        if full not in out:
            out.append(full)
    if CPU not in out:
        out.append(CPU)
    return out


def check_session_providers(session: ort.InferenceSession, requested: list[str], label: str = "the model") -> None:
    """Raise if onnxruntime did not start every requested provider (it falls back to the CPU silently).

    Raises:
        ConfigError: naming the provider that did not start and the ones the session runs on.
    """
    running = session.get_providers()
    missing = [p for p in requested if p not in running]
    if missing:
        raise ConfigError(
            f"{label}: onnxruntime could not start {', '.join(missing)} (the session runs on "
            f"{', '.join(running)}); check the CUDA/cuDNN libraries onnxruntime needs, or use the CPU."
        )


def provider_label(providers: Sequence[str]) -> str:
    """The first (preferred) provider's short name, e.g. ``cuda``."""
    first = providers[0] if providers else CPU
    return next((short for short, full in ALIASES.items() if full == first), first)
