"""MNIST, Fashion-MNIST, CIFAR-10 and SVHN from the files their authors publish (see
:mod:`arena.data`: where they are looked for, how they are checked and fetched)."""

from __future__ import annotations

import numpy as np
import torch

import arena
from arena import Dataset, Splits, ThreatModel


def _splits(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> Splits:
    """``uint8`` NCHW images as float32 in [0, 1] (one copy each), int64 labels."""
    images = lambda a: torch.from_numpy(a.astype(np.float32)).div_(255.0)  # noqa: E731  (the one float copy)
    labels = lambda a: torch.from_numpy(np.array(a, dtype=np.int64))  # noqa: E731
    return Splits(images(x_train), labels(y_train), images(x_test), labels(y_test))


class _Official(Dataset):
    """A dataset read from its official files; records whether they were checked."""

    levels = 256
    in_all = False
    #: Whether the files were checked against the official sums (None before loading).
    files_verified: bool | None = None

    def load(self) -> Splits:
        from arena.data import official_paths

        paths, self.files_verified = official_paths(self.name)
        return self.read(paths)

    def read(self, paths: dict) -> Splits:  # pragma: no cover - contract
        raise NotImplementedError


class _IDX(_Official):
    shape = (1, 28, 28)
    classes = 10

    def read(self, paths: dict) -> Splits:
        from arena.data import read_idx

        parts = []
        for split in ("train", "t10k"):
            images = read_idx(paths[f"{split}-images-idx3-ubyte.gz"], images=True)
            labels = read_idx(paths[f"{split}-labels-idx1-ubyte.gz"], images=False)
            if len(images) != len(labels):
                from arena.data import DataFileError

                raise DataFileError(f"dataset {self.name}: {len(images)} {split} images but {len(labels)} labels: "
                                    "fetch the files again with `arena data fetch ... --force`")
            parts += [images[:, None], labels]
        return _splits(*parts)


class MNIST(_IDX):
    """MNIST (LeCun et al. 1998) from its four IDX files: 60,000 train / 10,000 test; linf eps 0.3 (Madry et al. 2018)."""

    name = "mnist"
    default_threat = ThreatModel("linf", 0.3)


class FashionMNIST(_IDX):
    """Fashion-MNIST (Xiao et al. 2017) from its four IDX files: 60,000 train / 10,000 test; linf eps 0.3."""

    name = "fashion-mnist"
    default_threat = ThreatModel("linf", 0.3)


class _Colour32(_Official):
    """32x32 colour images of 10 classes; linf eps 8/255, as RobustBench evaluates them."""

    shape = (3, 32, 32)
    classes = 10
    default_threat = ThreatModel("linf", 8 / 255)


class CIFAR10(_Colour32):
    """CIFAR-10 (Krizhevsky 2009) from its binary version: 50,000 train / 10,000 test 32x32 colour; linf eps 8/255.

    Trained with random crops (4 pixels of padding) and horizontal flips, as every published
    recipe for it does (Zagoruyko & Komodakis 2016, Zhang et al. 2019, Rice et al. 2020, Wong et
    al. 2020)."""

    name = "cifar10"
    augmentation = "crop-flip"

    def read(self, paths: dict) -> Splits:
        from arena.data import read_cifar_binary

        return _splits(*read_cifar_binary(paths["cifar-10-binary.tar.gz"]))


class SVHN(_Colour32):
    """SVHN cropped digits (Netzer et al. 2011): 73,257 train / 26,032 test 32x32 colour; linf eps 8/255.

    Trained with random crops (4 pixels of padding) and never flipped: a mirrored digit is not
    the same digit (a mirrored 2 looks like a 5). Zagoruyko & Komodakis (2016) train their SVHN
    WideResNets without crops either; ``-p NAME.augment=none`` does that."""

    name = "svhn"
    augmentation = "crop"

    def read(self, paths: dict) -> Splits:
        from arena.data import read_svhn

        x_train, y_train = read_svhn(paths["train_32x32.mat"])
        x_test, y_test = read_svhn(paths["test_32x32.mat"])
        return _splits(x_train, y_train, x_test, y_test)


@arena.hookimpl
def register_datasets(register):
    for cls in (MNIST, FashionMNIST, CIFAR10, SVHN):
        register(cls)
