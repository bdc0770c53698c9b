"""Plugins that each break one promise of their contract, for the conformance checks' tests."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import arena


class _Step(arena.Attack):
    """One signed-gradient step of size eps (a correct FGSM), for the broken variants below."""

    name = "step"
    norms = ("linf",)
    supports_targeted = True

    def perturb(self, access, x, y, threat, target=None):
        grad = access.gradient(x, target if threat.targeted else y)
        direction = -grad.sign() if threat.targeted else grad.sign()
        return (x + threat.eps * direction).clamp(0, 1)


class LeavesTheBall(_Step):
    """Steps twice eps."""

    name = "leaves-the-ball"

    def perturb(self, access, x, y, threat, target=None):
        return (x + 2 * (super().perturb(access, x, y, threat, target) - x)).clamp(0, 1)


class ChangesTheWeights(_Step):
    """Nudges the model's weights while attacking."""

    name = "changes-the-weights"

    def perturb(self, access, x, y, threat, target=None):
        with torch.no_grad():
            for parameter in access.model.parameters():
                parameter.add_(0.01)
        return super().perturb(access, x, y, threat, target)


class TrainMode(_Step):
    """Calls the model in training mode (and puts it back in eval mode afterwards)."""

    name = "train-mode"

    def perturb(self, access, x, y, threat, target=None):
        access.model.train()
        try:
            return super().perturb(access, x, y, threat, target)
        finally:
            access.model.eval()


class Greedy(arena.Attack):
    """A score-query attack that ignores its budget."""

    name = "greedy"
    access = arena.Access.SCORE_QUERY

    def perturb(self, oracle, x, y, threat, target=None):
        best = x.clone()
        for _ in range(oracle.budget + 1):
            candidate = (x + threat.eps * torch.randn_like(x).sign()).clamp(0, 1)
            oracle(candidate)
            best = candidate
        return best


class Unseeded(_Step):
    """Draws its random start from an unseeded NumPy generator."""

    name = "unseeded"

    def perturb(self, access, x, y, threat, target=None):
        start = torch.from_numpy(np.random.default_rng().uniform(-1, 1, tuple(x.shape))).to(x)
        return (x + threat.eps * start.sign()).clamp(0, 1)


class Forgetful(arena.Defense):
    """Takes `lr` but keeps it under another name: the value that ran is not recorded."""

    name = "forgetful"

    def __init__(self, epochs: int = 2, lr: float = 0.001) -> None:
        self.epochs = epochs
        self._learning_rate = lr

    def train(self, model, ctx):
        return ctx.fit(model, epochs=self.epochs, lr=self._learning_rate, batch_size=64)


class _Pixels(nn.Module):
    def __init__(self, shape) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(shape))


class _Independent(arena.Generator):
    """Independent Bernoulli-free pixels: a uniform density, sampled through a sigmoid."""

    name = "independent"
    likelihood = "exact"

    def build(self, dataset, ctx):
        return _Pixels(dataset.shape)

    def train(self, model, ctx):
        return None

    def sample(self, model, n, generator):
        noise = torch.rand((n, *model.logits.shape), generator=generator)
        return torch.sigmoid(model.logits + noise)

    def log_likelihood(self, model, x):
        return torch.full((len(x),), -float(x[0].numel()) * np.log(17.0))


class OutOfRange(_Independent):
    """Samples in [-1, 1]."""

    name = "out-of-range"

    def sample(self, model, n, generator):
        return 2 * torch.rand((n, *model.logits.shape), generator=generator) - 1


class Overconfident(_Independent):
    """A log-likelihood of +5 nats per image: no probability."""

    name = "overconfident"

    def log_likelihood(self, model, x):
        return torch.full((len(x),), 5.0)


class OffTheGrid(arena.Dataset):
    """Declares 17 grey levels but holds 256."""

    name = "off-the-grid"
    shape = (1, 4, 4)
    classes = 2
    levels = 17
    default_threat = arena.ThreatModel("linf", 0.1)

    def load(self):
        generator = torch.Generator().manual_seed(0)
        images = lambda n: torch.randint(0, 256, (n, 1, 4, 4), generator=generator).float() / 255  # noqa: E731
        labels = lambda n: torch.arange(n) % 2  # noqa: E731
        return arena.Splits(images(20), labels(20), images(10), labels(10))


class IgnoresItsGenerator(_Independent):
    """Draws from torch's global generator instead of the one it is given."""

    name = "ignores-its-generator"

    def sample(self, model, n, generator):
        return torch.sigmoid(model.logits + torch.rand((n, *model.logits.shape)))
