"""Training recipes: how a training defense optimises its classifier, and the published recipes
it can be told to follow by name (``-p pgd-at.recipe=rice2020``).

A recipe is a set of hyperparameter values. ``arena`` (the default) is the values in the
defense's signature, made for the small CPU datasets (Adam, digits and MNIST in seconds to
minutes); the others are those of a paper, for 32x32 colour images. A value given with ``-p``
overrides the recipe's, and what runs is what is recorded: every hyperparameter holds the value
it trained with, ``recipe`` only names where the rest came from (so it is left out of the model's
key: the same values make the same model, whatever they were called).

``augment`` defaults to None, the dataset's augmentation (``crop-flip`` for CIFAR-10, ``crop``
for SVHN, ``none`` for the digit datasets), resolved before training and recorded as resolved.
"""

from __future__ import annotations

from typing import Any, ClassVar

from arena.training import RECIPE_BOUNDS, Recipe

#: The hyperparameters a recipe defense hands to ``ctx.fit`` besides epochs, lr and batch size.
FIT_OPTIONS = ("optimizer", "momentum", "nesterov", "weight_decay", "lr_schedule", "milestones", "lr_decay",
               "augment", "amp")

#: SGD with momentum 0.9 at 0.1, batch 128: what every recipe below starts from.
_SGD = {"optimizer": "sgd", "momentum": 0.9, "lr": 0.1, "batch_size": 128}

#: Zagoruyko & Komodakis (2016), "Wide Residual Networks", CIFAR: WRN-28-10, SGD with Nesterov
#: momentum 0.9, lr 0.1 times 0.2 at epochs 60, 120 and 160 of 200, weight decay 5e-4, batch 128.
#: The 60th, 120th and 160th epochs (counted from 1) are the first at the lower rate, as in the
#: authors' code. They pad crops by reflection; Arena pads with zeros.
ZAGORUYKO2016 = {**_SGD, "architecture": "wrn-28-10", "epochs": 200, "nesterov": True, "weight_decay": 5e-4,
                 "lr_schedule": "piecewise", "milestones": (59 / 200, 119 / 200, 159 / 200), "lr_decay": 0.2}

#: Rice, Wong & Kolter (2020), "Overfitting in adversarially robust deep learning": PreAct
#: ResNet-18, SGD with momentum 0.9, lr 0.1 times 0.1 at epochs 100 and 150 of 200, weight decay
#: 5e-4, batch 128; PGD of 10 steps of 2/255 at eps 8/255 from a uniform random start.
RICE2020 = {**_SGD, "architecture": "preact-resnet18", "epochs": 200, "weight_decay": 5e-4,
            "lr_schedule": "piecewise", "milestones": (0.5, 0.75), "lr_decay": 0.1}

#: Zhang et al. (2019), "Theoretically Principled Trade-off between Robustness and Accuracy",
#: CIFAR-10: WRN-34-10, SGD with momentum 0.9, lr 0.1 times 0.1 for the last 2 of 76 epochs
#: (epoch 75 on, as in the authors' code), weight decay 2e-4, batch 128; beta 6; the inner
#: maximisation 10 steps of 0.007 at eps 0.031.
ZHANG2019 = {**_SGD, "architecture": "wrn-34-10", "epochs": 76, "weight_decay": 2e-4, "lr_schedule": "piecewise",
             "milestones": (74 / 76,), "lr_decay": 0.1}

#: Wong, Rice & Kolter (2020), "Fast is better than free: Revisiting adversarial training",
#: CIFAR-10: PreAct ResNet-18, SGD with momentum 0.9 and weight decay 5e-4, the cyclic learning
#: rate from 0 up to 0.2 and back over 15 epochs, batch 128, mixed precision (float16); FGSM
#: from a uniform random start with step 1.25 * eps.
WONG2020 = {**_SGD, "architecture": "preact-resnet18", "epochs": 15, "lr": 0.2, "weight_decay": 5e-4,
            "lr_schedule": "cyclic", "amp": "fp16"}


class RecipeTraining:
    """Mixed into a training defense (before :class:`arena.Defense`): a ``recipe`` hyperparameter
    naming one of :attr:`recipes`, whose values fill the hyperparameters not given explicitly,
    and the optimiser, schedule, augmentation and precision hyperparameters of
    :data:`FIT_OPTIONS`, checked together and handed to ``ctx.fit`` by :meth:`fit_options`.

    A subclass lists every hyperparameter in its own ``__init__`` and stores the shared ones with
    :meth:`_training`. A class without a ``recipe`` hyperparameter trains with the defaults of
    :class:`arena.training.Recipe` for the options it does not take.
    """

    #: Recipe name -> hyperparameter values; ``arena`` is the signature's defaults.
    recipes: ClassVar[dict[str, dict[str, Any]]] = {"arena": {}}
    bounds = dict(RECIPE_BOUNDS)

    def _training(self, recipe: str, optimizer: str, momentum: float, nesterov: bool, weight_decay: float,
                  milestones: tuple[float, ...], lr_decay: float, augment: str | None, amp: str) -> None:
        self.recipe = recipe
        self.optimizer = optimizer
        self.momentum = momentum  # SGD's; Adam ignores it
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.milestones = tuple(milestones)  # fractions of training, for the piecewise schedule
        self.lr_decay = lr_decay
        self.augment = augment  # None: the dataset's
        self.amp = amp

    @classmethod
    def create(cls, overrides: dict[str, Any] | None = None):
        """The plugin with the named recipe's values under the ones given explicitly."""
        overrides = dict(overrides or {})
        name = overrides.get("recipe", cls.parameter_defaults().get("recipe"))
        preset = cls.recipes.get(name, {}) if isinstance(name, str) else {}  # an unknown name: the bound says so
        return super().create({**preset, **overrides})

    def identity(self) -> dict[str, Any]:
        return {name: value for name, value in self.hyperparameters().items() if name != "recipe"}

    def resolve(self, dataset) -> None:
        super().resolve(dataset)
        if "augment" in self.parameter_defaults() and self.augment is None:
            self.augment = dataset.augmentation

    def validate(self) -> None:
        options = self.fit_options()
        options["augment"] = options.get("augment") or "none"  # None until resolved
        Recipe(self.epochs, self.lr, self.batch_size, **options).check()

    def fit_options(self) -> dict[str, Any]:
        """The keyword arguments of ``ctx.fit`` this defense takes as hyperparameters."""
        defaults = self.parameter_defaults()
        return {name: getattr(self, name) for name in FIT_OPTIONS if name in defaults}
