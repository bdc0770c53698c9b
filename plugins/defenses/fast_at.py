"""Fast adversarial training (Wong et al. 2020, "Fast is better than free: Revisiting
adversarial training")."""

from __future__ import annotations

import torch.nn.functional as F

import arena

from .adversary import AdversarialTraining, cross_entropy_objective, pgd, uniform_start
from .recipes import WONG2020


class FastAT(AdversarialTraining):
    """FGSM adversarial training from a random start: delta ~ U(-eps, eps), one signed-gradient
    step of alpha = 1.25 * eps, projected back onto the eps-ball; train on x + delta.

    One gradient computation per example instead of PGD's ``steps``, for robustness close to
    PGD training (Wong et al. 2020, Algorithm 3). Training follows the paper's MNIST recipe:
    Adam with a cyclic learning rate peaking at 5e-3, 10 epochs; ``pgd-at`` and ``trades``
    share it, so that their training times compare.

    ``recipe=wong2020`` is the paper's CIFAR-10 recipe: PreAct ResNet-18, SGD (momentum 0.9,
    weight decay 5e-4) on the cyclic rate peaking at 0.2, 15 epochs, batch 128, random crops and
    flips, and its mixed precision (float16 on CUDA; nothing changes on a CPU).
    """

    name = "fast-at"
    recipes = {"arena": {}, "wong2020": WONG2020}
    bounds = {"alpha": arena.Range(0, low_inclusive=False), "recipe": arena.Choice(recipes)}

    def __init__(
        self,
        eps: float | None = None,
        alpha: float | None = None,
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
        self.alpha = alpha  # None: 1.25 * eps, the paper's step

    def resolve(self, dataset):
        super().resolve(dataset)
        if self.alpha is None:
            self.alpha = 1.25 * self.eps

    def training_loss(self, model, x, y):
        # FGSM from a random start is one PGD step of size alpha.
        x_adv = pgd(model, x, cross_entropy_objective(y), self.eps, self.alpha, 1, uniform_start(x, self.eps))
        return F.cross_entropy(model(x_adv), y)


@arena.hookimpl
def register_defenses(register):
    register(FastAT)
