"""Auto-PGD with the cross-entropy loss, APGD-CE (Croce & Hein 2020), the step-size-free core of
AutoAttack."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import arena
from arena import Access, Attack

from .iterative import l2_norms, reached, steepest_ascent


def checkpoints(iterations: int) -> list[int]:
    """The iterations w_j = ceil(p_j · N) at which APGD decides whether to halve its step:
    p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) (Croce & Hein 2020, §3.2)."""
    fractions = [0.0, 0.22]
    while fractions[-1] + max(fractions[-1] - fractions[-2] - 0.03, 0.06) <= 1.0:
        fractions.append(fractions[-1] + max(fractions[-1] - fractions[-2] - 0.03, 0.06))
    # Rounded first: 0.57 * 100 is 57.000000000000007 in binary floating point.
    return sorted({math.ceil(round(p * iterations, 9)) for p in fractions[1:]})


def _start(x: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """A random point on the boundary of the ball, as the reference implementation starts."""
    if norm == "linf":
        t = 2 * torch.rand_like(x) - 1
        peak = t.flatten(1).abs().amax(dim=1).view(-1, *([1] * (x.dim() - 1)))
        return (x + eps * t / peak).clamp(0.0, 1.0)
    t = torch.randn_like(x)
    return (x + eps * t / (l2_norms(t) + 1e-12)).clamp(0.0, 1.0)


class APGD(Attack):
    """APGD-CE (Croce & Hein 2020): projected gradient ascent on the cross-entropy with momentum
    0.75 and a step size that starts at 2·eps and halves at the checkpoints of the paper whenever
    the loss rose in fewer than rho = 0.75 of the steps since the last checkpoint, or neither the
    step nor the best loss changed; after a halving the iterate restarts from the best point.

    Defaults are the paper's: 100 iterations, rho 0.75, momentum alpha 0.75, one restart.
    Targeted mode ascends -CE(target), AutoAttack's targeted CE. With ``early_stop`` a sample
    leaves the batch once an iterate fools the model ("any success"), which changes nothing for
    the other samples: every quantity APGD keeps is per sample.
    """

    name = "apgd"
    access = Access.WHITE_BOX
    norms = ("linf", "l2")
    supports_targeted = True
    bounds = {"iterations": arena.Range(1), "restarts": arena.Range(1),
              "rho": arena.Range(0, 1, low_inclusive=False), "momentum": arena.Range(0, 1, low_inclusive=False)}

    def __init__(
        self,
        iterations: int = 100,
        restarts: int = 1,
        rho: float = 0.75,
        momentum: float = 0.75,
        early_stop: bool = True,
    ):
        self.iterations = iterations
        self.restarts = restarts
        self.rho = rho
        self.momentum = momentum
        self.early_stop = early_stop

    def perturb(self, access, x, y, threat, target=None):
        x_adv = x.clone()
        rows = torch.arange(len(x), device=x.device)
        for _ in range(self.restarts):
            found, fooled = self._run(access, x[rows], y[rows], None if target is None else target[rows], threat)
            x_adv[rows] = found
            rows = rows[~fooled]
            if len(rows) == 0:
                break
        return x_adv

    def _loss(self, access, x, y, target):
        """Per-sample objective f, the logits, and the gradient of f, in one pass."""
        labels, sign = (y, 1.0) if target is None else (target, -1.0)
        values = {}

        def objective(logits, labels):
            values["f"] = sign * F.cross_entropy(logits, labels, reduction="none")
            return values["f"].sum()

        logits, grad = access.logits_and_gradient(x, labels, loss=objective)
        return values["f"].detach(), logits, grad

    def _run(self, access, x, y, target, threat):
        """One run of Algorithm 1; returns the points found and which of them fool the model."""
        n, eps = len(x), threat.eps
        project = lambda center, point: arena.project(center, point, threat)  # noqa: E731
        x_cur = _start(x, threat.norm, eps)
        f_cur, logits, grad = self._loss(access, x_cur, y, target)
        fooled = reached(logits, y, target)
        result = x_cur.clone()  # the adversarial point where found, else the best point
        x_max, f_max, grad_max = x_cur.clone(), f_cur.clone(), grad.clone()
        x_prev = x_cur.clone()
        eta = torch.full((n,), 2.0 * eps, device=x.device)
        rises = torch.zeros(n, device=x.device)
        eta_at_check = torch.full_like(eta, math.inf)  # no halving "since" a check before the first
        f_max_at_check = f_max.clone()
        stops = set(checkpoints(self.iterations))
        last_check = 0
        rows = torch.arange(n, device=x.device) if not self.early_stop else (~fooled).nonzero().flatten()
        shape = (-1, *([1] * (x.dim() - 1)))

        for k in range(self.iterations):
            if len(rows) == 0:
                break
            xc, xp, c = x_cur[rows], x_prev[rows], x[rows]
            z = project(c, xc + eta[rows].view(shape) * steepest_ascent(grad[rows], threat.norm))
            alpha = 1.0 if k == 0 else self.momentum
            x_next = project(c, xc + alpha * (z - xc) + (1 - alpha) * (xc - xp))
            t = None if target is None else target[rows]
            f_next, logits, g_next = self._loss(access, x_next, y[rows], t)
            x_prev[rows], x_cur[rows], grad[rows] = xc, x_next, g_next
            rises[rows] += (f_next > f_cur[rows]).float()
            f_cur[rows] = f_next
            better = f_next > f_max[rows]
            improved = rows[better]
            x_max[improved], f_max[improved], grad_max[improved] = x_next[better], f_next[better], g_next[better]

            hit = reached(logits, y[rows], t)
            newly = rows[hit & ~fooled[rows]]
            fooled[newly] = True
            result[newly] = x_cur[newly]

            if k + 1 in stops:
                span = k + 1 - last_check
                halve = (rises < self.rho * span) | ((eta == eta_at_check) & (f_max == f_max_at_check))
                eta_at_check, f_max_at_check = eta.clone(), f_max.clone()
                eta = torch.where(halve, eta / 2, eta)
                x_cur[halve], f_cur[halve], grad[halve] = x_max[halve], f_max[halve], grad_max[halve]
                rises.zero_()
                last_check = k + 1
            if self.early_stop:
                rows = rows[~hit]

        result[~fooled] = x_max[~fooled]
        return result, fooled


@arena.hookimpl
def register_attacks(register):
    register(APGD)
