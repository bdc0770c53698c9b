"""Fast adversarial training (Wong et al. 2020, "Fast is better than free: Revisiting
adversarial training")."""

from __future__ import annotations

import torch.nn.functional as F

import arena

from .adversary import AdversarialTraining, cross_entropy_objective, pgd, uniform_start


class FastAT(AdversarialTraining):
    """FGSM adversarial training from a random start: delta ~ U(-eps, eps), one signed-gradient
    step of alpha = 1.25 * eps, projected back onto the eps-ball; train on x + delta.

    One gradient computation per example instead of PGD's ``steps``, for robustness close to
    PGD training (Wong et al. 2020, Algorithm 3). Training follows the paper's MNIST recipe:
    Adam with a cyclic learning rate peaking at 5e-3, 10 epochs; ``pgd-at`` and ``trades``
    share it, so that their training times compare. (The paper's mixed precision is a GPU
    speed-up left out here.)
    """

    name = "fast-at"
    bounds = {"alpha": arena.Range(0, low_inclusive=False)}

    def __init__(
        self,
        eps: float | None = None,
        alpha: float | None = None,
        architecture: str = "cnn",
        epochs: int = 10,
        lr: float = 5e-3,
        lr_schedule: str = "cyclic",
        batch_size: int = 64,
    ):
        self._recipe(eps, architecture, epochs, lr, lr_schedule, batch_size)
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
