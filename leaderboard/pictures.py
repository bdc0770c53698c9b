"""Pictures without a plotting library: a run's kept examples laid out as one mosaic, and PNG
encoding of an RGB array.

The mosaic is shared by the two drawings of the examples: the PNG ``arena show`` writes (drawn
with matplotlib, :mod:`arena_leaderboard.figures`) and the SVG the HTML page embeds
(:mod:`arena_leaderboard.svg`), so both show the same pictures, captions and colours.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: matplotlib's ``seismic`` colour map (blue, white, red): the stops of its segment data.
SEISMIC = np.array([(0.0, 0.0, 0.3), (0.0, 0.0, 1.0), (1.0, 1.0, 1.0), (1.0, 0.0, 0.0), (0.5, 0.0, 0.0)])
ROW_NAMES = ("clean", "adversarial", "perturbation")
FOOLED = "#c0392b"


@dataclass
class Caption:
    x: float  # centre of the text, in mosaic pixels
    y: float  # baseline
    text: str
    colour: str = "black"
    size: int = 8


@dataclass
class Mosaic:
    """Three rows of pictures (clean, adversarial, amplified perturbation) with their captions.

    ``pixels`` is HxWx3 in [0, 1]; captions sit in the gaps above the pictures (``head`` pixels
    high); ``labels`` are the row names' vertical centres.
    """

    pixels: np.ndarray
    captions: list[Caption] = field(default_factory=list)
    labels: list[tuple[float, str]] = field(default_factory=list)
    width: int = 0  # one picture's width in pixels (the row names sit left of the mosaic)


#: Examples a picture shows (what a run keeps by default).
SHOWN = 8


def examples_mosaic(examples: dict[str, np.ndarray]) -> Mosaic:
    """The mosaic of an examples file's arrays (``index``, ``x``, ``x_adv``, ``label``, ``adv_pred``).

    The perturbation is scaled per image so its largest pixel change reaches full contrast (grey
    is no change), which makes even a tiny eps visible.
    """
    # A run that kept every attacked sample's example (--keep-examples all) keeps its successful
    # ones first, as one that kept a few: the picture shows the first few.
    examples = {name: values[:SHOWN] for name, values in examples.items()}
    clean, adversarial = examples["x"], examples["x_adv"]
    count = len(clean)
    if not count:
        return Mosaic(np.ones((1, 1, 3)))
    height, width = clean.shape[2], clean.shape[3]
    gap, head = max(1, round(0.3 * width)), max(1, round(0.5 * height))  # between pictures; for titles
    cell_w, cell_h = width + gap, height + head
    mosaic = Mosaic(np.ones((3 * cell_h, count * cell_w, 3)), width=width)
    for i in range(count):
        delta = adversarial[i] - clean[i]
        scale = float(np.abs(delta).max()) or 1.0
        fooled = int(examples["adv_pred"][i]) != int(examples["label"][i])
        pictures = (
            (_rgb(clean[i], False), f"#{int(examples['index'][i])}: {int(examples['label'][i])}", "black", 8),
            (_rgb(adversarial[i], False), f"→ {int(examples['adv_pred'][i])}", FOOLED if fooled else "black", 8),
            (_rgb(0.5 + delta / (2 * scale), True), f"max |δ| {scale:.3g}", "black", 7),
        )
        for row, (picture, text, colour, size) in enumerate(pictures):
            top, left = row * cell_h + head, i * cell_w
            mosaic.pixels[top : top + height, left : left + width] = picture
            mosaic.captions.append(Caption(left + width / 2 - 0.5, top - 0.6, text, colour, size))
    mosaic.labels = [(row * cell_h + head + height / 2, name) for row, name in enumerate(ROW_NAMES)]
    return mosaic


def _rgb(chw: np.ndarray, diverging: bool) -> np.ndarray:
    """A CHW picture as HWC colours: one channel in grey (or, ``diverging``, blue-white-red),
    colour pictures as they are."""
    if chw.shape[0] != 1:
        return np.clip(np.transpose(chw, (1, 2, 0)), 0, 1)
    image = np.clip(chw[0], 0, 1)
    if not diverging:
        return np.repeat(image[..., None], 3, axis=-1)
    stops = np.linspace(0.0, 1.0, len(SEISMIC))
    return np.stack([np.interp(image, stops, SEISMIC[:, channel]) for channel in range(3)], axis=-1)


def file_version(path: str | Path) -> tuple[int, int] | None:
    """A file's size and modification time, what a drawing of it is cached by (None where it
    cannot be read: the reader then says why)."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def png_bytes(pixels: np.ndarray) -> bytes:
    """An HxWx3 array in [0, 1] as an 8-bit RGB PNG (no filter, zlib level 6)."""
    data = np.round(np.clip(pixels, 0.0, 1.0) * 255).astype(np.uint8)
    height, width = data.shape[:2]
    raw = np.concatenate([np.zeros((height, 1), np.uint8), data.reshape(height, width * 3)], axis=1).tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
