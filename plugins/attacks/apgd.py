"""Auto-PGD (Croce & Hein 2020), the step-size-free core of AutoAttack: APGD with the
cross-entropy or the difference-of-logits-ratio (DLR) loss, and APGD-T, the targeted DLR version
run against the most likely wrong classes in turn."""

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


def dlr(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The difference of logits ratio (Croce & Hein 2020, eq. 5), per sample:
    -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3), with z sorted decreasingly as z_pi1 >= z_pi2 >= ...
    Invariant to shifting and rescaling the logits; above 0 once the sample is misclassified."""
    ordered = logits.sort(dim=1, descending=True).values
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = torch.where(logits.argmax(dim=1) == y, ordered[:, 1], ordered[:, 0])
    return -(true - other) / (ordered[:, 0] - ordered[:, 2] + 1e-12)


def dlr_targeted(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The targeted DLR loss (Croce & Hein 2020, eq. 6), per sample:
    -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)."""
    ordered = logits.sort(dim=1, descending=True).values
    true, aimed = logits.gather(1, y[:, None]).squeeze(1), logits.gather(1, target[:, None]).squeeze(1)
    return -(true - aimed) / (ordered[:, 0] - 0.5 * ordered[:, 2] - 0.5 * ordered[:, 3] + 1e-12)


class APGD(Attack):
    """APGD (Croce & Hein 2020): projected gradient ascent on the cross-entropy (APGD-CE) or the
    DLR loss (APGD-DLR) with momentum 0.75 and a step size that starts at 2·eps and halves at
    the checkpoints of the paper whenever the loss rose in fewer than rho = 0.75 of the steps
    since the last checkpoint, or neither the step nor the best loss changed; after a halving
    the iterate restarts from the best point.

    Defaults are the paper's: 100 iterations, rho 0.75, momentum alpha 0.75, one restart, the
    cross-entropy. Targeted mode ascends -CE(target), AutoAttack's targeted CE, or the targeted
    DLR loss. With ``early_stop`` a sample leaves the batch once an iterate fools the model
    ("any success"), which changes nothing for the other samples: every quantity APGD keeps is
    per sample.
    """

    name = "apgd"
    access = Access.WHITE_BOX
    steps_parameter = "iterations"  # what `arena check` doubles to test convergence
    norms = ("linf", "l2")
    supports_targeted = True
    bounds = {"iterations": arena.Range(1), "restarts": arena.Range(1),
              "rho": arena.Range(0, 1, low_inclusive=False), "momentum": arena.Range(0, 1, low_inclusive=False),
              "loss": arena.Choice(["ce", "dlr"])}

    def __init__(
        self,
        iterations: int = 100,
        restarts: int = 1,
        rho: float = 0.75,
        momentum: float = 0.75,
        early_stop: bool = True,
        loss: str = "ce",
    ):
        self.iterations = iterations
        self.restarts = restarts
        self.rho = rho
        self.momentum = momentum
        self.early_stop = early_stop
        self.loss = loss

    def perturb(self, access, x, y, threat, target=None):
        x_adv = x.clone()
        rows = torch.arange(len(x), device=x.device)
        for _ in range(self.restarts):
            t = None if target is None else target[rows]
            found, fooled = self._run(access, x[rows], y[rows], t, threat, aim=t)
            x_adv[rows] = found
            rows = rows[~fooled]
            if len(rows) == 0:
                break
        return x_adv

    def _loss(self, access, x, y, aim):
        """Per-sample objective f, the logits, and the gradient of f, in one pass. ``aim`` is the
        class a targeted loss aims at (None: untargeted)."""
        values = {}

        def objective(logits, labels):
            if self.loss == "dlr":
                values["f"] = dlr(logits, y) if aim is None else dlr_targeted(logits, y, aim)
            else:
                values["f"] = F.cross_entropy(logits, y, reduction="none") if aim is None else \
                    -F.cross_entropy(logits, aim, reduction="none")
            return values["f"].sum()

        logits, grad = access.logits_and_gradient(x, y, loss=objective)
        return values["f"].detach(), logits, grad

    def _run(self, access, x, y, target, threat, aim=None):
        """One run of Algorithm 1 against the loss aimed at ``aim``; returns the points found
        and which of them reach the goal (``target``, or any other class than ``y``)."""
        n, eps = len(x), threat.eps
        project = lambda center, point: arena.project(center, point, threat)  # noqa: E731
        x_cur = _start(x, threat.norm, eps)
        f_cur, logits, grad = self._loss(access, x_cur, y, aim)
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
            f_next, logits, g_next = self._loss(access, x_next, y[rows], None if aim is None else aim[rows])
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


class APGDT(APGD):
    """APGD-T (Croce & Hein 2020), AutoAttack's targeted APGD-DLR: for each of the
    ``target_classes`` most likely wrong classes of the clean image in turn (the second most
    likely first), APGD on the targeted DLR loss towards it, on the points no earlier class
    fooled. Success is any misclassification: an untargeted attack with targeted losses.

    Defaults are AutoAttack's standard version: 9 target classes, 100 iterations, one restart
    each.
    """

    name = "apgd-t"
    supports_targeted = False
    bounds = {"iterations": arena.Range(1), "restarts": arena.Range(1), "target_classes": arena.Range(1),
              "rho": arena.Range(0, 1, low_inclusive=False), "momentum": arena.Range(0, 1, low_inclusive=False)}

    def __init__(self, iterations: int = 100, restarts: int = 1, rho: float = 0.75, momentum: float = 0.75,
                 early_stop: bool = True, target_classes: int = 9):
        super().__init__(iterations, restarts, rho, momentum, early_stop, loss="dlr")
        self.target_classes = target_classes

    def perturb(self, access, x, y, threat, target=None):
        with torch.no_grad():
            ranked = access.logits(x).argsort(dim=1, descending=True)
        x_adv = x.clone()
        rows = torch.arange(len(x), device=x.device)
        for k in range(1, min(self.target_classes, ranked.shape[1] - 1) + 1):
            for _ in range(self.restarts):
                if len(rows) == 0:
                    return x_adv
                found, fooled = self._run(access, x[rows], y[rows], None, threat, aim=ranked[rows, k])
                x_adv[rows[fooled]] = found[fooled]
                rows = rows[~fooled]
        return x_adv


@arena.hookimpl
def register_attacks(register):
    register(APGD)
    register(APGDT)
