"""Progress reporting for training and attacking: rich progress bars on a terminal, silence elsewhere."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .text import markup

Advance = Callable[..., None]


class Reporter:
    """Hands out progress tasks; plugins get it through the build context."""

    def __init__(self, console: Console | None = None, enabled: bool | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.enabled = self.console.is_terminal if enabled is None else enabled
        self._progress: Progress | None = None

    def __enter__(self) -> "Reporter":
        if self.enabled:
            self._progress = Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Advance]:
        """A progress bar; the yielded ``advance(steps=1, status="")`` moves it. The description
        and status are shown as plain text (they often name plugins)."""
        if self._progress is None:
            yield lambda steps=1, status="": None
            return
        task_id = self._progress.add_task(markup(description), total=total, status="")
        progress = self._progress

        def advance(steps: int = 1, status: str = "") -> None:
            progress.update(task_id, advance=steps, status=markup(status))

        try:
            yield advance
        finally:
            progress.update(task_id, completed=total)

    def log(self, message: str) -> None:
        """A line above the bars (or on stderr) for the user, shown as plain text."""
        self.console.print(markup(message), highlight=False)

    def warn(self, message: str) -> None:
        """A warning above the bars (or on stderr): ``warning:`` and ``message`` as plain text."""
        self.console.print(f"[yellow]warning:[/] {markup(message)}", highlight=False)


def quiet() -> Reporter:
    """A reporter that shows nothing."""
    return Reporter(Console(stderr=True, quiet=True), enabled=False)
