"""Classifier architectures the host builds: the default per dataset shape, and surrogates.

Every model takes images in [0, 1] (NCHW) and returns logits. Layer sizes adapt to the image
shape, so one definition serves 8x8 digits, 28x28 MNIST and 32x32 colour images alike. With
``dropout`` above 0, every fully connected layer gets dropout on its input (Srivastava et al.
2014); the layers are otherwise the same, so a dropout model differs from the plain one only
in that.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from .errors import InvalidInputError

Shape = tuple[int, int, int]


def _dropout(p: float) -> list[nn.Module]:
    # No layer at all when p is 0: the plain models keep the parameter names of their checkpoints.
    return [nn.Dropout(p)] if p > 0 else []


def cnn(shape: Shape, classes: int, dropout: float = 0.0) -> nn.Module:
    """Two 3x3 convolution blocks (32 and 64 channels, each followed by 2x2 max pooling) and an
    MLP head of 128 units.

    The default classifier: on 8x8 digits it reaches ~98% test accuracy in seconds of training.
    """
    channels, height, width = shape
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        *_dropout(dropout),
        nn.Linear(64 * (height // 4) * (width // 4), 128),
        nn.ReLU(),
        *_dropout(dropout),
        nn.Linear(128, classes),
    )


def mlp(shape: Shape, classes: int, dropout: float = 0.0) -> nn.Module:
    """A fully connected network with two hidden layers of 256 units."""
    channels, height, width = shape
    return nn.Sequential(
        nn.Flatten(),
        *_dropout(dropout),
        nn.Linear(channels * height * width, 256),
        nn.ReLU(),
        *_dropout(dropout),
        nn.Linear(256, 256),
        nn.ReLU(),
        *_dropout(dropout),
        nn.Linear(256, classes),
    )


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "cnn": cnn,
    "mlp": mlp,
}

DEFAULT_ARCHITECTURE = "cnn"


def build_classifier(architecture: str, shape: Shape, classes: int, dropout: float = 0.0) -> nn.Module:
    """Instantiate a named architecture for an image shape and number of classes."""
    if not 0.0 <= dropout < 1.0:
        raise InvalidInputError(f"dropout {dropout} must be in [0, 1)")
    try:
        factory = ARCHITECTURES[architecture]
    except KeyError:
        raise InvalidInputError(
            f"unknown architecture {architecture!r}: use one of {', '.join(sorted(ARCHITECTURES))}"
        ) from None
    if not dropout:
        return factory(tuple(shape), classes)
    try:
        return factory(tuple(shape), classes, dropout=dropout)
    except TypeError:
        raise InvalidInputError(f"architecture {architecture!r} has no dropout option: use cnn or mlp") from None
