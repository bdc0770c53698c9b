"""Ensemble adversarial training (Tramèr et al. 2018, "Ensemble Adversarial Training: Attacks
and Defenses")."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import arena
from arena.models import ARCHITECTURES

from .adversary import AdversarialTraining


def fgsm(model, x, y, eps: float) -> torch.Tensor:
    """x + eps * sign(grad_x J(model, x, y)), clipped to [0, 1], detached."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return (x + eps * grad.sign()).clamp(0.0, 1.0).detach()


class Ensemble(AdversarialTraining):
    """Ensemble adversarial training: one model trained on clean examples and on FGSM examples
    transferred from static pre-trained models, not an ensemble of models.

    For every batch the source of the adversarial examples is drawn uniformly from the model
    being trained and the static models, and the loss is 0.5 * J(x) + 0.5 * J(x_adv), as in the
    authors' MNIST code. Decoupling the examples from the current weights keeps single-step
    adversarial training from learning to mask its own gradients. The static models are
    Arena's ``standard`` defense trained with each architecture in ``static_architectures``
    (cached and shared with that defense).
    """

    name = "ensemble"
    bounds = {"static_architectures": arena.Choice(ARCHITECTURES)}

    def __init__(
        self,
        eps: float | None = None,
        static_architectures: tuple[str, ...] = ("cnn", "mlp"),
        architecture: str = "cnn",
        epochs: int = 20,
        lr: float = 1e-3,
        batch_size: int = 64,
    ):
        self._recipe(eps, architecture, epochs, lr, "constant", batch_size)
        self.static_architectures = tuple(static_architectures)
        self._sources: list = []

    def validate(self):
        if not self.static_architectures:
            raise arena.ArenaError("static_architectures needs at least one architecture")

    def train(self, model, ctx):
        static = [ctx.trained_defense("standard", architecture=a) for a in self.static_architectures]
        self._sources = [model, *static]
        return super().train(model, ctx)

    def training_loss(self, model, x, y):
        source = self._sources[int(torch.randint(len(self._sources), (1,)))]
        x_adv = fgsm(source, x, y, self.eps)
        return 0.5 * F.cross_entropy(model(x), y) + 0.5 * F.cross_entropy(model(x_adv), y)


@arena.hookimpl
def register_defenses(register):
    register(Ensemble)
