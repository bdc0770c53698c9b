"""The HTML page's figures as SVG: heat maps, curves, intervals and a run's kept examples.

Written directly as SVG text (no plotting library): a campaign's page holds a figure for every
threat model and a picture for every strongest attack, and drawing them through matplotlib took
most of the page's time. The page embeds each as an ``<img>`` (``data:image/svg+xml``), so
nothing in a figure can run script. All text (plugin names, hyperparameter values) is escaped
through :func:`arena.text.html_text`.

Text widths are estimated (a sans-serif character is about 0.6 of the font size wide); long
labels are shortened with an ellipsis.
"""

from __future__ import annotations

import base64
import functools
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from arena.artifacts import local_path, read_examples
from arena.text import html_text, visible

from .pictures import examples_mosaic, file_version, png_bytes
from .render import HEAT_STOPS, Figure, View, format_value, heat_colour, ink_on

FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif"'
#: matplotlib's default colour cycle ("tab10"), for lines and the sides of an interval plot.
CYCLE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
         "#17becf")
SIDE_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b")
LONGEST = 40  # characters of a label before it is shortened


def figure_svg(view: View) -> str | None:
    """The view's figure as an SVG document, or None when it has none (or no rows to draw)."""
    figure = view.figure
    if figure is None or not view.rows:
        return None
    draw = {"heatmap": _heatmap, "lines": _lines, "intervals": _intervals}[figure.kind]
    return draw(view, figure)


def svg_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def _t(value: Any) -> str:
    return html_text(_short(value))


def _short(value: Any) -> str:
    text = visible(value)
    return text if len(text) <= LONGEST else text[: LONGEST - 1] + "…"


def _width(text: str, size: float) -> float:
    return 0.6 * size * len(_short(text))


def _document(width: float, height: float, body: Iterable[str]) -> str:
    width, height = math.ceil(width), math.ceil(height)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" {FONT} font-size="11"><rect width="100%" height="100%" fill="white"/>'
            + "".join(body) + "</svg>")


def _text(x: float, y: float, value: Any, anchor: str = "middle", size: float = 11, colour: str = "#1d2330",
          extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" fill="{colour}"{extra}>'
            f"{_t(value)}</text>")


def _values(view: View, keys: list[str]) -> np.ndarray:
    return np.array([[np.nan if row.get(k) is None else float(row[k]) for k in keys] for row in view.rows])


def _names(view: View, keys: list[str]) -> list[str]:
    names = {column.key: column.name for column in view.columns}
    return [names.get(key, key) for key in keys]


def _rgb(colour: tuple[int, int, int]) -> str:
    return "#%02x%02x%02x" % colour


def nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick values covering [low, high] (steps of 1, 2 or 5 times a power of ten)."""
    if not math.isfinite(low) or not math.isfinite(high):
        return []
    if high <= low:
        low, high = low - 1.0, high + 1.0
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9)
    return [round(k * step, 12) for k in range(first, math.floor(high / step + 1e-9) + 1)]


def _heatmap(view: View, figure: Figure) -> str:
    values = _values(view, figure.columns)
    rows, columns = values.shape
    cell_w, cell_h = 58, 24
    labels = [row[figure.label] for row in view.rows]
    names = _names(view, figure.columns)
    left = 24 + max(_width(label, 11) for label in labels) + 8
    top = 10
    slant = max(_width(name, 11) for name in names) * math.sin(math.radians(35)) + 16
    plot_w, plot_h = columns * cell_w, rows * cell_h
    bar_x = left + plot_w + 16
    width, height = bar_x + 14 + 48, top + plot_h + slant + 22
    body = []
    legible = rows * columns <= 400  # numbers stay legible up to about 20 x 20 cells
    for (i, j), value in np.ndenumerate(values):
        x, y = left + j * cell_w, top + i * cell_h
        if np.isnan(value):
            body.append(f'<rect x="{x}" y="{y}" width="{cell_w}" height="{cell_h}" fill="#eef1f6"/>')
            continue
        colour = heat_colour(value)
        body.append(f'<rect x="{x}" y="{y}" width="{cell_w}" height="{cell_h}" fill="{_rgb(colour)}"/>')
        if legible:
            body.append(_text(x + cell_w / 2, y + cell_h / 2 + 4, format_value(value, "percent"), size=10,
                              colour=ink_on(colour)))
    body.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#5b6474"/>')
    for i, label in enumerate(labels):
        body.append(_text(left - 6, top + i * cell_h + cell_h / 2 + 4, label, anchor="end"))
    for j, name in enumerate(names):
        x, y = left + j * cell_w + cell_w / 2, top + plot_h + 12
        body.append(_text(x, y, name, anchor="end", extra=f' transform="rotate(-35 {x:.1f} {y:.1f})"'))
    body.append(_text(left + plot_w / 2, height - 6, figure.x_label))
    middle = top + plot_h / 2
    body.append(_text(12, middle, figure.y_label, extra=f' transform="rotate(-90 12 {middle:.1f})"'))
    # The colour bar: the scale of the tables' heat columns, 100% at the top.
    stops = "".join(f'<stop offset="{1 - stop:g}" stop-color="{_rgb(rgb)}"/>' for stop, rgb in reversed(HEAT_STOPS))
    body.append(f'<defs><linearGradient id="heat" x1="0" y1="0" x2="0" y2="1">{stops}</linearGradient></defs>')
    body.append(f'<rect x="{bar_x}" y="{top}" width="14" height="{plot_h}" fill="url(#heat)" stroke="#5b6474"/>')
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = top + (1 - tick) * plot_h
        body.append(f'<line x1="{bar_x + 14}" y1="{y:.1f}" x2="{bar_x + 18}" y2="{y:.1f}" stroke="#5b6474"/>')
        body.append(_text(bar_x + 20, y + 4, f"{tick:.0%}", anchor="start", size=10))
    return _document(width, height, body)


def _lines(view: View, figure: Figure) -> str:
    values = _values(view, figure.columns)
    xs = np.asarray(figure.x, dtype=float)
    labels = [row[figure.label] for row in view.rows]
    left, top, plot_w, plot_h = 56, 10, 400, 260
    legend_x = left + plot_w + 16
    width = legend_x + 22 + max(_width(label, 10) for label in labels)
    height = max(top + plot_h + 44, top + 16 * len(labels) + 10)
    x_ticks = nice_ticks(float(xs.min()), float(xs.max()))
    x_low, x_high = min([float(xs.min()), *x_ticks]), max([float(xs.max()), *x_ticks])
    span = (x_high - x_low) or 1.0

    def px(x: float) -> float:
        return left + (x - x_low) / span * plot_w

    def py(y: float) -> float:
        return top + (1.02 - y) / 1.04 * plot_h

    body = []
    for tick in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        body.append(f'<line x1="{left}" y1="{py(tick):.1f}" x2="{left + plot_w}" y2="{py(tick):.1f}" stroke="#d9dee7"/>')
        body.append(_text(left - 6, py(tick) + 4, f"{tick:.0%}", anchor="end", size=10))
    for tick in x_ticks:
        body.append(f'<line x1="{px(tick):.1f}" y1="{top}" x2="{px(tick):.1f}" y2="{top + plot_h}" stroke="#d9dee7"/>')
        body.append(_text(px(tick), top + plot_h + 14, format_value(tick, "number"), size=10))
    body.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#5b6474"/>')
    for index, (label, line) in enumerate(zip(labels, values)):
        colour = CYCLE[index % len(CYCLE)]
        points = [(px(x), py(y)) for x, y in zip(xs, line) if not np.isnan(y)]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
        body += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in points]
        y = top + 8 + 16 * index
        body.append(f'<line x1="{legend_x}" y1="{y}" x2="{legend_x + 16}" y2="{y}" stroke="{colour}" stroke-width="2"/>')
        body.append(_text(legend_x + 20, y + 4, label, anchor="start", size=10))
    body.append(_text(left + plot_w / 2, top + plot_h + 34, figure.x_label))
    middle = top + plot_h / 2
    body.append(_text(12, middle, figure.y_label, extra=f' transform="rotate(-90 12 {middle:.1f})"'))
    return _document(width, height, body)


def _intervals(view: View, figure: Figure) -> str:
    """Each row's value with its interval, best at the top, coloured by the row's ``side`` if any."""
    key = figure.columns[0]
    column = next(c for c in view.columns if c.key == key)
    rows = [row for row in view.rows if row.get(key) is not None]
    if not rows:
        return None  # type: ignore[return-value]
    value = np.array([row[key] for row in rows], dtype=float)
    low, high = (np.array([row.get(k, v) for row, v in zip(rows, value)], dtype=float)
                 for k in column.interval or (key, key))
    low, high = np.where(np.isnan(low), value, low), np.where(np.isnan(high), value, high)
    sides = sorted({str(row.get("side", "")) for row in rows})
    labels = [row[figure.label] for row in rows]
    step = 20
    left, top, plot_w = 8 + max(_width(label, 11) for label in labels) + 8, 10, 360
    plot_h = step * len(rows)
    ticks = nice_ticks(float(low.min()), float(high.max()))
    x_low, x_high = min([float(low.min()), *ticks]), max([float(high.max()), *ticks])
    span = (x_high - x_low) or 1.0

    def px(x: float) -> float:
        return left + 6 + (x - x_low) / span * (plot_w - 12)

    legend = 16 * len(sides) if len(sides) > 1 else 0
    width, height = left + plot_w + 10, top + plot_h + 40 + legend
    body = []
    for tick in ticks:
        body.append(f'<line x1="{px(tick):.1f}" y1="{top}" x2="{px(tick):.1f}" y2="{top + plot_h}" stroke="#d9dee7"/>')
        body.append(_text(px(tick), top + plot_h + 14, format_value(tick, column.kind if column.kind in ("percent", "rating") else "number"), size=10))
    body.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#5b6474"/>')
    for i, (row, label) in enumerate(zip(rows, labels)):
        y = top + step * i + step / 2
        colour = SIDE_COLOURS[sides.index(str(row.get("side", ""))) % len(SIDE_COLOURS)]
        a, b, c = px(low[i]), px(value[i]), px(high[i])
        body.append(f'<line x1="{a:.1f}" y1="{y:.1f}" x2="{c:.1f}" y2="{y:.1f}" stroke="{colour}" stroke-width="1.4"/>')
        body += [f'<line x1="{end:.1f}" y1="{y - 4:.1f}" x2="{end:.1f}" y2="{y + 4:.1f}" stroke="{colour}"/>' for end in (a, c)]
        body.append(f'<circle cx="{b:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}"/>')
        body.append(_text(left - 6, y + 4, label, anchor="end"))
    body.append(_text(left + plot_w / 2, top + plot_h + 32, figure.x_label))
    if len(sides) > 1:
        for index, side in enumerate(sides):
            y = top + plot_h + 44 + 16 * index
            colour = SIDE_COLOURS[index % len(SIDE_COLOURS)]
            body.append(f'<circle cx="{left + 8}" cy="{y - 4}" r="3.5" fill="{colour}"/>')
            body.append(_text(left + 16, y, side, anchor="start", size=10))
    return _document(width, height, body)


def examples_svg(path: str | Path) -> str:
    """Clean, adversarial and amplified perturbation for each example a run kept (the mosaic of
    :func:`arena_leaderboard.pictures.examples_mosaic`, each picture about 64 pixels wide).

    Drawn once per file (its size and modification time): a page shows the same run's examples
    wherever it is the strongest attack. Raises ``arena.artifacts.UnreadableArtifact`` for a
    missing or damaged file.
    """
    file = local_path(path)
    return _examples_svg(str(file), file_version(file))


@functools.lru_cache(maxsize=256)
def _examples_svg(path: str, version: tuple[int, int] | None) -> str:
    mosaic = examples_mosaic(read_examples(path))
    height, width = mosaic.pixels.shape[:2]
    zoom = 64 / max(mosaic.width, 1) if mosaic.width else 4.0  # a picture about 64 screen pixels wide
    left = 86
    png = base64.b64encode(png_bytes(mosaic.pixels)).decode("ascii")
    body = [f'<image x="{left}" y="0" width="{width * zoom:.1f}" height="{height * zoom:.1f}" '
            f'preserveAspectRatio="none" style="image-rendering: pixelated" href="data:image/png;base64,{png}"/>']
    body += [_text(left + caption.x * zoom, caption.y * zoom, caption.text, size=caption.size + 3, colour=caption.colour)
             for caption in mosaic.captions]
    body += [_text(left - 8, middle * zoom + 4, name, anchor="end") for middle, name in mosaic.labels]
    return _document(left + width * zoom + 4, height * zoom + 2, body)
