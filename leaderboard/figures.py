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
from matplotlib import rc_context
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


@_plain_text
def examples_png(path: str | Path, title: str = "") -> bytes:
    """Clean, adversarial and amplified perturbation for each example a run kept.

    ``path`` is the safetensors file the runner writes (``index``, ``x``, ``x_adv``, ``label``,
    ``adv_pred``). The perturbation is scaled per image so its largest pixel change reaches full
    contrast (grey is no change), which makes even a tiny eps visible.
    """
    examples = read_examples(path)  # raises UnreadableArtifact, saying why, for a missing or damaged file
    clean, adversarial = examples["x"], examples["x_adv"]
    count = len(clean)
    canvas = Canvas(figsize=(max(1.3 * count, 3.0), 4.3))
    grid = canvas.subplots(3, max(count, 1), squeeze=False)
    for axes in grid.ravel():
        axes.set_axis_off()
    for i in range(count):
        delta = adversarial[i] - clean[i]
        scale = float(np.abs(delta).max()) or 1.0
        grid[0, i].imshow(_image(clean[i]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        grid[0, i].set_title(f"#{int(examples['index'][i])}: {int(examples['label'][i])}", fontsize=8)
        grid[1, i].imshow(_image(adversarial[i]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        fooled = int(examples["adv_pred"][i]) != int(examples["label"][i])
        grid[1, i].set_title(f"→ {int(examples['adv_pred'][i])}", fontsize=8, color="#c0392b" if fooled else "black")
        grid[2, i].imshow(_image(0.5 + delta / (2 * scale)), cmap="seismic", vmin=0, vmax=1, interpolation="nearest")
        grid[2, i].set_title(f"max |δ| {scale:.3g}", fontsize=7)
    if count:
        for row, name in enumerate(("clean", "adversarial", "perturbation")):
            grid[row, 0].text(-0.15, 0.5, name, transform=grid[row, 0].transAxes, ha="right", va="center", fontsize=8)
    if title:
        canvas.suptitle(plot_text(title), fontsize=9)
    return _png(canvas)


def _image(chw: np.ndarray) -> np.ndarray:
    """CHW to what imshow draws: a 2-D array for one channel, HWC for colour."""
    return chw[0] if chw.shape[0] == 1 else np.clip(np.transpose(chw, (1, 2, 0)), 0, 1)


def save_examples_png(path: str | Path, title: str = "") -> Path:
    """Write the examples picture next to the examples file and return its path."""
    target = Path(path).with_suffix(".png")
    target.write_bytes(examples_png(path, title))
    return target
