"""Feature squeezing by colour bit-depth reduction (Xu et al. 2018, "Feature Squeezing:
Detecting Adversarial Examples in Deep Neural Networks")."""

from __future__ import annotations

import torch
from torch import nn

import arena
from arena import Defense, InputTransform


class BitDepthReduction(InputTransform):
    """Rounds every pixel to ``bits`` bits: round(x * (2^bits - 1)) / (2^bits - 1).

    Rounding has a zero gradient wherever it is defined, so the host attacks it through BPDA.
    """

    differentiable = False

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        levels = 2**self.bits - 1
        return torch.round(x * levels) / levels


class BitDepth(Defense):
    """The standard model behind bit-depth reduction to ``bits`` bits per pixel (feature squeezing).

    Xu et al. squeeze MNIST to 1 bit (a threshold at 1/2), the default here. The squeezer is
    used as a preprocessing defense in front of the undefended model, the setting Athalye et al.
    (2018) show to be broken by BPDA; the standard model is not retrained.
    """

    name = "bit-depth"
    bounds = {"bits": arena.Range(1, 16)}

    def __init__(self, bits: int = 1):
        self.bits = bits

    def build(self, dataset, ctx):
        return nn.Sequential(BitDepthReduction(self.bits), ctx.trained_defense("standard"))


@arena.hookimpl
def register_defenses(register):
    register(BitDepth)
