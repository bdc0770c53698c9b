"""Deliberately broken plugins: each trips one integrity check."""

from __future__ import annotations

import time

import torch
from torch import nn

import arena
from arena.plugins import Source, load_registry, set_registry


class Softmaxed(nn.Module):
    """Returns probabilities instead of logits."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return torch.softmax(self.inner(x), dim=1)


class Quantized(nn.Module):
    """Rounds its input to 4 levels first: exact zero input gradients (obfuscated gradients)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(torch.round(x * 3) / 3)


class Noisy(nn.Module):
    """Adds fresh Gaussian noise at every forward pass."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner((x + 0.05 * torch.randn_like(x)).clamp(0, 1))


def _wrapping(name: str, wrapper: type[nn.Module], deterministic: bool = True) -> type[arena.Defense]:
    class Wrapped(arena.Defense):
        __doc__ = f"The standard model behind {wrapper.__name__}."

        def build(self, dataset, ctx):
            return wrapper(ctx.trained_defense("standard"))

    Wrapped.name = name
    Wrapped.deterministic = deterministic
    return Wrapped


SoftmaxDefense = _wrapping("softmaxed", Softmaxed)
QuantizedDefense = _wrapping("quantized", Quantized)
NoisyDefense = _wrapping("noisy", Noisy, deterministic=False)
#: The same noise behind a class that keeps the default ``deterministic = True``: a false declaration.
UndeclaredNoisyDefense = _wrapping("noisy-undeclared", Noisy)


class TimidPGD(arena.Attack):
    """Sign-gradient steps far too small to reach the budget in the default number of steps."""

    name = "timid-pgd"
    steps_parameter = "steps"

    def __init__(self, steps: int = 2, step_size: float = 0.02):
        self.steps = steps
        self.step_size = step_size

    def perturb(self, access, x, y, threat, target=None):
        x_adv = x.clone()
        for _ in range(self.steps):
            x_adv = arena.project(x, x_adv + self.step_size * access.gradient(x_adv, y).sign(), threat)
        return x_adv


class RandomCorners(arena.Attack):
    """Random signs at the full L-inf budget: a zero-query attack that needs no gradient."""

    name = "random-corners"
    access = arena.Access.ZERO_QUERY

    def perturb(self, access, x, y, threat, target=None):
        signs = torch.randint(0, 2, x.shape, device=x.device).to(x.dtype) * 2 - 1
        return (x + threat.eps * signs).clamp(0, 1)


class Sleeper(arena.Attack):
    """Hangs."""

    name = "sleeper"

    def perturb(self, access, x, y, threat, target=None):
        time.sleep(600)
        return x


class NaNs(arena.Attack):
    """Returns NaN pixels."""

    name = "nans"

    def perturb(self, access, x, y, threat, target=None):
        return x * float("nan")


@arena.hookimpl
def register_defenses(register):
    for cls in (SoftmaxDefense, QuantizedDefense, NoisyDefense, UndeclaredNoisyDefense):
        register(cls)


@arena.hookimpl
def register_attacks(register):
    for cls in (TimidPGD, RandomCorners, Sleeper, NaNs):
        register(cls)


class _Module:
    register_defenses = staticmethod(register_defenses)
    register_attacks = staticmethod(register_attacks)


def install() -> None:
    """Make the process-wide registry hold the built-ins plus these plugins."""
    set_registry(load_registry(extra=[(_Module(), Source("arena-broken-fixtures", "0.1"))]))
