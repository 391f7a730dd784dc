"""The CLI's progress bar on stderr, shared by every command module (``cli.py`` and ``*/cli_commands.py``)."""

from __future__ import annotations

from rich.console import Console

__all__ = ["progress"]

err_console = Console(stderr=True)


class progress:
    """Rich progress bar on stderr (off when stderr is not a terminal); yields ``advance(done, total)``."""

    def __init__(self, description: str) -> None:
        self.description = description

    def __enter__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._p = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            disable=not err_console.is_terminal,
            transient=True,
        )
        self._p.__enter__()
        self._task = self._p.add_task(self.description, total=None)

        def advance(done: int, total: int) -> None:
            self._p.update(self._task, completed=done, total=total)

        return advance

    def __exit__(self, *exc) -> None:
        self._p.__exit__(*exc)
