"""Checks shared by the device parameter dataclasses: numbers, ranges, and nested overrides.

Every failure raises :class:`anacompile.errors.DeviceError` naming the field, the value and the allowed
range. The device-file loader adds the file name (see :func:`anacompile.devices.get`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np

from anacompile.errors import DeviceError

__all__ = [
    "check_bounds",
    "check_name_and_window",
    "check_real",
    "check_reals",
    "check_text",
    "check_time_s",
    "merge_overrides",
]

_T = TypeVar("_T")


def _is_real(value: object) -> bool:
    """Return True for int/float (and numpy equivalents), False for bool, str and everything else."""
    if isinstance(value, (bool, np.bool_)):
        return False
    return isinstance(value, (int, float, np.integer, np.floating))


def _range_text(low: float | None, high: float | None, low_open: bool, high_open: bool, unit: str) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    text = "a finite real number"
    if parts:
        text += " " + " and ".join(parts)
    if unit:
        text += f" ({unit})"
    return text


def check_name_and_window(device: Any, owner: str) -> None:
    """Validate and normalise a frozen device's ``name``, ``g_max_us`` and ``g_min_us`` in place.

    Raises:
        DeviceError: one line naming the field and what is allowed (0 <= g_min_us < g_max_us, g_max_us > 0).
    """
    set_ = object.__setattr__
    set_(device, "name", check_text(owner, "name", device.name))
    g_max = check_real(owner, "g_max_us", device.g_max_us, unit="µS", low=0.0, low_open=True)
    set_(device, "g_max_us", g_max)
    g_min = check_real(
        owner, "g_min_us", device.g_min_us, unit=f"µS, below g_max_us = {g_max:g}", low=0.0, high=g_max, high_open=True
    )
    set_(device, "g_min_us", g_min)


def check_real(
    owner: str,
    field: str,
    value: object,
    *,
    unit: str = "",
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a float after checking its type, finiteness and range.

    Args:
        owner: class name used in the message, e.g. ``"PCMDrift"``.
        field: field name used in the message, e.g. ``"t0_s"``.
        value: the value to check.
        unit: unit shown in the message.
        low: lower bound, or None.
        high: upper bound, or None.
        low_open: True when ``low`` itself is not allowed.
        high_open: True when ``high`` itself is not allowed.

    Returns:
        The value as a Python float.

    Raises:
        DeviceError: the value is not a real number, not finite, or out of range.
    """
    allowed = _range_text(low, high, low_open, high_open, unit)
    if not _is_real(value):
        raise DeviceError(f"{owner}.{field} = {value!r} has type {type(value).__name__}; allowed: {allowed}.")
    number = float(value)  # type: ignore[arg-type]
    bad = not math.isfinite(number)
    if low is not None:
        bad = bad or number < low or (low_open and number == low)
    if high is not None:
        bad = bad or number > high or (high_open and number == high)
    if bad:
        raise DeviceError(f"{owner}.{field} = {number!r} is out of range; allowed: {allowed}.")
    return number


def check_reals(owner: str, field: str, value: object, length: int, *, unit: str = "") -> tuple[float, ...]:
    """Return ``value`` as a tuple of ``length`` finite floats (a list or tuple is accepted).

    Args:
        owner: class name used in the message.
        field: field name used in the message.
        value: the sequence to check.
        length: the required number of elements.
        unit: unit shown in the message.

    Returns:
        The elements as a tuple of floats.

    Raises:
        DeviceError: not a list/tuple of ``length`` finite real numbers.
    """
    allowed = f"a list of {length} finite real numbers" + (f" ({unit})" if unit else "")
    if not isinstance(value, (list, tuple)) or len(value) != length:
        raise DeviceError(f"{owner}.{field} = {value!r} is malformed; allowed: {allowed}.")
    if not all(_is_real(v) and math.isfinite(float(v)) for v in value):
        raise DeviceError(f"{owner}.{field} = {value!r} is malformed; allowed: {allowed}.")
    return tuple(float(v) for v in value)


def check_bounds(owner: str, field: str, value: object, *, low: float, unit: str = "") -> tuple[float, float]:
    """Return ``value`` as an ordered pair (lower, upper) with ``low <= lower <= upper``.

    Args:
        owner: class name used in the message.
        field: field name used in the message.
        value: the pair to check.
        low: smallest allowed lower bound.
        unit: unit shown in the message.

    Returns:
        The pair as a tuple of two floats.

    Raises:
        DeviceError: not two finite numbers, or not ordered, or below ``low``.
    """
    lower, upper = check_reals(owner, field, value, 2, unit=unit)
    if not low <= lower <= upper:
        raise DeviceError(
            f"{owner}.{field} = {value!r} is out of range; allowed: [lower, upper] with "
            f"{low:g} <= lower <= upper" + (f" ({unit})" if unit else "") + "."
        )
    return lower, upper


def check_text(owner: str, field: str, value: object, *, nonempty: bool = True) -> str:
    """Return ``value`` after checking that it is a (non-empty) string.

    Args:
        owner: class name used in the message.
        field: field name used in the message.
        value: the value to check.
        nonempty: also refuse the empty (or all-blank) string.

    Returns:
        The string.

    Raises:
        DeviceError: not a string, or empty when ``nonempty``.
    """
    if not isinstance(value, str) or (nonempty and not value.strip()):
        raise DeviceError(
            f"{owner}.{field} = {value!r} is invalid; allowed: a {'non-empty ' if nonempty else ''}string."
        )
    return value


def check_time_s(t_inference_s: object) -> float:
    """Return the time since the end of programming as a float, in s.

    Args:
        t_inference_s: one real number of seconds (Python or numpy scalar, or a 0-d array).

    Returns:
        The time as a Python float.

    Raises:
        DeviceError: not a single real number, not finite, or negative.
    """
    arr = np.asarray(t_inference_s)
    allowed = "one finite real number of seconds >= 0 (time since the end of programming)"
    if arr.ndim != 0 or arr.dtype.kind not in "iuf":
        raise DeviceError(
            f"t_inference_s = {t_inference_s!r} is invalid; allowed: {allowed}. Call once per evaluation time."
        )
    t = float(arr)
    if not math.isfinite(t) or t < 0.0:
        raise DeviceError(f"t_inference_s = {t!r} is out of range; allowed: {allowed}.")
    return t


def merge_overrides(instance: _T, overrides: Mapping[Any, Any], path: str = "") -> _T:
    """Return a copy of the frozen dataclass ``instance`` with ``overrides`` applied, validated.

    A nested dataclass field accepts either an instance of its class (replacing it) or a mapping, which
    is merged recursively onto the current value, so ``{"drift": {"t0_s": 10}}`` changes one field.

    Args:
        instance: a frozen dataclass instance (validated in its ``__post_init__``).
        overrides: field name -> new value.
        path: dotted prefix of ``instance`` inside the top-level object, for messages (``"drift."``).

    Returns:
        A new, validated instance.

    Raises:
        DeviceError: an unknown key, a nested value of the wrong type, or any invalid value.
    """
    if not dataclasses.is_dataclass(instance) or isinstance(instance, type):
        raise TypeError(f"merge_overrides needs a dataclass instance, got {instance!r}")
    cls_name = type(instance).__name__
    names = [f.name for f in dataclasses.fields(instance)]
    if not isinstance(overrides, Mapping):
        raise DeviceError(
            f"{path.rstrip('.') or cls_name} = {overrides!r} has type {type(overrides).__name__}; "
            f"allowed: a mapping with keys {', '.join(names)}."
        )
    for key in overrides:
        if key not in names:
            raise DeviceError(
                f"Unknown key {path + str(key)!r} in {cls_name}; allowed keys"
                f"{' of ' + repr(path.rstrip('.')) if path else ''}: {', '.join(names)}."
            )
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        current = getattr(instance, key)
        if dataclasses.is_dataclass(current):
            if isinstance(value, type(current)):
                changes[key] = value
            elif isinstance(value, Mapping):
                changes[key] = merge_overrides(current, value, f"{path}{key}.")
            else:
                sub_names = ", ".join(f.name for f in dataclasses.fields(current))
                raise DeviceError(
                    f"{path}{key} = {value!r} has type {type(value).__name__}; allowed: a mapping with "
                    f"keys {sub_names} (or a {type(current).__name__})."
                )
        else:
            changes[key] = value
    try:
        return dataclasses.replace(instance, **changes)
    except DeviceError as err:
        if not path:
            raise
        raise DeviceError(f"In {path.rstrip('.')!r}: {err}") from err
