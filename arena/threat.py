"""Threat models: the norm ball an attack must stay inside, and the host's check of it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import InvalidInputError, RefusedResult

NORMS = ("linf", "l2")

#: Slack allowed when the host re-checks a perturbation against its budget (float32 arithmetic).
BUDGET_TOLERANCE = 1e-6


@dataclass(frozen=True)
class ThreatModel:
    """What the attacker may do: a perturbation of ``norm`` at most ``eps``, targeted or not.

    Images live in [0, 1], so an L-inf budget above 1 means nothing; an L2 budget is bounded by
    the diameter of the image cube, sqrt(pixels), which :meth:`check_for_shape` enforces.
    """

    norm: str = "linf"
    eps: float = 0.3
    targeted: bool = False

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise InvalidInputError(f"unknown norm {self.norm!r}: use one of {', '.join(NORMS)}")
        eps = float(self.eps)
        if not math.isfinite(eps) or eps <= 0:
            raise InvalidInputError(f"eps {self.eps!r} must be a number above 0")
        if self.norm == "linf" and eps > 1:
            raise InvalidInputError(f"linf eps {self.eps} is outside (0, 1]: images are in [0, 1]")
        object.__setattr__(self, "eps", eps)

    def check_for_shape(self, shape: tuple[int, ...]) -> None:
        """Refuse an L2 budget larger than the diameter of the [0,1] cube of this image shape."""
        if self.norm == "l2":
            diameter = math.sqrt(math.prod(shape))
            if self.eps > diameter:
                raise InvalidInputError(
                    f"l2 eps {self.eps} exceeds {diameter:.3g}, the largest possible L2 distance "
                    f"between two images of shape {tuple(shape)}"
                )

    def __str__(self) -> str:
        kind = "targeted" if self.targeted else "untargeted"
        return f"{self.norm} eps={self.eps:g} {kind}"


def perturbation_norms(x: torch.Tensor, x_adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample L-inf and L2 size of ``x_adv - x``."""
    delta = (x_adv - x).flatten(1)
    return delta.abs().amax(dim=1), delta.norm(p=2, dim=1)


def project(x: torch.Tensor, x_adv: torch.Tensor, threat: ThreatModel) -> torch.Tensor:
    """Project ``x_adv`` onto the threat model's ball around ``x`` and onto the image cube."""
    delta = x_adv - x
    if threat.norm == "linf":
        delta = delta.clamp(-threat.eps, threat.eps)
    else:
        norms = delta.flatten(1).norm(p=2, dim=1).clamp_min(1e-12)
        factor = (threat.eps / norms).clamp(max=1.0)
        delta = delta * factor.view(-1, *([1] * (delta.dim() - 1)))
    return (x + delta).clamp(0.0, 1.0)


def check_adversarial(x: torch.Tensor, x_adv: object, threat: ThreatModel) -> torch.Tensor:
    """The host's judgement of an attack's output: refuse anything outside the rules.

    Returns ``x_adv`` (detached) when it has the shape and dtype of ``x``, is finite, lies in
    [0, 1] and within ``eps`` of ``x`` in the threat model's norm, all up to
    :data:`BUDGET_TOLERANCE`.
    """
    if not isinstance(x_adv, torch.Tensor):
        raise RefusedResult(f"the attack returned {type(x_adv).__name__}, not a tensor")
    if x_adv.shape != x.shape:
        raise RefusedResult(f"the attack returned shape {tuple(x_adv.shape)}, expected {tuple(x.shape)}")
    if x_adv.dtype != x.dtype:
        raise RefusedResult(f"the attack returned dtype {x_adv.dtype}, expected {x.dtype}")
    x_adv = x_adv.detach()
    if not torch.isfinite(x_adv).all():
        raise RefusedResult("the attack returned NaN or infinite pixels")
    low, high = float(x_adv.min()), float(x_adv.max())
    if low < -BUDGET_TOLERANCE or high > 1 + BUDGET_TOLERANCE:
        raise RefusedResult(f"the attack returned pixels in [{low:.6g}, {high:.6g}], outside [0, 1]")
    linf, l2 = perturbation_norms(x, x_adv)
    size = linf if threat.norm == "linf" else l2
    worst = float(size.max()) if size.numel() else 0.0
    if worst > threat.eps + BUDGET_TOLERANCE:
        raise RefusedResult(
            f"the attack's perturbation reaches {threat.norm} {worst:.6g}, above eps {threat.eps:g}"
        )
    return x_adv
