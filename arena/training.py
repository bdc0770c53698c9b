"""Training: the context handed to defenses and generators, and the host's classifier loop."""

from __future__ import annotations

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
    ) -> list[dict[str, Any]]:
        """Train a classifier with Adam; see :func:`fit_classifier`."""
        return fit_classifier(
            model,
            self.splits,
            Recipe(epochs, lr, batch_size, weight_decay, lr_schedule),
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


#: Learning-rate schedules :func:`fit_classifier` knows, as a factor of ``lr`` by fraction of training done.
LR_SCHEDULES: dict[str, Callable[[float], float]] = {
    "constant": lambda done: 1.0,
    # Wong et al. 2020: linearly from 0 up to lr over the first half of the steps, back to 0 over the second.
    "cyclic": lambda done: 1.0 - abs(2.0 * done - 1.0),
}


#: Bounds of the hyperparameters a defense hands to :meth:`BuildContext.default_classifier` and
#: :meth:`BuildContext.fit`, for its ``bounds`` (one with an ``lr_schedule`` adds
#: ``Choice(LR_SCHEDULES)``).
TRAINING_BOUNDS: dict[str, Bound] = {
    "architecture": ArchitectureChoice(),
    "epochs": Range(1),
    "lr": Range(0, low_inclusive=False),
    "batch_size": Range(1),
}


def _status(record: dict[str, Any]) -> str:
    """The progress bar's text: the loss and every accuracy of the epoch."""
    parts = [f"loss {record['loss']:.3f}"]
    parts += [f"{name.replace('_accuracy', '').replace('_', ' ')} acc {value:.3f}"
              for name, value in record.items() if name.endswith("accuracy") and isinstance(value, float)]
    return " ".join(parts)


@dataclass(frozen=True)
class Recipe:
    """How a classifier is optimised: epochs, Adam's learning rate (held constant or following
    a schedule of :data:`LR_SCHEDULES`), batch size and weight decay."""

    epochs: int
    lr: float
    batch_size: int
    weight_decay: float = 0.0
    lr_schedule: str = "constant"


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
    """Mini-batch Adam on the training split, shuffled by a generator seeded with ``seed``, with
    the learning rate ``lr`` held constant or following a schedule of :data:`LR_SCHEDULES`
    (updated after every step).

    Returns one record per epoch: mean training loss, test accuracy, the seconds spent in the
    optimisation steps (not in evaluating) and the forward and backward passes of the model they
    made (per image, inner attacks of adversarial training included: a cost that, unlike the
    seconds, does not depend on the machine's load), plus whatever ``epoch_metrics(model)`` adds
    (robust accuracy, say); the progress bar shows the accuracies as they come.
    """
    epochs, lr, batch_size, lr_schedule = recipe.epochs, recipe.lr, recipe.batch_size, recipe.lr_schedule
    if lr_schedule not in LR_SCHEDULES:
        raise InvalidInputError(f"unknown learning-rate schedule {lr_schedule!r}: use one of {', '.join(LR_SCHEDULES)}")
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise InvalidInputError(f"training needs epochs >= 1, batch_size >= 1 and lr > 0, got {epochs}, {batch_size} "
                                f"and {lr}")
    reporter = reporter or quiet()
    x, y = splits.x_train, splits.y_train
    shuffle = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=recipe.weight_decay)
    total_steps = max(1, epochs * -(-len(x) // batch_size))
    factor = LR_SCHEDULES[lr_schedule]
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
                value = loss(model, x[index], y[index])
                optimizer.zero_grad(set_to_none=True)
                value.backward()
                optimizer.step()
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
            }
            if epoch_metrics is not None:
                record.update(epoch_metrics(model))
            history.append(record)
            advance(status=_status(record))
    model.eval()
    return history
