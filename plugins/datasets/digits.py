"""scikit-learn's handwritten digits: 1,797 8x8 images with 17 grey levels (0..16)."""

from __future__ import annotations

import functools

import numpy as np
import torch

import arena
from arena import Dataset, Splits, ThreatModel


def stratified_splits(images: np.ndarray, labels: np.ndarray, test_size: int | float) -> Splits:
    """A fixed stratified train/test split (seed 0) as float32 NCHW tensors and int64 labels."""
    from sklearn.model_selection import train_test_split  # imported on use: keeps `arena` start-up fast

    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_size, stratify=labels, random_state=0
    )
    as_images = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    as_labels = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))  # noqa: E731
    return Splits(as_images(x_train), as_labels(y_train), as_images(x_test), as_labels(y_test))


@functools.cache
def _load() -> Splits:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).reshape(-1, 1, 8, 8)
    return stratified_splits(images, digits.target, test_size=0.2)


class Digits(Dataset):
    """scikit-learn's 8x8 handwritten digits (17 grey levels); 1,437 train / 360 test images."""

    name = "digits"
    shape = (1, 8, 8)
    classes = 10
    levels = 17
    # Coarse 8x8 images: a single grey level is 1/16, so eps 0.2 is about three levels.
    default_threat = ThreatModel("linf", 0.2)

    def load(self) -> Splits:
        return _load()


class DigitsTiny(Digits):
    """A tiny fixed subset of `digits` for fast tests: 20 training and 10 test images per class."""

    name = "digits-tiny"

    def load(self) -> Splits:
        return _tiny()


@functools.cache
def _tiny() -> Splits:
    full = _load()

    def first(x: torch.Tensor, y: torch.Tensor, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.cat([(y == c).nonzero().flatten()[:per_class] for c in range(10)]).sort().values
        return x[index].clone(), y[index].clone()

    return Splits(*first(full.x_train, full.y_train, 20), *first(full.x_test, full.y_test, 10))


@arena.hookimpl
def register_datasets(register):
    register(Digits)
    register(DigitsTiny)
