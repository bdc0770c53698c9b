"""Pictures as PNG bytes: a view's figure (heat map, curves, intervals) and adversarial examples.

Uses matplotlib's object-oriented API with the Agg canvas, so nothing depends on a display or on
pyplot's global state. Labels often carry plugin text (names, hyperparameter values): they go
through :func:`arena.text.plot_text`, and figures are drawn without TeX, so no label is ever
read as mathtext or LaTeX.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure as Canvas
from matplotlib.ticker import PercentFormatter

from arena.artifacts import read_examples, read_png
from arena.text import plot_text

from .render import HEAT_STOPS, Figure, View, format_value, heat_colour, ink_on

#: The colour scale of the tables' heat columns, for the heat map.
HEAT_MAP = LinearSegmentedColormap.from_list(
    "arena-heat", [(stop, tuple(channel / 255 for channel in rgb)) for stop, rgb in HEAT_STOPS]
)
SIDE_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b")


def _plain_text(draw):
    """Draw with TeX off whatever the user's matplotlibrc says: labels are plain text."""

    @functools.wraps(draw)
    def drawn(*args, **kwargs):
        with rc_context({"text.usetex": False}):
            return draw(*args, **kwargs)

    return drawn


@_plain_text
def figure_png(view: View) -> bytes | None:
    """The view's figure as PNG, or None when it has none (or no rows to draw)."""
    figure = view.figure
    if figure is None or not view.rows:
        return None
    draw = {"heatmap": _heatmap, "lines": _lines, "intervals": _intervals}[figure.kind]
    return draw(view, figure)


def _png(canvas: Canvas) -> bytes:
    buffer = io.BytesIO()
    canvas.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def _values(view: View, keys: list[str]) -> np.ndarray:
    return np.array([[np.nan if row.get(k) is None else float(row[k]) for k in keys] for row in view.rows])


def _names(view: View, keys: list[str]) -> list[str]:
    names = {column.key: column.name for column in view.columns}
    return [plot_text(names.get(key, key)) for key in keys]


def _heatmap(view: View, figure: Figure) -> bytes:
    values = _values(view, figure.columns)
    rows, columns = values.shape
    canvas = Canvas(figsize=(min(max(4.0, 0.9 * columns + 3.0), 14.0), min(max(2.4, 0.45 * rows + 1.6), 14.0)))
    axes = canvas.subplots()
    image = axes.imshow(np.ma.masked_invalid(values), cmap=HEAT_MAP, vmin=0.0, vmax=1.0, aspect="auto")
    axes.set_xticks(range(columns), _names(view, figure.columns), rotation=30, ha="right")
    axes.set_yticks(range(rows), [plot_text(row[figure.label]) for row in view.rows])
    if rows * columns <= 400:  # numbers stay legible up to about 20 x 20 cells
        for (i, j), value in np.ndenumerate(values):
            if not np.isnan(value):
                axes.text(j, i, format_value(value, "percent"), ha="center", va="center", fontsize=8,
                          color=ink_on(heat_colour(value)))
    axes.set_xlabel(plot_text(figure.x_label))
    axes.set_ylabel(plot_text(figure.y_label))
    canvas.colorbar(image, ax=axes, format=PercentFormatter(1.0), label="robust accuracy")
    return _png(canvas)


def _lines(view: View, figure: Figure) -> bytes:
    values = _values(view, figure.columns)
    canvas = Canvas(figsize=(5.6, 3.8))
    axes = canvas.subplots()
    for row, line in zip(view.rows, values):
        axes.plot(figure.x, line, marker="o", label=plot_text(row[figure.label]))
    axes.set_ylim(-0.02, 1.02)
    axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes.set_xlabel(plot_text(figure.x_label))
    axes.set_ylabel(plot_text(figure.y_label))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    return _png(canvas)


def _intervals(view: View, figure: Figure) -> bytes:
    """Each row's value with its interval, best at the top, coloured by the row's ``side`` if any."""
    key = figure.columns[0]
    column = next(c for c in view.columns if c.key == key)
    rows = [row for row in view.rows if row.get(key) is not None]
    value = np.array([row[key] for row in rows], dtype=float)
    low, high = (np.array([row.get(k, v) for row, v in zip(rows, value)], dtype=float) for k in column.interval or (key, key))
    sides = sorted({str(row.get("side", "")) for row in rows})
    canvas = Canvas(figsize=(5.0, min(max(2.0, 0.32 * len(rows) + 1.2), 14.0)))
    axes = canvas.subplots()
    positions = np.arange(len(rows))[::-1]
    for index, side in enumerate(sides):
        mine = np.array([str(row.get("side", "")) == side for row in rows])
        axes.errorbar(value[mine], positions[mine], xerr=[value[mine] - low[mine], high[mine] - value[mine]],
                      fmt="o", capsize=3, color=SIDE_COLOURS[index % len(SIDE_COLOURS)],
                      label=plot_text(side) if side else None)
    axes.set_yticks(positions, [plot_text(row[figure.label]) for row in rows])
    axes.set_xlabel(plot_text(figure.x_label))
    axes.grid(axis="x", alpha=0.3)
    if len(sides) > 1:
        axes.legend(fontsize=8, loc="lower right")
    return _png(canvas)


def picture_png(value: Any) -> bytes | None:
    """The picture an ``image`` cell points to: a PNG file, or a run's stored examples; ``None``
    where the cell has none. Raises ``arena.artifacts.UnreadableArtifact`` where the file is
    missing or damaged."""
    if not value:
        return None
    path = Path(value)
    if path.suffix == ".png":
        return read_png(path)
    return examples_png(path)


def examples_png(path: str | Path, title: str = "") -> bytes:
    """Clean, adversarial and amplified perturbation for each example a run kept.

    ``path`` is the safetensors file `arena run` writes (``index``, ``x``, ``x_adv``, ``label``,
    ``adv_pred``). The perturbation is scaled per image so its largest pixel change reaches full
    contrast (grey is no change), which makes even a tiny eps visible.

    Drawn once per file (its size and modification time) and title: a page shows the same run's
    examples wherever it is the strongest attack.
    """
    file = Path(path)
    try:
        stat = file.stat()
        version: tuple[int, int] | None = (stat.st_size, stat.st_mtime_ns)
    except OSError:
        version = None  # read_examples says why
    return _examples_png(str(file), version, title)


@functools.lru_cache(maxsize=256)
def _examples_png(path: str, version: tuple[int, int] | None, title: str) -> bytes:
    return _draw_examples(path, title)


@_plain_text
def _draw_examples(path: str, title: str) -> bytes:
    """One axes holding the three rows of pictures as a mosaic (many small axes draw slowly)."""
    examples = read_examples(path)  # raises UnreadableArtifact, saying why, for a missing or damaged file
    clean, adversarial = examples["x"], examples["x_adv"]
    count = len(clean)
    canvas = Canvas(figsize=(max(1.3 * count, 3.0), 4.3))
    axes = canvas.add_axes((0.08, 0.02, 0.9, 0.86 if title else 0.94))
    axes.set_axis_off()
    if count:
        height, width = clean.shape[2], clean.shape[3]
        gap, head = max(1, round(0.3 * width)), max(1, round(0.5 * height))  # between pictures; for titles
        cell_w, cell_h = width + gap, height + head
        mosaic = np.ones((3 * cell_h, count * cell_w, 3))
        for i in range(count):
            delta = adversarial[i] - clean[i]
            scale = float(np.abs(delta).max()) or 1.0
            fooled = int(examples["adv_pred"][i]) != int(examples["label"][i])
            pictures = (
                (_rgb(clean[i], "gray"), f"#{int(examples['index'][i])}: {int(examples['label'][i])}", "black", 8),
                (_rgb(adversarial[i], "gray"), f"→ {int(examples['adv_pred'][i])}", "#c0392b" if fooled else "black", 8),
                (_rgb(0.5 + delta / (2 * scale), "seismic"), f"max |δ| {scale:.3g}", "black", 7),
            )
            for row, (picture, caption, colour, size) in enumerate(pictures):
                top, left = row * cell_h + head, i * cell_w
                mosaic[top : top + height, left : left + width] = picture
                axes.text(left + width / 2 - 0.5, top - 0.6, caption, ha="center", va="bottom", fontsize=size,
                          color=colour)
        axes.imshow(mosaic, interpolation="nearest", aspect="auto")
        for row, name in enumerate(("clean", "adversarial", "perturbation")):
            axes.text(-0.15 * width, row * cell_h + head + height / 2, name, ha="right", va="center", fontsize=8)
    if title:
        canvas.suptitle(plot_text(title), fontsize=9)
    return _png(canvas)


def _rgb(chw: np.ndarray, colours: str) -> np.ndarray:
    """A CHW picture as HWC colours: one channel through the colour map, colour pictures as they are."""
    image = _image(chw)
    if image.ndim == 2:
        return colormaps[colours](np.clip(image, 0, 1))[..., :3]
    return image


def _image(chw: np.ndarray) -> np.ndarray:
    """CHW to what imshow draws: a 2-D array for one channel, HWC for colour."""
    return chw[0] if chw.shape[0] == 1 else np.clip(np.transpose(chw, (1, 2, 0)), 0, 1)


def save_examples_png(path: str | Path, title: str = "") -> Path:
    """Write the examples picture next to the examples file and return its path."""
    target = Path(path).with_suffix(".png")
    target.write_bytes(examples_png(path, title))
    return target
