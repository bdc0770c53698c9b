"""Image grids saved as PNG files, for `arena show` and the leaderboard page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .cache import atomic_write

#: Pixels on the longest side of one cell of a grid (small images are scaled up, nearest-neighbour).
CELL_PIXELS = 56
BORDER = 2


def grid(images: torch.Tensor, columns: int) -> np.ndarray:
    """Images (N, C, H, W) in [0, 1] tiled row by row into one uint8 array, with a border."""
    images = images.detach().float().cpu().clamp(0, 1)
    n, channels, height, width = images.shape
    scale = max(1, CELL_PIXELS // max(height, width))
    images = images.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    height, width = height * scale, width * scale
    rows = -(-n // columns)
    canvas = torch.ones(channels, rows * (height + BORDER) + BORDER, columns * (width + BORDER) + BORDER)
    for index, image in enumerate(images):
        top = BORDER + (index // columns) * (height + BORDER)
        left = BORDER + (index % columns) * (width + BORDER)
        canvas[:, top : top + height, left : left + width] = image
    array = (canvas * 255).round().byte().permute(1, 2, 0).numpy()
    return array[:, :, 0] if channels == 1 else array


def save_grid(images: torch.Tensor, columns: int, path: Path) -> Path:
    """Write the grid of ``images`` to ``path`` as PNG (atomically)."""
    picture = Image.fromarray(grid(images, columns))
    atomic_write(path, lambda temporary: picture.save(temporary, format="PNG"))
    return path
