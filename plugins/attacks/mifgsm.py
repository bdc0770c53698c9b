"""Momentum iterative FGSM (Dong et al. 2018), the standard attack for transferability."""

from __future__ import annotations

import arena
from arena import Access, Attack

from .iterative import ascend, goal_test, white_box_gradient


class MIFGSM(Attack):
    """Momentum iterative FGSM (Dong et al. 2018): g <- mu·g + grad/||grad||_1, x <- Π(x + a·sign(g)).

    The defaults are the paper's: 10 iterations of eps/10 (``step_size`` is a fraction of eps)
    and decay mu = 1.0; the L2 form steps along g / ||g||_2. It starts from the clean image.
    ``early_stop`` drops a sample once an iterate fools the model (the "any success" criterion).
    """

    name = "mifgsm"
    access = Access.WHITE_BOX
    norms = ("linf", "l2")
    supports_targeted = True
    bounds = {"steps": arena.Range(1), "step_size": arena.Range(0, 1, low_inclusive=False), "decay": arena.Range(0)}

    def __init__(self, steps: int = 10, step_size: float = 0.1, decay: float = 1.0, early_stop: bool = True):
        self.steps = steps
        self.step_size = step_size
        self.decay = decay
        self.early_stop = early_stop

    def perturb(self, access, x, y, threat, target=None):
        return ascend(
            white_box_gradient(access, y, target),
            x,
            x,
            threat,
            steps=self.steps,
            step_size=self.step_size * threat.eps,
            decay=self.decay,
            stop_when=goal_test(y, target) if self.early_stop else None,
        )


@arena.hookimpl
def register_attacks(register):
    register(MIFGSM)
