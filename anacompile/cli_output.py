"""Machine-readable output of the command line: ``--json PATH`` on every command, ``-`` for stdout.

Every command that has a result takes ``--json PATH``: the result as one JSON document written atomically to
PATH (refused over an input, or over an existing file without ``--force``), or printed on stdout with
``--json -``, where it is then the only thing on stdout (tables go nowhere, progress and notes to stderr).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from anacompile.model_io import atomic_output, check_output_path

__all__ = ["JSON_HELP", "STDOUT", "check_json_target", "json_to_stdout", "write_json"]

STDOUT = "-"
JSON_HELP = "Write the result as JSON to PATH ('-' for stdout, then the only output there)."


def json_to_stdout(target: str | os.PathLike[str] | None) -> bool:
    """Whether ``--json`` asks for stdout (``-``)."""
    return target is not None and os.fspath(target) == STDOUT


def check_json_target(
    target: str | os.PathLike[str] | None, inputs: Iterable[str | os.PathLike[str]] = (), force: bool = False
) -> None:
    """Before any work: refuse a ``--json`` file that would overwrite an input or an existing file."""
    if target is not None and not json_to_stdout(target):
        check_output_path(target, list(inputs), force)


def write_json(target: str | os.PathLike[str], doc: Any, indent: int | None = 2) -> None:
    """Print ``doc`` on stdout (``target == "-"``, one line) or write it atomically to the file ``target``."""
    if json_to_stdout(target):
        print(json.dumps(doc))
        return
    with atomic_output(target) as tmp:
        Path(tmp).write_text(json.dumps(doc, indent=indent) + "\n", encoding="utf-8")
