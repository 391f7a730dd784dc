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

__all__ = ["EXECUTION_PROVIDER", "EXECUTION_PROVIDER_HELP", "option_given", "periphery_sets"]

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


def option_given(ctx: typer.Context, name: str) -> bool:
    """Whether the user set the command's option ``name`` (the parameter's name), not left it at its default:
    an option the command would not use must be refused, never dropped silently. (Typer ships its own click,
    so the parameter source is compared by name.)"""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")
