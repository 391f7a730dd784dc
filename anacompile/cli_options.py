"""Command-line options that several commands share, each defined once.

``--execution-provider`` (``evaluate``, ``mvm-error``, ``sensitivity``, ``compile --accuracy-budget``): the
onnxruntime execution provider of the analog sessions (:mod:`anacompile.runtime.providers`); one this
onnxruntime lacks is a one-line :class:`~anacompile.errors.ConfigError` naming the available ones, raised
before any work. A plain ``compile`` runs no analog session: there the option is refused.

``--set KEY=VALUE`` of the periphery (``compile``, ``evaluate``, ``mvm-error``, ``sensitivity``, ``finetune``):
parsed and checked once, here at the edge (:func:`periphery_sets`), before any model is read; the commands hand
the API the parsed dict.
"""

from __future__ import annotations

from typing import Any

import typer

from anacompile.crossbar.periphery import parse_overrides

__all__ = ["EXECUTION_PROVIDER", "EXECUTION_PROVIDER_HELP", "periphery_sets"]

EXECUTION_PROVIDER_HELP = "onnxruntime execution provider: cpu (default), cuda, or a full name."
EXECUTION_PROVIDER = typer.Option(None, "--execution-provider", help=EXECUTION_PROVIDER_HELP)
"""The ``--execution-provider NAME`` option, as a parameter default: ``execution_provider: str | None =
EXECUTION_PROVIDER``; the command hands the name to the API's ``providers=``."""


def periphery_sets(items: list[str] | None, option: str = "--set") -> dict[str, Any]:
    """``--set`` items as the periphery overrides the API takes (``["adc_bits=6"]`` -> ``{"adc_bits": 6}``).

    Raises:
        ConfigError: one line naming ``option``, the key, and the valid keys or values.
    """
    return parse_overrides(list(items or []), what=option)
