"""Fast adversarial training (Wong et al. 2020, "Fast is better than free: Revisiting
adversarial training")."""

from __future__ import annotations

import torch.nn.functional as F

import arena
from arena import Defense

from .adversary import cross_entropy_objective, pgd, robust_accuracy_monitor, uniform_start


class FastAT(Defense):
    """FGSM adversarial training from a random start: delta ~ U(-eps, eps), one signed-gradient
    step of alpha = 1.25 * eps, projected back onto the eps-ball; train on x + delta.

    One gradient computation per example instead of PGD's ``steps``, for robustness close to
    PGD training (Wong et al. 2020, Algorithm 3). Training follows the paper's MNIST recipe:
    Adam with a cyclic learning rate peaking at 5e-3, 10 epochs; ``pgd-at`` and ``trades``
    share it, so that their training times compare. (The paper's mixed precision is a GPU
    speed-up left out here.)
    """

    name = "fast-at"

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
        self.eps = eps  # None: the dataset's default eps
        self.alpha = alpha  # None: 1.25 * eps, the paper's step
        self.architecture = architecture
        self.epochs = epochs
        self.lr = lr  # the peak of the cyclic schedule
        self.lr_schedule = lr_schedule
        self.batch_size = batch_size

    def resolve(self, dataset):
        if self.eps is None:
            self.eps = dataset.default_threat.eps
        if self.alpha is None:
            self.alpha = 1.25 * self.eps

    def build(self, dataset, ctx):
        return ctx.default_classifier(self.architecture)

    def adversarial_loss(self, model, x, y):
        # FGSM from a random start is one PGD step of size alpha.
        x_adv = pgd(model, x, cross_entropy_objective(y), self.eps, self.alpha, 1, uniform_start(x, self.eps))
        return F.cross_entropy(model(x_adv), y)

    def train(self, model, ctx):
        return ctx.fit(model, epochs=self.epochs, lr=self.lr, lr_schedule=self.lr_schedule,
                       batch_size=self.batch_size, loss=self.adversarial_loss,
                       epoch_metrics=robust_accuracy_monitor(ctx, self.eps))


@arena.hookimpl
def register_defenses(register):
    register(FastAT)
