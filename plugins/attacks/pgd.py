"""Projected gradient descent (Madry et al. 2018) and the basic iterative method (Kurakin et al.
2017), its special case without a random start."""

from __future__ import annotations

import torch

import arena
from arena import Access, Attack

from .iterative import ascend, goal_test, random_start, reached, white_box_gradient


class PGD(Attack):
    """Projected gradient descent (Madry et al. 2018): random start, then projected steepest-ascent
    steps on the cross-entropy, with restarts for the samples not yet fooled.

    ``step_size`` is a fraction of eps; the default 2.5 / 40 is the 2.5·eps/steps rule of Madry
    et al.'s robustness library at the default 40 steps. Targeted mode descends the target's
    cross-entropy. With ``early_stop`` a sample leaves the batch once an iterate fools the model
    (the "any success" criterion), which saves passes and never lowers the success rate.
    """

    name = "pgd"
    access = Access.WHITE_BOX
    norms = ("linf", "l2")
    supports_targeted = True
    bounds = {"steps": arena.Range(1), "step_size": arena.Range(0, 1, low_inclusive=False), "restarts": arena.Range(1)}

    def __init__(
        self,
        steps: int = 40,
        step_size: float = 0.0625,
        restarts: int = 1,
        random_start: bool = True,
        early_stop: bool = True,
    ):
        self.steps = steps
        self.step_size = step_size
        self.restarts = restarts
        self.random_start = random_start
        self.early_stop = early_stop

    def perturb(self, access, x, y, threat, target=None):
        x_adv = x.clone()
        rows = torch.arange(len(x), device=x.device)  # the samples still to fool
        for restart in range(self.restarts):
            x_rows, y_rows = x[rows], y[rows]
            t_rows = None if target is None else target[rows]
            start = random_start(x_rows, threat) if self.random_start else x_rows
            found = ascend(
                white_box_gradient(access, y_rows, t_rows),
                x_rows,
                start,
                threat,
                steps=self.steps,
                step_size=self.step_size * threat.eps,
                stop_when=goal_test(y_rows, t_rows) if self.early_stop else None,
            )
            x_adv[rows] = found
            if restart + 1 == self.restarts:
                break
            with torch.no_grad():
                rows = rows[~reached(access.logits(found), y_rows, t_rows)]
            if len(rows) == 0:
                break
        return x_adv


class BIM(PGD):
    """Basic iterative method (Kurakin et al. 2017): PGD from the clean image, no random start.

    The defaults take 10 steps of 0.125·eps, the 1.25·eps total of Kurakin et al.'s
    min(eps + 4, 1.25·eps) iterations of one grey level.
    """

    name = "bim"

    def __init__(self, steps: int = 10, step_size: float = 0.125, early_stop: bool = True):
        super().__init__(steps=steps, step_size=step_size, restarts=1, random_start=False, early_stop=early_stop)


@arena.hookimpl
def register_attacks(register):
    register(PGD)
    register(BIM)
