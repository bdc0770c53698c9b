"""Classifier architectures the host builds: the default per dataset shape, and surrogates.

Every model takes images in [0, 1] (NCHW) and returns logits. Layer sizes adapt to the image
shape, so one definition serves 8x8 digits, 28x28 MNIST and 32x32 colour images alike. With
``dropout`` above 0, every fully connected layer gets dropout on its input (Srivastava et al.
2014); the layers are otherwise the same, so a dropout model differs from the plain one only
in that.
"""

from __future__ import annotations

import inspect
import re
from typing import Callable

from torch import nn

from .bounds import Choice
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


def lenet(shape: Shape, classes: int) -> nn.Module:
    """LeNet-5 (LeCun et al. 1998): 5x5 convolutions of 6 and 16 channels with tanh and 2x2
    average pooling, then 120-84 tanh units. The first convolution pads by 2, as LeNet-5 reads
    28x28 MNIST digits padded to 32x32."""
    channels, height, width = shape
    pad = 2 if height < 16 else 0  # small images keep their size through the second convolution
    side = lambda n: (n // 2 + 2 * pad - 4) // 2  # noqa: E731
    return nn.Sequential(
        nn.Conv2d(channels, 6, 5, padding=2),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5, padding=pad),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * side(height) * side(width), 120),
        nn.Tanh(),
        nn.Linear(120, 84),
        nn.Tanh(),
        nn.Linear(84, classes),
    )


class _ResidualBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity shortcut (He et al. 2016)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x):
        return (x + self.body(x)).relu()


def resnet(shape: Shape, classes: int) -> nn.Module:
    """A small residual network (He et al. 2016): a 3x3 stem of 32 channels, two residual blocks
    at full resolution, a strided 64-channel convolution, one more block, global average pooling
    and a linear layer."""
    channels, _, _ = shape
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        _ResidualBlock(32),
        _ResidualBlock(32),
        nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        _ResidualBlock(64),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, classes),
    )


class _PreActBlock(nn.Module):
    """BN-ReLU-conv twice around an identity (or 1x1 projection) shortcut taken after the first
    BN-ReLU (He et al. 2016b)."""

    def __init__(self, inputs: int, outputs: int, stride: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(inputs), nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(outputs), nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(inputs, outputs, 1, stride, bias=False)
                         if stride != 1 or inputs != outputs else None)

    def forward(self, x):
        out = self.bn1(x).relu()
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        return self.conv2(self.bn2(out).relu()) + skip


def _preact_net(channels: int, widths: list[int], blocks: int, strides: list[int], classes: int,
                stem: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(channels, stem, 3, 1, 1, bias=False)]
    inputs = stem
    for width, stride in zip(widths, strides):
        for index in range(blocks):
            layers.append(_PreActBlock(inputs, width, stride if index == 0 else 1))
            inputs = width
    layers += [nn.BatchNorm2d(inputs), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(inputs, classes)]
    return nn.Sequential(*layers)


def preact_resnet18(shape: Shape, classes: int) -> nn.Module:
    """PreAct ResNet-18 (He et al. 2016b), as RobustBench and Rice et al. (2020) train it on
    CIFAR-10: a 64-channel 3x3 stem, four stages of two pre-activation blocks (64, 128, 256, 512
    channels, strides 1, 2, 2, 2), BN-ReLU, global average pooling, a linear layer (11.2M
    weights for 3x32x32 and 10 classes)."""
    return _preact_net(shape[0], [64, 128, 256, 512], 2, [1, 2, 2, 2], classes, stem=64)


def wide_resnet(shape: Shape, classes: int, depth: int = 28, width: int = 10) -> nn.Module:
    """WideResNet-DEPTH-WIDTH (Zagoruyko & Komodakis 2016): a 16-channel 3x3 stem, three groups
    of (depth - 4) / 6 pre-activation blocks of 16·width, 32·width and 64·width channels
    (strides 1, 2, 2), BN-ReLU, global average pooling, a linear layer; WRN-28-10, the model of
    most RobustBench CIFAR-10 entries, has 36.5M weights."""
    problem = _wide_resnet_problem(depth, width)
    if problem is not None:
        raise InvalidInputError(problem)
    return _preact_net(shape[0], [16 * width, 32 * width, 64 * width], (depth - 4) // 6, [1, 2, 2], classes, stem=16)


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "cnn": cnn,
    "mlp": mlp,
    "lenet": lenet,
    "resnet": resnet,
    "preact-resnet18": preact_resnet18,
    "wrn-28-10": wide_resnet,
    "wrn-34-10": lambda shape, classes: wide_resnet(shape, classes, 34, 10),
}
_WRN = re.compile(r"wrn-(\d+)-(\d+)")

DEFAULT_ARCHITECTURE = "cnn"


def _wide_resnet_problem(depth: int, width: int) -> str | None:
    if (depth - 4) % 6 or depth < 10 or width < 1:
        return (f"WideResNet depth {depth} and width {width}: the depth must be 6n + 4 (10, 16, 22, 28, 34, ...) and "
                "the width at least 1")
    return None


class ArchitectureChoice(Choice):
    """What an ``architecture`` hyperparameter accepts: a name of :data:`ARCHITECTURES`, or any
    ``wrn-DEPTH-WIDTH`` the host builds (``wrn-10-1``, a WideResNet small enough for a CPU)."""

    def __init__(self) -> None:
        super().__init__(ARCHITECTURES)

    def problem(self, value):
        wide = _WRN.fullmatch(value) if isinstance(value, str) else None
        if wide is not None:
            problem = _wide_resnet_problem(int(wide.group(1)), int(wide.group(2)))
            return None if problem is None else f"is not a WideResNet the host builds ({problem})"
        return super().problem(value)

    def describe(self, name: str) -> str:
        return super().describe(name) + " or wrn-DEPTH-WIDTH"

#: The architectures that take a ``dropout`` rate.
DROPOUT_ARCHITECTURES: tuple[str, ...] = tuple(
    name for name, factory in ARCHITECTURES.items() if "dropout" in inspect.signature(factory).parameters
)


def build_classifier(architecture: str, shape: Shape, classes: int, dropout: float = 0.0) -> nn.Module:
    """Instantiate a named architecture for an image shape and number of classes."""
    if not 0.0 <= dropout < 1.0:
        raise InvalidInputError(f"dropout {dropout} must be in [0, 1)")
    wide = _WRN.fullmatch(architecture)
    if wide is not None:  # any WideResNet-DEPTH-WIDTH
        depth, width = int(wide.group(1)), int(wide.group(2))
        factory = lambda shape, classes: wide_resnet(shape, classes, depth, width)  # noqa: E731
    else:
        try:
            factory = ARCHITECTURES[architecture]
        except KeyError:
            raise InvalidInputError(
                f"unknown architecture {architecture!r}: use one of {', '.join(sorted(ARCHITECTURES))} or "
                "wrn-DEPTH-WIDTH"
            ) from None
    if not dropout:
        return factory(tuple(shape), classes)
    try:
        return factory(tuple(shape), classes, dropout=dropout)
    except TypeError:
        raise InvalidInputError(
            f"architecture {architecture!r} has no dropout option: use {' or '.join(DROPOUT_ARCHITECTURES)}"
        ) from None
