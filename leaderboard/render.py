"""Views and their text renderers: every view as a rich table, Markdown, CSV or JSON.

A :class:`View` is a titled table plus what a renderer needs to know about it: which track it
belongs to, notes, which columns carry a colour scale or an interval, and optionally a
:class:`Figure` drawn from its own rows (the HTML page draws figures; text formats leave them
out). Renderers know nothing about any particular view, so a new view slots into every format.

Titles, notes, column names and cells often carry plugin text (names, hyperparameter values),
so every renderer escapes them for its format through :mod:`arena.text`.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import textwrap
from dataclasses import dataclass, field
from typing import Any

from rich.color import Color, blend_rgb
from rich.color_triplet import ColorTriplet
from rich.cells import cell_len, chop_cells
from rich.console import Group
from rich.style import Style
from rich.text import Span, Text

from arena.text import csv_field, markdown, visible

#: The track of a built-in table whose view names none (views of a registered track name their
#: ``tracks``, see :meth:`arena.Track.views`; any other table is its own track).
TABLE_TRACKS = {"defenses": "robustness", "attacks": "attacks", "generators": "generative"}

#: Colour scale of heat columns, bad (0) to good (1): ColorBrewer's RdYlGn, as in most heat maps.
HEAT_STOPS = (
    (0.0, (165, 0, 38)),
    (0.25, (244, 109, 67)),
    (0.5, (254, 224, 139)),
    (0.75, (166, 217, 106)),
    (1.0, (0, 104, 55)),
)


@dataclass
class Column:
    """One column: its header, the row key it shows and how to show the value.

    ``kind`` is ``text``, ``percent`` (a fraction), ``number``, ``int``, ``rating`` (rounded to a
    whole number), ``mark`` (a boolean shown as a flag) or ``image`` (a path to a picture, drawn
    only on the HTML page). ``interval`` names the row keys of a confidence interval shown after
    the value; ``spread`` names the row key of a standard deviation shown as ``± sd`` after the
    value where the row has one; ``heat`` colours the cells by value on a 0..1 scale.
    """

    name: str
    key: str
    kind: str = "text"
    interval: tuple[str, str] | None = None
    heat: bool = False
    spread: str | None = None

    @property
    def numeric(self) -> bool:
        return self.kind in ("percent", "number", "int", "rating")


@dataclass
class Figure:
    """A picture of (part of) a view's own table.

    ``heatmap``: rows by ``columns``; ``lines``: one line per row through ``columns`` placed at
    ``x``; ``intervals``: each row's value in ``columns[0]`` with that column's interval.
    ``label`` is the row key that names rows.
    """

    kind: str
    label: str
    columns: list[str]
    x: list[float] | None = None
    x_label: str = ""
    y_label: str = ""


@dataclass
class View:
    """A titled table: what every renderer draws."""

    title: str
    table: str
    group: dict[str, Any]
    columns: list[Column]
    rows: list[dict[str, Any]]
    tracks: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)
    figure: Figure | None = None
    #: Only for the Markdown, CSV and JSON exports (e.g. the provenance of every run), not for
    #: the terminal or the HTML page.
    export_only: bool = False

    def __post_init__(self) -> None:
        if not self.tracks:
            self.tracks = (TABLE_TRACKS.get(self.table, self.table),)


def format_value(value: Any, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "percent":
        return _unsigned_zero(f"{100 * value:.1f}") + "%"
    if kind == "number":
        return _unsigned_zero(f"{value:.3g}")
    if kind in ("int", "rating"):
        return _unsigned_zero(f"{value:.0f}")
    if kind == "mark":
        return "⚑" if value else ""
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def _unsigned_zero(text: str) -> str:
    """``-0``, ``-0.0``: a value that rounds to zero is shown without a sign."""
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def format_cell(row: dict[str, Any], column: Column) -> str:
    """The cell as text, with its spread and its interval when the column has them."""
    text = format_value(row.get(column.key), column.kind)
    if column.spread and row.get(column.spread) is not None and row.get(column.key) is not None:
        text += f" ± {format_value(row.get(column.spread), column.kind)}"
    if column.interval and row.get(column.interval[0]) is not None:
        low, high = (format_value(row.get(key), column.kind) for key in column.interval)
        text += f" ({low}–{high})"
    return text


def heat_colour(value: float) -> tuple[int, int, int]:
    """The colour of a value on the 0..1 scale of :data:`HEAT_STOPS`."""
    value = min(max(float(value), 0.0), 1.0)
    for (start, low), (end, high) in zip(HEAT_STOPS, HEAT_STOPS[1:]):
        if value <= end:
            mixed = blend_rgb(ColorTriplet(*low), ColorTriplet(*high), (value - start) / (end - start))
            return mixed.red, mixed.green, mixed.blue
    return HEAT_STOPS[-1][1]


def ink_on(rgb: tuple[int, int, int]) -> str:
    """Black or white, whichever reads better on this background (ITU-R BT.601 luma)."""
    red, green, blue = rgb
    return "black" if 0.299 * red + 0.587 * green + 0.114 * blue >= 140 else "white"


def _shown(view: View) -> list[Column]:
    return [column for column in view.columns if column.kind != "image"]


def render_rich(views: list[View], width: int = 80) -> list[Group]:
    """Each view as its title, its table and its notes, as rich text; a view too wide for
    ``width`` is split into several tables that repeat its leading label columns.

    Tables are laid out here, as lines of styled text (a header, a rule, a line per row; text
    cells wrap, never cut), rather than as rich ``Table`` objects: a campaign's leaderboard holds
    a hundred tables, and rich's general table layout took most of the command's time.
    """
    rendered = []
    for view in views:
        if view.export_only:
            continue
        cells = {column.key: [visible(format_cell(row, column)) for row in view.rows] for column in _shown(view)}
        pages = _column_pages(view, cells, width)
        for number, columns in enumerate(pages):
            title = view.title if number == 0 else f"{view.title} (continued)"
            notes = [Text(visible(note), style="dim") for note in view.notes] if number == len(pages) - 1 else []
            table = _text_table(view, columns, cells, width)
            rendered.append(Group(Text(visible(title), style="bold italic"), table, *notes))
    return rendered


#: Text columns wrap, so they need no more than this many characters when space is short.
_WRAPPED_TEXT = 24
#: Between two columns, and at each edge of a table.
_GAP, _EDGE = 2, 1


def _natural(column: Column, cells: dict[str, list[str]]) -> int:
    return max([cell_len(visible(column.name)), *(cell_len(text) for text in cells[column.key])])


def _column_pages(view: View, cells: dict[str, list[str]], width: int) -> list[list[Column]]:
    """The view's columns in groups that each fit ``width``, leading text columns on every page."""
    columns = _shown(view)
    labels = []
    for column in columns:
        if column.kind != "text":
            break
        labels.append(column)
    rest = columns[len(labels):]

    def needed(column: Column) -> int:
        natural = _natural(column, cells)
        return _GAP + (min(natural, _WRAPPED_TEXT) if column.kind == "text" else natural)

    room = width - 2 * _EDGE + _GAP  # the first column has no gap before it
    base = sum(needed(column) for column in labels)
    pages: list[list[Column]] = []
    used = room  # forces a first page
    for column in rest:
        size = needed(column)
        if used + size > room and (not pages or len(pages[-1]) > len(labels)):
            pages.append(list(labels))
            used = base
        pages[-1].append(column)
        used += size
    return pages or [labels]


def _widths(columns: list[Column], cells: dict[str, list[str]], width: int) -> list[int]:
    """Each column's width: its natural width, text columns narrowed (widest first, never below
    :data:`_WRAPPED_TEXT` or their header's longest word) while the table is wider than ``width``."""
    widths = [_natural(column, cells) for column in columns]
    excess = 2 * _EDGE + _GAP * (len(columns) - 1) + sum(widths) - width
    while excess > 0:
        floors = [max(_WRAPPED_TEXT, *(cell_len(word) for word in visible(c.name).split() or [""]))
                  if c.kind == "text" else w for c, w in zip(columns, widths)]
        narrowable = [i for i, (w, floor) in enumerate(zip(widths, floors)) if w > floor]
        if not narrowable:
            break
        widest = max(narrowable, key=lambda i: widths[i])
        cut = min(excess, widths[widest] - floors[widest])
        widths[widest] -= cut
        excess -= cut
    return widths


def _wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` cells, broken between words where it can be."""
    if cell_len(text) <= width:
        return [text]
    if text.isascii():
        return textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False) or [""]
    return chop_cells(text, width)


def _pad(text: str, width: int, right: bool) -> str:
    space = " " * max(width - cell_len(text), 0)
    return space + text if right else text + space


def _text_table(view: View, columns: list[Column], cells: dict[str, list[str]], width: int) -> Text:
    """Header (bold), a rule, then a line per row (more where a text cell wraps)."""
    widths = _widths(columns, cells, width)
    right = [column.kind != "text" for column in columns]
    parts: list[str] = []
    spans: list[Span] = []
    offset = 0

    def line(texts: list[str], styles: list[Any]) -> None:
        nonlocal offset
        parts.append(" " * _EDGE)
        offset += _EDGE
        for index, (text, style) in enumerate(zip(texts, styles)):
            if index:
                parts.append(" " * _GAP)
                offset += _GAP
            parts.append(text)
            if style is not None:
                spans.append(Span(offset, offset + len(text), style))
            offset += len(text)
        parts.append(" " * _EDGE + "\n")
        offset += _EDGE + 1

    header = [_wrap(visible(column.name), w) for column, w in zip(columns, widths)]
    bold = ["bold"] * len(columns)
    for depth in range(max(len(lines) for lines in header)):
        line([_pad(lines[depth] if depth < len(lines) else "", w, r) for lines, w, r in zip(header, widths, right)], bold)
    rule = " " * _EDGE + "─" * (sum(widths) + _GAP * (len(columns) - 1)) + " " * _EDGE + "\n"
    parts.append(rule)
    offset += len(rule)
    plain = [None] * len(columns)
    for index, row in enumerate(view.rows):
        wrapped = [_wrap(cells[column.key][index], w) for column, w in zip(columns, widths)]
        styles = [_cell_style(row, column) for column in columns]
        for depth in range(max(len(lines) for lines in wrapped)):
            line([_pad(lines[depth] if depth < len(lines) else "", w, r) for lines, w, r in zip(wrapped, widths, right)],
                 styles if depth == 0 else plain)
    text = "".join(parts).rstrip() + "\n"  # a blank line between the table and its notes
    return Text(text, spans=[span for span in spans if span.end <= len(text)], no_wrap=True, overflow="ignore")


@functools.lru_cache(maxsize=1024)
def _heat_style(value: float) -> Style:
    background = heat_colour(value)
    return Style(color=ink_on(background), bgcolor=Color.from_rgb(*background))


def _cell_style(row: dict[str, Any], column: Column) -> Style | str | None:
    value = row.get(column.key)
    if column.heat and isinstance(value, (int, float)):
        return _heat_style(float(value))
    if column.kind == "mark" and value:
        return "bold yellow"
    return None


def render_markdown(views: list[View]) -> str:
    parts = []
    for view in views:
        columns = _shown(view)
        header = "| " + " | ".join(markdown(c.name) for c in columns) + " |"
        rule = "|" + "|".join("---" if c.kind == "text" else "---:" for c in columns) + "|"
        lines = [f"### {markdown(view.title)}", ""]
        lines += [f"_{markdown(note)}_" for note in view.notes] + ([""] if view.notes else [])
        lines += [header, rule]
        for row in view.rows:
            cells = (markdown(format_cell(row, c)) for c in columns)
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def render_csv(views: list[View]) -> str:
    """One tidy table: a row per leaderboard entry, with its view's group and table name."""
    group_keys: list[str] = []
    keys: list[str] = []
    for view in views:
        _extend(group_keys, view.group)
        for column in view.columns:
            _extend(keys, [column.key, *([column.spread] if column.spread else []), *(column.interval or ())])
    fields = ["table", *group_keys, *(k for k in keys if k not in group_keys)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([csv_field(name) for name in fields])
    for view in views:
        for row in view.rows:
            record = {"table": view.table, **view.group}
            for key, value in row.items():
                record[key] = ";".join(map(str, value)) if isinstance(value, (list, tuple)) else value
            writer.writerow([csv_field(record.get(name, "")) for name in fields])
    return buffer.getvalue()


def _extend(keys: list[str], new: Any) -> None:
    for key in new:
        if key not in keys:
            keys.append(key)


def render_json(views: list[View]) -> str:
    payload = [
        {
            "title": view.title,
            "table": view.table,
            "tracks": list(view.tracks),
            **view.group,
            "columns": [c.key for c in view.columns],
            "notes": view.notes,
            "entries": view.rows,
        }
        for view in views
    ]
    return json.dumps(payload, indent=2)
