"""Command-line options that several commands share, each defined once.

``--execution-provider`` (``evaluate``, ``mvm-error``, ``sensitivity``): the onnxruntime execution provider of
the analog sessions (:mod:`anacompile.runtime.providers`); one this onnxruntime lacks is a one-line
:class:`~anacompile.errors.ConfigError` naming the available ones, raised before any work.
"""

from __future__ import annotations

import typer

__all__ = ["EXECUTION_PROVIDER", "EXECUTION_PROVIDER_HELP"]

EXECUTION_PROVIDER_HELP = "onnxruntime execution provider: cpu (default), cuda, or a full name."
EXECUTION_PROVIDER = typer.Option(None, "--execution-provider", help=EXECUTION_PROVIDER_HELP)
"""The ``--execution-provider NAME`` option, as a parameter default: ``execution_provider: str | None =
EXECUTION_PROVIDER``; the command hands the name to the API's ``providers=``."""
