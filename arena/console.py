"""The consoles the CLI prints through: the terminal's width on a terminal, whole lines elsewhere.

Rich lays text out for 80 columns when it writes to a pipe or a file, so a table piped through
``tee`` would be cut ("linf 0…") and long messages broken across lines. Output that does not go
to a terminal is laid out as wide as it needs to be instead: tables at their natural width,
every message on one line. ``COLUMNS`` set in the environment still gives the width.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, ConsoleDimensions

#: The width of the layout when the output is not a terminal: wide enough for any table.
PIPE_WIDTH = 100_000


class OutputConsole(Console):
    """A rich console that lays out for :data:`PIPE_WIDTH` columns when its file is not a
    terminal and ``COLUMNS`` is not set; a ``width`` given to it still wins."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fixed_width = kwargs.get("width") is not None

    def _size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)  # type: ignore[attr-defined]
        if not self._fixed_width and not self.is_terminal:
            columns = self._environ.get("COLUMNS", "")  # read now: set for this command, it still wins
            return ConsoleDimensions(int(columns) if columns.isdigit() else PIPE_WIDTH, size.height)
        return size

    def _set_size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]
        self._fixed_width = True

    size = property(_size, _set_size)  # type: ignore[assignment]

    def _set_width(self, width: int) -> None:
        Console.width.fset(self, width)  # type: ignore[attr-defined]
        self._fixed_width = True

    width = property(lambda self: self.size.width, _set_width)  # type: ignore[assignment]
