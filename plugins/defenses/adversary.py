"""The inner maximisation of adversarial training, run on the model being trained.

Defenses need adversarial examples of their own model at every training step, with the
weights still trainable, so this is not the evaluation-time attack plugin (which sees a frozen
model through the host's access object); it is the same L-inf projected gradient ascent.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

import arena
from arena.training import TRAINING_BOUNDS, accuracy

from .recipes import RecipeTraining

#: ``loss(model, x_adv) -> scalar`` that the inner maximisation increases.
InnerLoss = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def cross_entropy_objective(y: torch.Tensor) -> InnerLoss:
    """J(theta, x_adv, y), summed so that each sample's step is independent of the batch."""
    return lambda model, x_adv: F.cross_entropy(model(x_adv), y, reduction="sum")


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    objective: InnerLoss,
    eps: float,
    step_size: float,
    steps: int,
    start: torch.Tensor | None = None,
) -> torch.Tensor:
    """Projected gradient ascent in the L-inf ball (Madry et al. 2018):
    x_{t+1} = Proj_{B(x, eps) ∩ [0,1]}(x_t + step_size * sign(grad_x objective(x_t))),
    from ``start`` (default ``x``). Returns a detached tensor; no weight gradient accumulates.
    """
    threat = arena.ThreatModel("linf", eps)
    x = x.detach()
    x_adv = x.clone() if start is None else arena.project(x, start.detach(), threat)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(objective(model, x_adv), x_adv)
        x_adv = arena.project(x, x_adv.detach() + step_size * grad.sign(), threat)
    return x_adv.detach()


def uniform_start(x: torch.Tensor, eps: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x + U(-eps, eps) per pixel (clipped to the image by the first projection)."""
    noise = torch.rand(x.shape, generator=generator, device="cpu" if generator is not None else x.device)
    return x + (2 * noise.to(x.device) - 1) * eps


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluation mode inside the block (dropout off), the previous mode after it."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


#: The robust accuracy a training run reports after each epoch: PGD with this many steps ...
MONITOR_STEPS = 5
#: ... on this many points of the test split (a progress indicator, cheap next to an epoch).
MONITOR_SAMPLES = 128


def robust_accuracy_monitor(ctx: arena.BuildContext, eps: float, batch_size: int = 512) -> Callable[[nn.Module], dict]:
    """``epoch_metrics`` for :meth:`arena.BuildContext.fit`: robust accuracy on the first
    :data:`MONITOR_SAMPLES` test points under a :data:`MONITOR_STEPS`-step PGD from a random
    start (step 2.5 * eps / steps), at ``eps``: a progress indicator, weaker than the host's
    evaluation and not a substitute for it.

    Its random starts come from a generator of their own, so monitoring never changes the
    weights a training run produces.
    """
    x_test, y_test = ctx.splits.x_test[:MONITOR_SAMPLES], ctx.splits.y_test[:MONITOR_SAMPLES]

    def metric(model: nn.Module) -> dict:
        generator = ctx.generator(offset=7919)  # the same starts every epoch
        correct = 0
        with eval_mode(model):
            for begin in range(0, len(x_test), batch_size):
                x, y = x_test[begin : begin + batch_size], y_test[begin : begin + batch_size]
                start = uniform_start(x, eps, generator)
                x_adv = pgd(model, x, cross_entropy_objective(y), eps, 2.5 * eps / MONITOR_STEPS, MONITOR_STEPS, start)
                correct += round(accuracy(model, x_adv, y) * len(y))
        return {"robust_accuracy": correct / len(y_test)}

    return metric


class AdversarialTraining(RecipeTraining, arena.Defense):
    """What the adversarial-training defenses share: the default classifier (or another
    ``architecture``) trained on the loss a subclass defines in :meth:`training_loss`, with the
    robust accuracy monitored after each epoch at ``eps`` (None: the dataset's default eps).
    ``pgd-at``, ``fast-at`` and ``trades`` share Wong et al.'s cyclic schedule with Adam by
    default, so that they compare, and take a published recipe by name (see
    :mod:`.recipes`); ``advtrain`` and ``ensemble`` train with Adam at a constant rate, which
    is then not a hyperparameter of theirs.

    A subclass still declares every hyperparameter in its own ``__init__`` (the host records
    them from its signature) and hands the shared ones to :meth:`_recipe` (and, with a recipe,
    to :meth:`_training`).
    """

    bounds = {**TRAINING_BOUNDS, "eps": arena.Range(0, 1, low_inclusive=False)}

    def _recipe(self, eps: float | None, architecture: str, epochs: int, lr: float, lr_schedule: str,
                batch_size: int) -> None:
        self.eps = eps
        self.architecture = architecture
        self.epochs = epochs
        self.lr = lr  # the peak of the cyclic schedule
        self.lr_schedule = lr_schedule
        self.batch_size = batch_size

    def resolve(self, dataset):
        super().resolve(dataset)
        if self.eps is None:
            self.eps = dataset.default_threat.eps

    def build(self, dataset, ctx):
        return ctx.default_classifier(self.architecture)

    def training_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def train(self, model, ctx):
        return ctx.fit(model, epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, loss=self.training_loss,
                       epoch_metrics=robust_accuracy_monitor(ctx, self.eps),
                       **{"lr_schedule": self.lr_schedule, **self.fit_options()})  # advtrain: its constant rate
