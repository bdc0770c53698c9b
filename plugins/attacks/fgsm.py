"""The fast gradient method (Goodfellow et al. 2015): one gradient step to the edge of the ball."""

from __future__ import annotations

import torch

import arena
from arena import Access, Attack


def _loss_direction(access: arena.WhiteBox, x, y, target) -> torch.Tensor:
    """Gradient that increases the loss of the true label, or decreases that of the target."""
    if target is None:
        return access.gradient(x, y)
    return -access.gradient(x, target)


class FGSM(Attack):
    """Fast Gradient Sign Method: x + eps * sign(grad_x J(theta, x, y)), clipped to [0, 1]."""

    name = "fgsm"
    access = Access.WHITE_BOX
    norms = ("linf",)
    supports_targeted = True

    def perturb(self, access, x, y, threat, target=None):
        # Goodfellow et al. (2015), section 4; targeted mode steps down the target's loss instead.
        grad = _loss_direction(access, x, y, target)
        return (x + threat.eps * grad.sign()).clamp(0.0, 1.0)


class FGM(Attack):
    """Fast Gradient Method, the L2 form of FGSM: x + eps * g / ||g||_2, clipped to [0, 1]."""

    name = "fgm"
    access = Access.WHITE_BOX
    norms = ("l2",)
    supports_targeted = True

    def perturb(self, access, x, y, threat, target=None):
        grad = _loss_direction(access, x, y, target)
        norm = grad.flatten(1).norm(p=2, dim=1).clamp_min(1e-12)
        step = grad / norm.view(-1, *([1] * (grad.dim() - 1)))
        return (x + threat.eps * step).clamp(0.0, 1.0)


@arena.hookimpl
def register_attacks(register):
    register(FGSM)
    register(FGM)
