"""PixelCNN (van den Oord, Kalchbrenner & Kavukcuoglu 2016, "Pixel Recurrent Neural Networks")."""

from __future__ import annotations

import torch
from torch import nn

import arena

from .autoregressive import AutoregressiveGenerator, MaskedConv2d, MaskedConvolutionModel, require_single_channel


class ResidualBlock(nn.Module):
    """The PixelCNN residual block of the paper's figure 5: ReLU, 1x1 conv 2h→h, ReLU, 3x3
    mask-B conv h→h, ReLU, 1x1 conv h→2h, plus the input."""

    def __init__(self, channels: int):
        super().__init__()
        half = channels // 2
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, half, 1),
            nn.ReLU(),
            MaskedConv2d("B", half, half, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(half, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class PixelCNNModel(MaskedConvolutionModel):
    """A 7x7 mask-A convolution, residual blocks of 3x3 mask-B convolutions, two 1x1 ReLU layers
    and a softmax over the pixel levels for every pixel."""

    def __init__(self, levels: int, shape: tuple[int, int, int], channels: int, blocks: int, head: int):
        super().__init__(levels, shape, channels, head, [ResidualBlock(channels) for _ in range(blocks)])


class PixelCNN(AutoregressiveGenerator):
    """PixelCNN: masked convolutions (mask A, then B), a softmax over pixel levels per pixel."""

    name = "pixelcnn"
    bounds = {"channels": arena.Range(2), "blocks": arena.Range(1)}

    def __init__(self, channels: int = 64, blocks: int = 6, head: int = 128, epochs: int = 20, lr: float = 2e-3,
                 batch_size: int = 64):
        self.channels = channels
        self.blocks = blocks
        self.head = head
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size

    def validate(self):
        if self.channels % 2:
            raise arena.ArenaError(f"channels={self.channels} is not even (the residual layers halve it)")

    def build(self, dataset, ctx):
        require_single_channel(self.name, dataset.shape)
        return PixelCNNModel(dataset.levels, dataset.shape, self.channels, self.blocks, self.head)


@arena.hookimpl
def register_generators(register):
    register(PixelCNN)
