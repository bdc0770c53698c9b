"""Progress reporting for training and attacking: rich progress bars on a terminal, plain lines
elsewhere (a pipe, a log file), at most one every :data:`PLAIN_INTERVAL` seconds per task and
one when a task ends."""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .console import OutputConsole
from .text import markup

Advance = Callable[..., None]

#: Seconds between two plain progress lines of one task (a task's last line is always printed).
PLAIN_INTERVAL = 10.0


class Reporter:
    """Hands out progress tasks; plugins get it through the build context.

    ``enabled``: draw rich progress bars (by default, when the console is a terminal). A console
    that is not a terminal gets plain progress lines instead, unless ``plain=False`` (or the
    console is quiet).
    """

    def __init__(self, console: Console | None = None, enabled: bool | None = None,
                 plain: bool | None = None) -> None:
        self.console = console or OutputConsole(stderr=True)
        self.enabled = self.console.is_terminal if enabled is None else enabled
        self.plain = (not self.enabled and not self.console.quiet) if plain is None else plain
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
            if self.plain:
                with self._plain_task(description, total) as advance:
                    yield advance
            else:
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

    @contextlib.contextmanager
    def _plain_task(self, description: str, total: int) -> Iterator[Advance]:
        """Progress as lines of text: ``description: 3/20 status (12.0s)`` at most every
        :data:`PLAIN_INTERVAL` seconds, and ``description: done 20/20 status in 35.2s`` (or
        ``stopped at``) when the task ends."""
        started = time.monotonic()
        state = {"done": 0, "status": "", "printed": started}

        def line(template: str) -> None:
            status = f" {state['status']}" if state["status"] else ""
            text = template.format(count=f"{state['done']}/{total}{status}",
                                   elapsed=f"{time.monotonic() - started:.1f}s")
            self.console.print(f"{markup(description)}: {markup(text)}", highlight=False, soft_wrap=True)

        def advance(steps: int = 1, status: str = "") -> None:
            state["done"] = min(state["done"] + steps, total)
            state["status"] = status or state["status"]
            if time.monotonic() - state["printed"] >= PLAIN_INTERVAL and state["done"] < total:
                state["printed"] = time.monotonic()
                line("{count} ({elapsed})")

        try:
            yield advance
        except BaseException:
            line("stopped at {count} after {elapsed}")
            raise
        state["done"] = total
        line("done {count} in {elapsed}")

    def log(self, message: str) -> None:
        """A line above the bars (or on stderr) for the user, shown as plain text."""
        self.console.print(markup(message), highlight=False, soft_wrap=True)

    def warn(self, message: str) -> None:
        """A warning above the bars (or on stderr): ``warning:`` and ``message`` as plain text."""
        self.console.print(f"[yellow]warning:[/] {markup(message)}", highlight=False, soft_wrap=True)


def quiet() -> Reporter:
    """A reporter that shows nothing."""
    return Reporter(Console(stderr=True, quiet=True), enabled=False, plain=False)
