"""The generative adversarial network of Goodfellow et al. (2014)."""

from __future__ import annotations

import torch
from torch import nn

import arena

from .adversarial import AdversarialGenerator, GeneratorDiscriminator


class Maxout(nn.Module):
    """A maxout layer (Goodfellow et al. 2013): the maximum over ``pieces`` linear pieces."""

    def __init__(self, inputs: int, units: int, pieces: int):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(inputs, units * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(len(x), self.units, self.pieces).amax(-1)


class GAN(AdversarialGenerator):
    """GAN (Goodfellow et al. 2014): MLP players, maxout discriminator, non-saturating G loss."""

    name = "gan"
    bounds = {"hidden": arena.Range(1), "maxout_units": arena.Range(1), "maxout_pieces": arena.Range(1),
              "dropout": arena.Range(0, 1, high_inclusive=False)}

    def __init__(self, latent: int = 100, hidden: int = 256, maxout_units: int = 240, maxout_pieces: int = 5,
                 dropout: float = 0.5, discriminator_steps: int = 1, epochs: int = 100, lr: float = 1e-3,
                 batch_size: int = 64):
        self.latent = latent
        self.hidden = hidden
        self.maxout_units = maxout_units
        self.maxout_pieces = maxout_pieces
        self.dropout = dropout
        self.discriminator_steps = discriminator_steps
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size

    def build(self, dataset, ctx):
        """Generator: rectifier hidden layers and a sigmoid output; discriminator: maxout layers
        with dropout, as in the paper's MNIST experiments."""
        pixels = dataset.shape[0] * dataset.shape[1] * dataset.shape[2]
        generator = nn.Sequential(
            nn.Linear(self.latent, self.hidden), nn.ReLU(),
            nn.Linear(self.hidden, self.hidden), nn.ReLU(),
            nn.Linear(self.hidden, pixels), nn.Sigmoid(),
            nn.Unflatten(1, dataset.shape),
        )
        discriminator = nn.Sequential(
            nn.Flatten(),
            Maxout(pixels, self.maxout_units, self.maxout_pieces), nn.Dropout(self.dropout),
            Maxout(self.maxout_units, self.maxout_units, self.maxout_pieces), nn.Dropout(self.dropout),
            nn.Linear(self.maxout_units, 1),
        )
        return GeneratorDiscriminator(generator, discriminator, self.latent, dataset.shape)

    def optimizers(self, model):
        return (torch.optim.Adam(model.discriminator.parameters(), lr=self.lr, betas=(0.5, 0.999)),
                torch.optim.Adam(model.generator.parameters(), lr=self.lr, betas=(0.5, 0.999)))


@arena.hookimpl
def register_generators(register):
    register(GAN)
