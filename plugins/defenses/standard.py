"""Plain training: the undefended baseline."""

from __future__ import annotations

import arena
from arena import Defense
from arena.training import TRAINING_BOUNDS

from .adversary import robust_accuracy_monitor


class Standard(Defense):
    """Standard training with Adam on the clean training split (the undefended baseline)."""

    name = "standard"
    bounds = TRAINING_BOUNDS

    def __init__(self, architecture: str = "cnn", epochs: int = 20, lr: float = 1e-3, batch_size: int = 64):
        self.architecture = architecture
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size

    def build(self, dataset, ctx):
        return ctx.default_classifier(self.architecture)

    def train(self, model, ctx):
        monitor = robust_accuracy_monitor(ctx, ctx.dataset.default_threat.eps)
        return ctx.fit(model, epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, epoch_metrics=monitor)


@arena.hookimpl
def register_defenses(register):
    register(Standard)
