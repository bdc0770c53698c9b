"""What the iterative gradient attacks share: the ascent direction of each norm, random starts,
the "goal reached" test, and one loop of steepest-ascent steps that stops per sample.

Early stopping follows the "any success" criterion of a bounded evaluation: a sample whose
current iterate already reaches the goal (a wrong class, or the target class) is adversarial
within the budget, so it needs no more steps; it leaves the batch and stops costing passes.
"""

from __future__ import annotations

from typing import Callable

import torch

import arena
from arena import ThreatModel

#: ``gradient(x_rows, rows) -> (logits, ascent_gradient)`` for the batch rows ``rows``.
RowGradient = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def reached(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """Per sample: does the prediction reach the goal (any other class, or the target)?"""
    predicted = logits.argmax(dim=1)
    return predicted != y if target is None else predicted == target


def ascent_gradient(access: arena.WhiteBox, x, y, target) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and the gradient that raises the true class's loss, or lowers the target's."""
    if target is None:
        return access.logits_and_gradient(x, y)
    logits, grad = access.logits_and_gradient(x, target)
    return logits, -grad


def white_box_gradient(access: arena.WhiteBox, y, target) -> RowGradient:
    """:data:`RowGradient` of :func:`ascent_gradient` on the batch rows it is asked for."""
    return lambda x_rows, rows: ascent_gradient(access, x_rows, y[rows], None if target is None else target[rows])


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.view(-1, *([1] * (like.dim() - 1)))


def l2_norms(t: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norms, shaped to broadcast against ``t``."""
    return _per_sample(t.flatten(1).norm(p=2, dim=1), t)


def steepest_ascent(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The unit step of largest first-order increase: sign(g) for L-inf, g / ||g||_2 for L2."""
    if norm == "linf":
        return grad.sign()
    return grad / (l2_norms(grad) + 1e-10)


def random_start(x: torch.Tensor, threat: ThreatModel) -> torch.Tensor:
    """A random point of the ball around ``x``, clipped to the image cube.

    L-inf: uniform in the box (Madry et al. 2018). L2: a uniform direction at a radius drawn
    uniformly from [0, eps]. Both draw from torch's global generator, which the host seeds.
    """
    if threat.norm == "linf":
        return (x + torch.empty_like(x).uniform_(-threat.eps, threat.eps)).clamp(0.0, 1.0)
    direction = torch.empty_like(x).normal_()
    radius = torch.zeros(x.shape[0], device=x.device).uniform_(0, 1)
    delta = direction * (_per_sample(radius, x) / l2_norms(direction) * threat.eps)
    return (x + delta).clamp(0.0, 1.0)


def ascend(
    gradient: RowGradient,
    x: torch.Tensor,
    start: torch.Tensor,
    threat: ThreatModel,
    *,
    steps: int,
    step_size: float,
    decay: float = 0.0,
    stop_when: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """``steps`` projected steps of length ``step_size`` along the steepest-ascent direction.

    With ``decay > 0`` the direction is that of the accumulated gradient of MI-FGSM (Dong et
    al. 2018): g <- decay * g + grad / ||grad||_1. ``stop_when(logits, rows)`` names the rows
    whose current iterate is done; they keep that iterate and take no more passes.
    """
    x_adv = start.clone()
    momentum = torch.zeros_like(x) if decay else None
    rows = torch.arange(len(x), device=x.device)
    everyone = True  # while no row has stopped, skip the gathers and scatters
    for _ in range(steps):
        current = x_adv if everyone else x_adv[rows]
        logits, grad = gradient(current, rows)
        if stop_when is not None:
            done = stop_when(logits, rows)
            if bool(done.any()):
                keep = ~done
                rows, current, grad, everyone = rows[keep], current[keep], grad[keep], False
                if len(rows) == 0:
                    break
        if momentum is not None:
            # The L1 normalisation of the paper, written as a mean: the same direction.
            grad = grad / grad.abs().flatten(1).mean(dim=1).view(-1, *([1] * (grad.dim() - 1)))
            grad = grad + decay * (momentum if everyone else momentum[rows])
            if everyone:
                momentum = grad
            else:
                momentum[rows] = grad
        stepped = arena.project(x if everyone else x[rows], current + step_size * steepest_ascent(grad, threat.norm), threat)
        if everyone:
            x_adv = stepped
        else:
            x_adv[rows] = stepped
    return x_adv


def goal_test(y: torch.Tensor, target: torch.Tensor | None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``stop_when`` for :func:`ascend`: the rows whose logits already reach the goal."""
    return lambda logits, rows: reached(logits, y[rows], None if target is None else target[rows])
