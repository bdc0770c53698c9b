"""PGD adversarial training (Madry et al. 2018, "Towards Deep Learning Models Resistant to
Adversarial Attacks")."""

from __future__ import annotations

import torch.nn.functional as F

import arena

from .adversary import AdversarialTraining, cross_entropy_objective, pgd, uniform_start
from .recipes import RICE2020


class PGDAT(AdversarialTraining):
    """PGD adversarial training: min_theta E[max_{||delta||_inf <= eps} J(theta, x + delta, y)].

    The inner maximum is approximated by PGD from a uniform random start in the eps-ball, and the
    weights are trained on those adversarial examples only, as in the paper. Madry et al. use 40
    steps of 0.01 at eps 0.3 on MNIST and 7 steps of 2/255 at eps 8/255 on CIFAR-10; the default
    here is 10 steps of 2.5 * eps / steps, enough to reach any corner of the ball. The optimiser
    is the one ``fast-at`` uses (Adam, cyclic learning rate peaking at 5e-3, 10 epochs), as in
    Wong et al.'s comparison of the two.

    ``recipe=rice2020`` is Rice et al.'s (2020) CIFAR-10 recipe, the PGD-AT baseline most
    papers since compare with: PreAct ResNet-18, SGD (momentum 0.9, weight decay 5e-4) at 0.1,
    divided by 10 at epochs 100 and 150 of 200, batch 128, random crops and flips; at eps 8/255
    the default step is their 10 steps of 2/255.
    """

    name = "pgd-at"
    recipes = {"arena": {}, "rice2020": RICE2020}
    bounds = {"steps": arena.Range(1), "step_size": arena.Range(0, low_inclusive=False),
              "recipe": arena.Choice(recipes)}

    def __init__(
        self,
        eps: float | None = None,
        steps: int = 10,
        step_size: float | None = None,
        random_start: bool = True,
        recipe: str = "arena",
        architecture: str = "cnn",
        epochs: int = 10,
        lr: float = 5e-3,
        lr_schedule: str = "cyclic",
        batch_size: int = 64,
        optimizer: str = "adam",
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        milestones: tuple[float, ...] = (0.5, 0.75),
        lr_decay: float = 0.1,
        augment: str | None = None,
        amp: str = "off",
    ):
        self._recipe(eps, architecture, epochs, lr, lr_schedule, batch_size)
        self._training(recipe, optimizer, momentum, nesterov, weight_decay, milestones, lr_decay, augment, amp)
        self.steps = steps
        self.step_size = step_size  # None: 2.5 * eps / steps
        self.random_start = random_start

    def resolve(self, dataset):
        super().resolve(dataset)
        if self.step_size is None:
            self.step_size = 2.5 * self.eps / self.steps

    def training_loss(self, model, x, y):
        start = uniform_start(x, self.eps) if self.random_start else None
        x_adv = pgd(model, x, cross_entropy_objective(y), self.eps, self.step_size, self.steps, start)
        return F.cross_entropy(model(x_adv), y)


@arena.hookimpl
def register_defenses(register):
    register(PGDAT)
