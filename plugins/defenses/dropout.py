"""Standard training with dropout: the regulariser Goodfellow et al. (2015) compare adversarial
training against."""

from __future__ import annotations

import arena
from arena import Defense
from arena.models import DROPOUT_ARCHITECTURES
from arena.training import TRAINING_BOUNDS

from .adversary import robust_accuracy_monitor


class Dropout(Defense):
    """Standard training of the default classifier with dropout (Srivastava et al. 2014) on the
    input of every fully connected layer, p = 0.5; no adversarial examples.

    Goodfellow et al. (2015) report that adversarial training (their section 6)
    regularises beyond what dropout does; ``advtrain`` against ``dropout`` shows it here.
    """

    name = "dropout"
    bounds = {**TRAINING_BOUNDS, "p": arena.Range(0, 1, high_inclusive=False),
              "architecture": arena.Choice(DROPOUT_ARCHITECTURES)}

    def __init__(
        self, p: float = 0.5, architecture: str = "cnn", epochs: int = 20, lr: float = 1e-3, batch_size: int = 64
    ):
        self.p = p
        self.architecture = architecture
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size

    def build(self, dataset, ctx):
        return ctx.default_classifier(self.architecture, dropout=self.p)

    def train(self, model, ctx):
        monitor = robust_accuracy_monitor(ctx, ctx.dataset.default_threat.eps)
        return ctx.fit(model, epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, epoch_metrics=monitor)


@arena.hookimpl
def register_defenses(register):
    register(Dropout)
