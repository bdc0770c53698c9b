"""A randomized defense: Gaussian noise added to the input at inference."""

from __future__ import annotations

import torch
from torch import nn

import arena
from arena import Defense, InputTransform


class GaussianNoise(InputTransform):
    """x + N(0, sigma^2 I), a fresh draw at every forward pass (differentiable in x)."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sigma * torch.randn_like(x)


class RandomNoise(Defense):
    """The standard model behind Gaussian input noise of standard deviation ``sigma``, drawn
    afresh at every forward pass (the randomized defenses Athalye et al. 2018 break with EOT).

    Declared non-deterministic; the host also detects it, and evaluates it with expectation
    over transformation.
    """

    name = "random-noise"
    bounds = {"sigma": arena.Range(0, low_inclusive=False)}
    deterministic = False

    def __init__(self, sigma: float = 0.1):
        self.sigma = sigma

    def build(self, dataset, ctx):
        return nn.Sequential(GaussianNoise(self.sigma), ctx.trained_defense("standard"))


@arena.hookimpl
def register_defenses(register):
    register(RandomNoise)
