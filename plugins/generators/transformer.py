"""The Image Transformer (Parmar et al. 2018) with local 1D self-attention."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import arena

from .autoregressive import AutoregressiveGenerator, PixelModel, require_single_channel, to_levels


def local_causal_mask(length: int, block: int, memory: int) -> torch.Tensor:
    """Which positions each position attends to (True = allowed) under local 1D attention:
    the sequence is cut into query blocks of ``block`` positions; a query sees the positions of
    its own block up to itself and the ``memory`` positions before the block."""
    position = torch.arange(length)
    start = (position // block) * block
    key = position[None, :]
    return (key <= position[:, None]) & (key >= (start - memory)[:, None])


def coordinate_encoding(height: int, width: int, dim: int) -> torch.Tensor:
    """Sine and cosine functions of the row and of the column, dim/2 channels each (the
    paper's positional encoding for images), as a (height * width, dim) table."""
    half = dim // 2

    def sinusoid(positions: torch.Tensor, channels: int) -> torch.Tensor:
        frequencies = torch.exp(-math.log(10000.0) * torch.arange(0, channels, 2) / channels)
        angles = positions[:, None].float() * frequencies[None, :]
        table = torch.zeros(len(positions), channels)
        table[:, 0::2] = angles.sin()
        table[:, 1::2] = angles.cos()[:, : channels // 2]
        return table

    rows = sinusoid(torch.arange(height), half).repeat_interleave(width, dim=0)
    columns = sinusoid(torch.arange(width), dim - half).repeat(height, 1)
    return torch.cat([rows, columns], dim=1)


class DecoderLayer(nn.Module):
    """Masked multi-head self-attention and a position-wise ReLU feed-forward layer, each with a
    residual connection and layer normalisation (Vaswani et al. 2017)."""

    def __init__(self, dim: int, heads: int, feedforward: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.feedforward = nn.Sequential(nn.Linear(dim, feedforward), nn.ReLU(), nn.Linear(feedforward, dim))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = self.norm1(x + self.out(attended.transpose(1, 2).reshape(batch, length, dim)))
        return self.norm2(x + self.feedforward(x))


class ImageTransformerModel(PixelModel):
    """Pixels in raster order as a sequence of categorical intensities, each embedded in ``dim``
    channels and shifted right by one (a learned start vector first), plus coordinate
    encodings; decoder layers with local 1D masked attention; a softmax over levels."""

    def __init__(self, levels: int, shape: tuple[int, int, int], dim: int, heads: int, layers: int,
                 feedforward: int, block: int, memory: int):
        super().__init__(levels, shape)
        _, height, width = shape
        self.embed = nn.Embedding(levels, dim)
        self.start = nn.Parameter(torch.zeros(dim))
        self.layers = nn.ModuleList(DecoderLayer(dim, heads, feedforward) for _ in range(layers))
        self.logits = nn.Linear(dim, levels)
        self.register_buffer("positions", coordinate_encoding(height, width, dim), persistent=False)
        self.register_buffer("mask", local_causal_mask(height * width, block, memory), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = len(x)
        _, height, width = self.shape
        tokens = self.embed(to_levels(x, self.levels).flatten(1))  # (N, H*W, dim)
        shifted = torch.cat([self.start.expand(batch, 1, -1), tokens[:, :-1]], dim=1)
        hidden = shifted + self.positions
        for layer in self.layers:
            hidden = layer(hidden, self.mask)
        return self.logits(hidden).transpose(1, 2).reshape(batch, self.levels, 1, height, width)[:, :, 0]


class ImageTransformer(AutoregressiveGenerator):
    """Image Transformer: causal multi-head self-attention over the pixel sequence (local 1D)."""

    name = "image-transformer"
    bounds = {"dim": arena.Range(4), "heads": arena.Range(1), "layers": arena.Range(1), "feedforward": arena.Range(1),
              "block": arena.Range(1), "memory": arena.Range(0)}

    def __init__(self, dim: int = 64, heads: int = 4, layers: int = 3, feedforward: int = 256, block: int = 64,
                 memory: int = 64, epochs: int = 20, lr: float = 1e-3, batch_size: int = 64):
        self.dim = dim
        self.heads = heads
        self.layers = layers
        self.feedforward = feedforward
        self.block = block
        self.memory = memory
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size

    def validate(self):
        if self.dim % self.heads or self.dim % 4:
            raise arena.ArenaError(f"dim={self.dim} is not a multiple of 4 and of heads={self.heads}")

    def build(self, dataset, ctx):
        require_single_channel(self.name, dataset.shape)
        return ImageTransformerModel(dataset.levels, dataset.shape, self.dim, self.heads, self.layers,
                                     self.feedforward, self.block, self.memory)


@arena.hookimpl
def register_generators(register):
    register(ImageTransformer)
