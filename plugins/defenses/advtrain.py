"""FGSM adversarial training (Goodfellow et al. 2015, section 6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import arena

from .adversary import AdversarialTraining


def fgsm_objective(model, x, y, alpha: float, eps: float) -> torch.Tensor:
    """alpha * J(theta, x, y) + (1 - alpha) * J(theta, x + eps * sign(grad_x J(theta, x, y)), y).

    The adversarial example is regenerated from the current weights at every step and treated
    as a constant input (no gradient flows through its construction), as in the paper.
    """
    x = x.detach().requires_grad_(True)
    clean_loss = F.cross_entropy(model(x), y)
    (grad,) = torch.autograd.grad(clean_loss, x, retain_graph=True)
    x_adv = (x + eps * grad.sign()).clamp(0.0, 1.0).detach()
    return alpha * clean_loss + (1.0 - alpha) * F.cross_entropy(model(x_adv), y)


class AdvTrain(AdversarialTraining):
    """FGSM adversarial training: alpha * J(x) + (1 - alpha) * J(x + eps * sign(grad_x J))."""

    name = "advtrain"
    bounds = {"alpha": arena.Range(0, 1)}

    def __init__(
        self,
        alpha: float = 0.5,
        eps: float | None = None,
        architecture: str = "cnn",
        epochs: int = 20,
        lr: float = 1e-3,
        batch_size: int = 64,
    ):
        self._recipe(eps, architecture, epochs, lr, "constant", batch_size)
        self.alpha = alpha

    def training_loss(self, model, x, y):
        return fgsm_objective(model, x, y, self.alpha, self.eps)


@arena.hookimpl
def register_defenses(register):
    register(AdvTrain)
