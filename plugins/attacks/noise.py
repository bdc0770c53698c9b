"""Random noise at the full budget: the zero-query baseline every attack must beat."""

from __future__ import annotations

import torch

import arena
from arena import Access, Attack


class Noise(Attack):
    """Uniform random noise at the full budget: a random vertex of the L-inf ball (every pixel
    moves by ±eps), or a uniformly random direction on the L2 sphere of radius eps.

    It looks at nothing, neither the target nor a surrogate; a real attack that does no better
    than this baseline has learnt nothing from its access.
    """

    name = "noise"
    access = Access.ZERO_QUERY
    norms = ("linf", "l2")

    def perturb(self, access, x, y, threat, target=None):
        if threat.norm == "linf":
            signs = torch.randint(0, 2, x.shape, device=x.device, dtype=x.dtype) * 2 - 1
            delta = threat.eps * signs
        else:
            direction = torch.randn_like(x)
            delta = threat.eps * direction / direction.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))
        return (x + delta).clamp(0.0, 1.0)


@arena.hookimpl
def register_attacks(register):
    register(Noise)
