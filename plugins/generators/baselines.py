"""Two baselines that keep the generative metrics honest: ``uniform`` (noise on the pixel levels,
with its exact likelihood, the floor every trained generator must beat) and ``memorizer`` (the
training images themselves, optionally with Gaussian noise: what a generator that copies its
data scores, and what the memorisation check must flag). Neither runs under ``-g all``: name
them (``arena run -g uniform,memorizer``)."""

from __future__ import annotations

import math

import torch
from torch import nn

import arena


class UniformModel(nn.Module):
    """Nothing to learn: the pixel levels and the image shape."""

    def __init__(self, levels: int, shape: tuple[int, int, int]):
        super().__init__()
        self.levels, self.shape = levels, tuple(shape)
        self.register_buffer("level_count", torch.tensor(float(levels)))


class Uniform(arena.Generator):
    """Each pixel uniform over the dataset's levels: log2(levels) bits/dim exactly."""

    name = "uniform"
    likelihood = "exact"
    in_all = False

    def build(self, dataset, ctx):
        return UniformModel(dataset.levels, dataset.shape)

    def train(self, model, ctx):
        return []

    def sample(self, model, n, generator):
        levels = torch.randint(0, model.levels, (n, *model.shape), generator=generator)
        return levels.float() / (model.levels - 1)

    def log_likelihood(self, model, x):
        pixels = math.prod(model.shape)
        return torch.full((len(x),), -pixels * math.log(model.levels), device=x.device)


class MemorizedImages(nn.Module):
    """The training split, kept as a buffer (so the checkpoint holds it)."""

    def __init__(self, images: torch.Tensor):
        super().__init__()
        self.register_buffer("images", images.detach().clone())


class Memorizer(arena.Generator):
    """Returns training images drawn at random, with Gaussian noise of standard deviation
    ``noise`` added (0: exact copies); the host moves them onto the pixel levels."""

    name = "memorizer"
    in_all = False
    bounds = {"noise": arena.Range(0, 1)}

    def __init__(self, noise: float = 0.0):
        self.noise = noise

    def build(self, dataset, ctx):
        return MemorizedImages(ctx.splits.x_train)

    def train(self, model, ctx):
        return []

    def sample(self, model, n, generator):
        images = model.images.cpu()
        picked = images[torch.randint(0, len(images), (n,), generator=generator)]
        if self.noise > 0:
            picked = picked + self.noise * torch.randn(picked.shape, generator=generator)
        return picked.clamp(0, 1)


@arena.hookimpl
def register_generators(register):
    register(Uniform)
    register(Memorizer)
