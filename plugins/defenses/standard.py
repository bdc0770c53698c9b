"""Plain training: the undefended baseline."""

from __future__ import annotations

import arena
from arena import Defense
from arena.training import TRAINING_BOUNDS

from .adversary import robust_accuracy_monitor
from .recipes import ZAGORUYKO2016, RecipeTraining


class Standard(RecipeTraining, Defense):
    """Standard training on the clean training split (the undefended baseline).

    Adam at a constant 1e-3 for 20 epochs by default. ``recipe=zagoruyko2016`` is Zagoruyko &
    Komodakis's (2016) CIFAR recipe for WideResNets: WRN-28-10, SGD with Nesterov momentum 0.9
    and weight decay 5e-4 at 0.1, times 0.2 at epochs 60, 120 and 160 of 200, batch 128, random
    crops and flips.
    """

    name = "standard"
    recipes = {"arena": {}, "zagoruyko2016": ZAGORUYKO2016}
    bounds = {**TRAINING_BOUNDS, "recipe": arena.Choice(recipes)}

    def __init__(
        self,
        recipe: str = "arena",
        architecture: str = "cnn",
        epochs: int = 20,
        lr: float = 1e-3,
        batch_size: int = 64,
        lr_schedule: str = "constant",
        optimizer: str = "adam",
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        milestones: tuple[float, ...] = (0.5, 0.75),
        lr_decay: float = 0.1,
        augment: str | None = None,
        amp: str = "off",
    ):
        self.architecture = architecture
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.lr_schedule = lr_schedule
        self._training(recipe, optimizer, momentum, nesterov, weight_decay, milestones, lr_decay, augment, amp)

    def build(self, dataset, ctx):
        return ctx.default_classifier(self.architecture)

    def train(self, model, ctx):
        monitor = robust_accuracy_monitor(ctx, ctx.dataset.default_threat.eps)
        return ctx.fit(model, epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, epoch_metrics=monitor,
                       **self.fit_options())


@arena.hookimpl
def register_defenses(register):
    register(Standard)
