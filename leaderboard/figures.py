"""A run's kept adversarial examples as a PNG file (``arena show``); the HTML page draws its
figures and pictures as SVG (:mod:`arena_leaderboard.svg`).

Uses matplotlib's object-oriented API with the Agg canvas, so nothing depends on a display or on
pyplot's global state. Labels often carry plugin text (names, hyperparameter values): they go
through :func:`arena.text.plot_text`, and figures are drawn without TeX, so no label is ever
read as mathtext or LaTeX.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

from matplotlib import rc_context
from matplotlib.figure import Figure as Canvas

from arena.artifacts import local_path, read_examples
from arena.text import plot_text

from .pictures import examples_mosaic, file_version


def _plain_text(draw):
    """Draw with TeX off whatever the user's matplotlibrc says: labels are plain text."""

    @functools.wraps(draw)
    def drawn(*args, **kwargs):
        with rc_context({"text.usetex": False}):
            return draw(*args, **kwargs)

    return drawn


def _png(canvas: Canvas) -> bytes:
    buffer = io.BytesIO()
    canvas.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def examples_png(path: str | Path, title: str = "") -> bytes:
    """Clean, adversarial and amplified perturbation for each example a run kept.

    ``path`` is the stored path of the safetensors file `arena run` keeps (``index``, ``x``, ``x_adv``, ``label``,
    ``adv_pred``). The perturbation is scaled per image so its largest pixel change reaches full
    contrast (grey is no change), which makes even a tiny eps visible.

    Drawn once per file (its size and modification time) and title.
    """
    file = local_path(path)  # raises UnreadableArtifact, saying why, where the store lacks it
    return _examples_png(str(file), file_version(file), title)


@functools.lru_cache(maxsize=256)
def _examples_png(path: str, version: tuple[int, int] | None, title: str) -> bytes:
    return _draw_examples(path, title)


@_plain_text
def _draw_examples(path: str, title: str) -> bytes:
    """One axes holding the mosaic of :func:`arena_leaderboard.pictures.examples_mosaic` (many
    small axes draw slowly)."""
    examples = read_examples(path)  # raises UnreadableArtifact, saying why, for a missing or damaged file
    count = len(examples["x"])
    canvas = Canvas(figsize=(max(1.3 * count, 3.0), 4.3))
    axes = canvas.add_axes((0.08, 0.02, 0.9, 0.86 if title else 0.94))
    axes.set_axis_off()
    if count:
        mosaic = examples_mosaic(examples)
        for caption in mosaic.captions:
            axes.text(caption.x, caption.y, caption.text, ha="center", va="bottom", fontsize=caption.size,
                      color=caption.colour)
        axes.imshow(mosaic.pixels, interpolation="nearest", aspect="auto")
        for middle, name in mosaic.labels:
            axes.text(-0.15 * mosaic.width, middle, name, ha="right", va="center", fontsize=8)
    if title:
        canvas.suptitle(plot_text(title), fontsize=9)
    return _png(canvas)


def save_examples_png(path: str | Path, title: str, target: Path) -> Path:
    """Write the examples picture to ``target`` and return it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(examples_png(path, title))
    return target
