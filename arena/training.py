"""Training: the context handed to defenses and generators, and the host's classifier loop."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .bounds import Bound, Choice, Range
from .errors import InvalidInputError
from .models import DEFAULT_ARCHITECTURE, ArchitectureChoice, build_classifier
from .progress import Reporter, quiet

if TYPE_CHECKING:
    from .dataset import Dataset, Splits

#: ``loss(model, x, y) -> scalar`` for one training batch.
BatchLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Plain training: the mean cross-entropy of the batch."""
    return F.cross_entropy(model(x), y)


@dataclass
class BuildContext:
    """What a defense or generator gets while it is built and trained.

    ``splits`` are already on ``device``. ``trained_defense(name, **params)`` returns the
    trained model of another defense (from the cache when possible), for defenses that wrap
    one. Classifiers train with :meth:`fit`, generators with :meth:`run_epochs`.
    """

    dataset: "Dataset"
    splits: "Splits"
    device: torch.device
    seed: int
    reporter: Reporter = field(default_factory=quiet)
    trained_defense: Callable[..., nn.Module] | None = None
    label: str = ""

    def default_classifier(self, architecture: str = DEFAULT_ARCHITECTURE, dropout: float = 0.0) -> nn.Module:
        """The host's classifier for this dataset's shape (see :mod:`arena.models`), with
        ``dropout`` on the input of each fully connected layer if above 0."""
        return build_classifier(architecture, self.dataset.shape, self.dataset.classes, dropout)

    def generator(self, offset: int = 0) -> torch.Generator:
        """A CPU random generator seeded from the run seed (plus ``offset``)."""
        return torch.Generator().manual_seed(self.seed + offset)

    def fit(
        self,
        model: nn.Module,
        *,
        epochs: int,
        lr: float,
        batch_size: int,
        loss: BatchLoss = cross_entropy_loss,
        weight_decay: float = 0.0,
        epoch_metrics: Callable[[nn.Module], dict[str, float]] | None = None,
        lr_schedule: str = "constant",
        optimizer: str = "adam",
        momentum: float = 0.9,
        nesterov: bool = False,
        milestones: tuple[float, ...] = (0.5, 0.75),
        lr_decay: float = 0.1,
        augment: str = "none",
        amp: str = "off",
    ) -> list[dict[str, Any]]:
        """Train a classifier with Adam (or SGD with momentum); see :func:`fit_classifier` and
        :class:`Recipe`."""
        return fit_classifier(
            model,
            self.splits,
            Recipe(epochs, lr, batch_size, weight_decay, lr_schedule, optimizer, momentum, nesterov,
                   tuple(milestones), lr_decay, augment, amp),
            seed=self.seed,
            loss=loss,
            reporter=self.reporter,
            description=f"training {self.label}".strip(),
            epoch_metrics=epoch_metrics,
        )


    def run_epochs(
        self,
        model: nn.Module,
        step: Callable[[torch.Tensor], dict[str, float]],
        *,
        epochs: int,
        batch_size: int,
    ) -> list[dict[str, Any]]:
        """Call ``step(x)`` once per mini-batch of training images for ``epochs`` epochs.

        For models that are not classifiers (generators): ``step`` does one optimisation step
        of the plugin's own algorithm and returns its losses as floats. The host shuffles with
        a generator seeded from the run seed, puts ``model`` in train mode during the epochs
        and eval mode after, and returns one record per epoch with the mean of each loss.
        """
        x = self.splits.x_train
        shuffle = torch.Generator().manual_seed(self.seed)
        history: list[dict[str, Any]] = []
        with self.reporter.task(f"training {self.label}".strip(), total=epochs) as advance:
            for epoch in range(epochs):
                model.train()
                order = torch.randperm(len(x), generator=shuffle).to(x.device)
                totals: dict[str, float] = {}
                seen = 0
                for start in range(0, len(x), batch_size):
                    batch = x[order[start : start + batch_size]]
                    for name, value in step(batch).items():
                        totals[name] = totals.get(name, 0.0) + float(value) * len(batch)
                    seen += len(batch)
                record: dict[str, Any] = {"epoch": epoch + 1, **{k: v / seen for k, v in totals.items()}}
                history.append(record)
                advance(status=" ".join(f"{k} {v:.3f}" for k, v in record.items() if k != "epoch"))
        model.eval()
        return history


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``, evaluated in batches without gradients."""
    if len(x) == 0:
        return float("nan")
    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            logits = model(x[start : start + batch_size])
            correct += int((logits.argmax(1) == y[start : start + batch_size]).sum())
    model.train(was_training)
    return correct / len(x)


def piecewise(milestones: tuple[float, ...] = (0.5, 0.75), decay: float = 0.1) -> Callable[[float], float]:
    """``lr`` times ``decay`` once per milestone passed: the milestones are fractions of training
    done (Rice et al. 2020 decay by 10 at epochs 100 and 150 of 200: ``(0.5, 0.75)``)."""
    return lambda done: decay ** sum(done >= milestone for milestone in milestones)


def cosine(done: float) -> float:
    """Cosine annealing without restarts (Loshchilov & Hutter 2017): from lr at the start to 0
    at the end, lr / 2 halfway."""
    return 0.5 * (1.0 + math.cos(math.pi * done))


#: Learning-rate schedules :func:`fit_classifier` knows, as a factor of ``lr`` by fraction of training done
#: (``piecewise`` with the milestones and decay of the :class:`Recipe`; Rice et al.'s here).
LR_SCHEDULES: dict[str, Callable[[float], float]] = {
    "constant": lambda done: 1.0,
    # Wong et al. 2020: linearly from 0 up to lr over the first half of the steps, back to 0 over the second.
    "cyclic": lambda done: 1.0 - abs(2.0 * done - 1.0),
    "piecewise": piecewise(),
    "cosine": cosine,
}

#: Optimisers :func:`fit_classifier` knows: Adam (Kingma & Ba 2015), or SGD with (Nesterov) momentum.
OPTIMIZERS = ("adam", "sgd")

#: Data augmentation of each training mini-batch: none, random crops (a shift of up to
#: :data:`CROP_PADDING` pixels each way, the border zero-filled), or crops and horizontal flips.
AUGMENTATIONS = ("none", "crop", "crop-flip")
CROP_PADDING = 4

#: Mixed precision on CUDA (autocast to bfloat16, or to float16 with a gradient scaler); on a CPU
#: training stays in float32 whatever is asked.
PRECISIONS = ("off", "bf16", "fp16")


#: Bounds of the hyperparameters a defense hands to :meth:`BuildContext.default_classifier` and
#: :meth:`BuildContext.fit`, for its ``bounds`` (one with the optimiser's, the schedule's, the
#: augmentation's or the precision's adds those of :data:`RECIPE_BOUNDS`).
TRAINING_BOUNDS: dict[str, Bound] = {
    "architecture": ArchitectureChoice(),
    "epochs": Range(1),
    "lr": Range(0, low_inclusive=False),
    "batch_size": Range(1),
}

#: Bounds of the rest of a :class:`Recipe`, by the names :meth:`BuildContext.fit` takes them.
RECIPE_BOUNDS: dict[str, Bound] = {
    "optimizer": Choice(OPTIMIZERS),
    "momentum": Range(0, 1, high_inclusive=False),
    "weight_decay": Range(0),
    "lr_schedule": Choice(LR_SCHEDULES),
    "milestones": Range(0, 1, low_inclusive=False, high_inclusive=False),
    "lr_decay": Range(0, 1, low_inclusive=False),
    "augment": Choice(AUGMENTATIONS),
    "amp": Choice(PRECISIONS),
}


def augment_batch(x: torch.Tensor, mode: str, generator: torch.Generator, padding: int = CROP_PADDING) -> torch.Tensor:
    """A random crop (and, for ``crop-flip``, a horizontal flip with probability 1/2) of each image.

    The crop is the image shifted by (dy, dx), each drawn uniformly from -padding .. padding,
    with the pixels shifted in from outside zero: the same as cropping the image zero-padded by
    ``padding`` at a random position (torchvision's ``RandomCrop(size, padding)``). The draws
    come from ``generator`` (on the CPU, so they do not depend on the device), the work is done
    on ``x``'s device, and ``x`` is left as it was.
    """
    if mode == "none":
        return x
    if mode not in AUGMENTATIONS:
        raise InvalidInputError(f"unknown augmentation {mode!r}: use one of {', '.join(AUGMENTATIONS)}")
    n, _, height, width = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator).to(x.device)
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = offsets[0][:, None] + torch.arange(height, device=x.device)  # (n, height): padded rows each output row reads
    columns = offsets[1][:, None] + torch.arange(width, device=x.device)
    index = torch.arange(n, device=x.device)[:, None, None, None]
    channels = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    out = padded[index, channels, rows[:, None, :, None], columns[:, None, None, :]]
    if mode == "crop-flip":
        flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out


def _status(record: dict[str, Any]) -> str:
    """The progress bar's text: the loss and every accuracy of the epoch."""
    parts = [f"loss {record['loss']:.3f}"]
    parts += [f"{name.replace('_accuracy', '').replace('_', ' ')} acc {value:.3f}"
              for name, value in record.items() if name.endswith("accuracy") and isinstance(value, float)]
    return " ".join(parts)


@dataclass(frozen=True)
class Recipe:
    """How a classifier is optimised: epochs, the learning rate (held constant or following a
    schedule of :data:`LR_SCHEDULES`), batch size and weight decay, with Adam or with SGD
    (``momentum``, ``nesterov``); for the ``piecewise`` schedule, the fractions of training after
    which the rate is multiplied by ``lr_decay``; the augmentation of each mini-batch
    (:data:`AUGMENTATIONS`) and mixed precision on CUDA (:data:`PRECISIONS`).

    The defaults are Adam at a constant rate, without augmentation, in float32.
    """

    epochs: int
    lr: float
    batch_size: int
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    optimizer: str = "adam"
    momentum: float = 0.9  # SGD's; Adam has none
    nesterov: bool = False
    milestones: tuple[float, ...] = (0.5, 0.75)
    lr_decay: float = 0.1
    augment: str = "none"
    amp: str = "off"

    def check(self) -> None:
        """Refuse a recipe :func:`fit_classifier` cannot follow, with one line saying what to change."""
        choices = (("learning-rate schedule", self.lr_schedule, LR_SCHEDULES), ("optimizer", self.optimizer, OPTIMIZERS),
                   ("augmentation", self.augment, AUGMENTATIONS), ("precision", self.amp, PRECISIONS))
        for what, value, known in choices:
            if value not in known:
                raise InvalidInputError(f"unknown {what} {value!r}: use one of {', '.join(known)}")
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise InvalidInputError(f"training needs epochs >= 1, batch_size >= 1 and lr > 0, got {self.epochs}, "
                                    f"{self.batch_size} and {self.lr}")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise InvalidInputError(f"training needs weight_decay >= 0 and momentum in [0, 1), got {self.weight_decay} "
                                    f"and {self.momentum}")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise InvalidInputError(f"nesterov=true needs optimizer=sgd with momentum above 0 (got optimizer="
                                    f"{self.optimizer}, momentum={self.momentum:g}): set both, or nesterov=false")
        if list(self.milestones) != sorted(set(self.milestones)) or not all(0 < m < 1 for m in self.milestones):
            raise InvalidInputError(f"milestones={list(self.milestones)}: give increasing fractions of training in "
                                    "(0, 1), e.g. [0.5, 0.75] for epochs 100 and 150 of 200")
        if not 0 < self.lr_decay <= 1:
            raise InvalidInputError(f"lr_decay={self.lr_decay:g} must be in (0, 1]: the factor applied at each milestone")

    def schedule(self) -> Callable[[float], float]:
        """The factor of ``lr`` by fraction of training done."""
        if self.lr_schedule == "piecewise":
            return piecewise(tuple(self.milestones), self.lr_decay)
        return LR_SCHEDULES[self.lr_schedule]

    def make_optimizer(self, parameters: Any) -> torch.optim.Optimizer:
        if self.optimizer == "sgd":
            return torch.optim.SGD(parameters, lr=self.lr, momentum=self.momentum, nesterov=self.nesterov,
                                   weight_decay=self.weight_decay)
        return torch.optim.Adam(parameters, lr=self.lr, weight_decay=self.weight_decay)


#: The offset of the run seed that seeds the augmentation's draws: a stream of their own, so that
#: augmenting leaves the order of the mini-batches, and every other draw, as they were.
AUGMENT_SEED_OFFSET = 104_729


def _precision(recipe: Recipe, device: torch.device) -> torch.dtype | None:
    """The autocast type of ``recipe.amp`` on ``device``: None (float32) off CUDA or when off."""
    if recipe.amp == "off" or device.type != "cuda":
        return None
    if recipe.amp == "bf16" and not torch.cuda.is_bf16_supported():
        raise InvalidInputError("amp=bf16 needs a GPU with bfloat16 support (compute capability 8.0 or newer): use "
                                "amp=fp16 on this one")
    return torch.bfloat16 if recipe.amp == "bf16" else torch.float16


def fit_classifier(
    model: nn.Module,
    splits: "Splits",
    recipe: Recipe,
    *,
    seed: int,
    loss: BatchLoss = cross_entropy_loss,
    reporter: Reporter | None = None,
    description: str = "training",
    epoch_metrics: Callable[[nn.Module], dict[str, float]] | None = None,
) -> list[dict[str, Any]]:
    """Mini-batch training on the training split, shuffled by a generator seeded with ``seed``,
    with Adam or SGD and the learning rate ``lr`` held constant or following a schedule of
    :data:`LR_SCHEDULES` (updated after every step), as ``recipe`` says. Each mini-batch is
    augmented as ``recipe.augment`` says (draws from a generator of their own, seeded from
    ``seed``) before ``loss`` sees it, and ``loss`` runs under autocast when ``recipe.amp`` asks
    for mixed precision and the model is on CUDA (float16 with a gradient scaler).

    Returns one record per epoch: mean training loss, test accuracy, the seconds spent in the
    optimisation steps (not in evaluating) and the forward and backward passes of the model they
    made (per image, inner attacks of adversarial training included: a cost that, unlike the
    seconds, does not depend on the machine's load), the precision the steps ran in (``amp``:
    ``off`` for float32, ``bf16`` or ``fp16``), plus whatever ``epoch_metrics(model)`` adds
    (robust accuracy, say); the progress bar shows the accuracies as they come.
    """
    recipe.check()
    epochs, batch_size = recipe.epochs, recipe.batch_size
    reporter = reporter or quiet()
    x, y = splits.x_train, splits.y_train
    shuffle = torch.Generator().manual_seed(seed)
    augmenting = torch.Generator().manual_seed(seed + AUGMENT_SEED_OFFSET) if recipe.augment != "none" else None
    precision = _precision(recipe, x.device)
    scaler = torch.amp.GradScaler("cuda") if precision == torch.float16 else None
    optimizer = recipe.make_optimizer(model.parameters())
    total_steps = max(1, epochs * -(-len(x) // batch_size))
    factor = recipe.schedule()
    # Step k trains at the schedule's value halfway through it, so no step runs at a rate of 0.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor((step + 0.5) / total_steps))
    history: list[dict[str, Any]] = []
    passes = {"forward": 0, "backward": 0}

    def count(_module: nn.Module, inputs: tuple, output: Any) -> None:
        batch = inputs[0].shape[0]
        passes["forward"] += batch
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(lambda grad: passes.__setitem__("backward", passes["backward"] + batch))

    with reporter.task(description, total=epochs) as advance:
        for epoch in range(epochs):
            model.train()
            passes.update(forward=0, backward=0)
            counting = model.register_forward_hook(count)
            started = time.perf_counter()
            order = torch.randperm(len(x), generator=shuffle).to(x.device)
            total_loss, seen = 0.0, 0
            for start in range(0, len(x), batch_size):
                index = order[start : start + batch_size]
                batch = x[index] if augmenting is None else augment_batch(x[index], recipe.augment, augmenting)
                with (torch.autocast("cuda", dtype=precision) if precision is not None else contextlib.nullcontext()):
                    value = loss(model, batch, y[index])
                optimizer.zero_grad(set_to_none=True)
                if scaler is None:
                    value.backward()
                    optimizer.step()
                else:  # float16: the loss scaled so that small gradients survive, the step skipped on overflow
                    scaler.scale(value).backward()
                    scaler.step(optimizer)
                    scaler.update()
                scheduler.step()
                total_loss += float(value.detach()) * len(index)
                seen += len(index)
            seconds = time.perf_counter() - started
            counting.remove()
            model.eval()
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "loss": total_loss / seen,
                "test_accuracy": accuracy(model, splits.x_test, splits.y_test),
                "seconds": seconds,
                "forward_passes": passes["forward"],
                "backward_passes": passes["backward"],
                "amp": {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[precision],
            }
            if epoch_metrics is not None:
                record.update(epoch_metrics(model))
            history.append(record)
            advance(status=_status(record))
    model.eval()
    return history
