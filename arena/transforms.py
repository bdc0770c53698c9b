"""Input transformations in a defense's model, and the straight-through view the host attacks.

A defense that preprocesses its input (bit-depth reduction, median smoothing, added noise, ...)
puts an :class:`InputTransform` in its model and declares whether the transformation is
differentiable. A non-differentiable one (rounding has a zero gradient almost everywhere; a
median passes gradient to one pixel per window) would hand a gradient attack nothing useful,
which looks like robustness but is only obfuscated gradients (Athalye et al. 2018, "Obfuscated
Gradients Give a False Sense of Security"). For white-box attacks the host therefore switches
such transforms to BPDA with the identity as the approximation (§4.1 of that paper): the
forward pass still computes ``t(x)``, the backward pass treats ``t`` as ``x -> x``.
"""

from __future__ import annotations

import contextlib
from typing import ClassVar, Iterator

import torch
from torch import nn

from .errors import PluginError


class InputTransform(nn.Module):
    """A transformation of the input that keeps its shape; subclasses implement :meth:`transform`.

    Set ``differentiable = False`` when the gradient of :meth:`transform` is zero, undefined or
    otherwise useless to an attacker: white-box attacks then see it through BPDA (straight
    through), while the forward pass, and so every prediction the host judges, is unchanged.
    """

    #: False when gradient attacks must see this transform through BPDA (the identity backward).
    differentiable: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.straight_through = False  # switched on by the host only while a white-box attack runs

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.transform(x)
        if not self.straight_through:
            return out
        if out.shape != x.shape:
            raise PluginError(
                f"{type(self).__name__} changes the input's shape {tuple(x.shape)} to {tuple(out.shape)}: "
                "BPDA with the identity needs a shape-preserving transform"
            )
        return x + (out - x).detach()


def nondifferentiable_transforms(model: nn.Module) -> list[InputTransform]:
    """The transforms in ``model`` that declare themselves non-differentiable."""
    return [m for m in model.modules() if isinstance(m, InputTransform) and not m.differentiable]


@contextlib.contextmanager
def straight_through(model: nn.Module) -> Iterator[list[InputTransform]]:
    """Within the block, gradients pass through every non-differentiable transform of ``model``
    unchanged (BPDA with the identity); forward values stay exactly as they were."""
    transforms = nondifferentiable_transforms(model)
    for transform in transforms:
        transform.straight_through = True
    try:
        yield transforms
    finally:
        for transform in transforms:
            transform.straight_through = False
