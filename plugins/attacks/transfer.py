"""Zero-query transfer attacks: optimise against surrogate models the host trained, never touching
the target (the substitute-model attack of Papernot et al. 2017)."""

from __future__ import annotations

import math

import torch

import arena
from arena import Access, Attack
from arena.models import ARCHITECTURES

from .iterative import RowGradient, ascend, ascent_gradient, random_start

METHODS = ("mifgsm", "pgd")


class _SurrogateAttack(Attack):
    """Iterative steps against surrogates: MI-FGSM (clean start, momentum ``decay``) or PGD
    (random start, no momentum); ``step_size`` is a fraction of eps. Every step runs: success
    on a surrogate says nothing certain about the target, so nothing stops early."""

    access = Access.ZERO_QUERY
    norms = ("linf", "l2")
    supports_targeted = True
    bounds = {"method": arena.Choice(METHODS), "steps": arena.Range(1),
              "step_size": arena.Range(0, 1, low_inclusive=False), "decay": arena.Range(0)}

    def _gradient(self, access, y, target) -> RowGradient:
        raise NotImplementedError

    def perturb(self, access, x, y, threat, target=None):
        momentum = self.method == "mifgsm"
        return ascend(
            self._gradient(access, y, target),
            x,
            x if momentum else random_start(x, threat),
            threat,
            steps=self.steps,
            step_size=self.step_size * threat.eps,
            decay=self.decay if momentum else 0.0,
        )


class Transfer(_SurrogateAttack):
    """Transfer from one surrogate: MI-FGSM (Dong et al. 2018) or PGD against a classifier of
    architecture ``surrogate`` that the host trained on the training split."""

    name = "transfer"
    bounds = {"surrogate": arena.Choice(ARCHITECTURES)}

    def __init__(self, surrogate: str = "cnn", method: str = "mifgsm", steps: int = 10, step_size: float = 0.1,
                 decay: float = 1.0):
        self.surrogate = surrogate
        self.method = method
        self.steps = steps
        self.step_size = step_size
        self.decay = decay

    def surrogate_architectures(self):
        return (self.surrogate,)

    def _gradient(self, access, y, target):
        model = access.surrogates[self.surrogate]
        return lambda x_rows, rows: ascent_gradient(model, x_rows, y[rows], None if target is None else target[rows])


def fused_log_probability(models, x: torch.Tensor, fusion: str) -> torch.Tensor:
    """The ensemble's log-probabilities, fusing its members' outputs as ``fusion`` says.

    - ``"softmax"``: log(sum_i alpha_i softmax(Z_i(x))), the fused prediction of Liu et al. 2017;
    - ``"logits"``: log softmax(sum_i alpha_i Z_i(x)), the ensemble in logits of Dong et al. 2018;
    - ``"loss"``: sum_i alpha_i log softmax(Z_i(x)), an average of the members' losses;

    all with equal weights alpha_i = 1/k.
    """
    if fusion == "logits":
        return torch.stack([model(x) for model in models]).mean(dim=0).log_softmax(dim=1)
    log_probs = torch.stack([model(x).log_softmax(dim=1) for model in models])
    if fusion == "loss":
        return log_probs.mean(dim=0)
    return torch.logsumexp(log_probs, dim=0) - math.log(len(models))


FUSIONS = ("logits", "softmax", "loss")


class EnsembleTransfer(_SurrogateAttack):
    """Ensemble transfer (Liu et al. 2017): optimise against an ensemble of surrogates of different
    architectures, -log p_ens(target | x) targeted and log p_ens(y | x) untargeted.

    Liu et al. fuse the members' softmax outputs and minimise the objective plus a distance penalty
    with Adam; under a fixed budget the eps-ball replaces the penalty, and the steps are MI-FGSM's or
    PGD's. The members are fused in logits by default, as Dong et al. (2018) found best for
    transfer: on digits, with each of cnn, mlp and lenet held out as the target and the other two as
    surrogates, logit fusion beat every single surrogate's targeted success on all three targets,
    while softmax fusion did so only on one (``fusion="softmax"`` gives Liu et al.'s fusion).
    """

    name = "ensemble-transfer"
    bounds = {"surrogates": arena.Choice(ARCHITECTURES), "fusion": arena.Choice(FUSIONS)}

    def __init__(self, surrogates: tuple = ("cnn", "mlp", "lenet"), method: str = "mifgsm", steps: int = 10,
                 step_size: float = 0.1, decay: float = 1.0, fusion: str = "logits"):
        self.surrogates = tuple(surrogates)
        self.method = method
        self.steps = steps
        self.step_size = step_size
        self.decay = decay
        self.fusion = fusion

    def validate(self):
        if len(set(self.surrogates)) < 2 or len(set(self.surrogates)) != len(self.surrogates):
            raise arena.ArenaError(f"surrogates={list(self.surrogates)}: an ensemble needs two or more different "
                                   "surrogates")

    def surrogate_architectures(self):
        return self.surrogates

    def _gradient(self, access, y, target):
        models = [access.surrogates[name].model for name in self.surrogates]
        labels, sign = (y, -1.0) if target is None else (target, 1.0)

        def gradient(x_rows, rows):
            with torch.enable_grad():
                x_rows = x_rows.detach().requires_grad_(True)
                fused = fused_log_probability(models, x_rows, self.fusion)
                objective = sign * fused.gather(1, labels[rows][:, None]).sum()
                (grad,) = torch.autograd.grad(objective, x_rows)
            return fused.detach(), grad

        return gradient


@arena.hookimpl
def register_attacks(register):
    register(Transfer)
    register(EnsembleTransfer)
