"""What the autoregressive generators share: pixel levels, masked convolutions, the categorical
likelihood p(x) = Π_i p(x_i | x_<i) in raster order, and pixel-by-pixel sampling.

Each model maps an image in [0, 1] to logits over the dataset's pixel levels for every pixel,
(N, levels, H, W), where the logits of pixel i depend only on pixels before i (van den Oord
et al. 2016, eq. 1).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from arena import Generator, Range
from arena.errors import PluginError


def to_levels(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Images in [0, 1] as integer pixel levels 0..levels-1."""
    return (x * (levels - 1)).round().long().clamp(0, levels - 1)


def from_levels(index: torch.Tensor, levels: int) -> torch.Tensor:
    """Integer pixel levels as float32 images in [0, 1]."""
    return index.float() / (levels - 1)


def require_single_channel(name: str, shape: tuple[int, int, int]) -> None:
    if shape[0] != 1:
        raise PluginError(
            f"generator {name!r} models single-channel images; this dataset has {shape[0]} channels"
        )


class MaskedConv2d(nn.Conv2d):
    """A convolution whose kernel sees only the pixels before its centre in raster order
    (mask ``"A"``, for the first layer) or also the centre itself (mask ``"B"``, for later
    layers, whose centre feature already excludes the current pixel)."""

    def __init__(self, mask: str, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], **kwargs: Any):
        super().__init__(in_channels, out_channels, kernel_size, **kwargs)
        if mask not in ("A", "B"):
            raise ValueError(f"mask must be 'A' or 'B', got {mask!r}")
        height, width = self.kernel_size
        weights = torch.ones_like(self.weight)
        weights[:, :, height // 2, width // 2 + (mask == "B") :] = 0
        weights[:, :, height // 2 + 1 :] = 0
        self.register_buffer("mask", weights, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)


class PixelModel(nn.Module):
    """Base of the autoregressive networks: ``levels`` and ``shape`` travel with the model."""

    def __init__(self, levels: int, shape: tuple[int, int, int]):
        super().__init__()
        self.levels = levels
        self.shape = tuple(shape)

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) in nats per image: the sum over pixels of log p(x_i | x_<i)."""
        target = to_levels(x, self.levels)
        logits = self(from_levels(target, self.levels))
        return -F.cross_entropy(logits, target[:, 0], reduction="none").flatten(1).sum(1)


class MaskedConvolutionModel(PixelModel):
    """The layout PixelCNN and PixelRNN share (van den Oord et al. 2016): a 7x7 mask-A
    convolution, a causal ``body`` that keeps ``channels``, two 1x1 ReLU layers and a softmax over
    the pixel levels for every pixel."""

    def __init__(self, levels: int, shape: tuple[int, int, int], channels: int, head: int, body: list[nn.Module]):
        super().__init__(levels, shape)
        self.network = nn.Sequential(
            MaskedConv2d("A", shape[0], channels, 7, padding=3),
            *body,
            nn.ReLU(),
            nn.Conv2d(channels, head, 1),
            nn.ReLU(),
            nn.Conv2d(head, levels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)


class AutoregressiveGenerator(Generator):
    """Training, exact likelihood, sampling and completion for a :class:`PixelModel`."""

    likelihood = "exact"
    #: ``epochs=0`` keeps the untrained model: the baseline a trained one has to beat.
    bounds = {"epochs": Range(0), "lr": Range(0, low_inclusive=False), "batch_size": Range(1), "head": Range(1)}
    epochs: int
    lr: float
    batch_size: int

    def train(self, model, ctx):
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr)
        pixels = model.shape[0] * model.shape[1] * model.shape[2]

        def step(x: torch.Tensor) -> dict[str, float]:
            nll = -model.log_likelihood(x).mean()
            optimizer.zero_grad(set_to_none=True)
            nll.backward()
            optimizer.step()
            return {"bits_per_dim": nll.item() / pixels / math.log(2)}

        return ctx.run_epochs(model, step, epochs=self.epochs, batch_size=self.batch_size)

    def log_likelihood(self, model, x):
        return model.log_likelihood(x)

    def sample(self, model, n, generator):
        device = next(model.parameters()).device
        blank = torch.zeros(n, *model.shape, device=device)
        return self.complete(model, blank, 0, generator)

    def complete(self, model, x, known, generator):
        """Sample pixels ``known``, ``known + 1``, ... in raster order, each from
        p(x_i | x_<i) given the pixels kept and those sampled so far."""
        levels = model.levels
        _, height, width = model.shape
        images = from_levels(to_levels(x, levels), levels).clone()
        for position in range(known, height * width):
            row, column = divmod(position, width)
            probabilities = model(images)[:, :, row, column].softmax(dim=1)
            drawn = torch.multinomial(probabilities.cpu(), 1, generator=generator).squeeze(1)
            images[:, 0, row, column] = from_levels(drawn, levels).to(images.device)
        return images
