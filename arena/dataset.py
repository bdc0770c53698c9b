"""The dataset contract."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .base import Plugin
from .errors import PluginError
from .threat import ThreatModel


@dataclass(frozen=True)
class Splits:
    """Train and test tensors: images float32 NCHW in [0, 1], labels int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def content_hash(self) -> str:
        """SHA-256 over the four tensors' bytes: the dataset's identity in every result key."""
        digest = hashlib.sha256()
        for tensor in (self.x_train, self.y_train, self.x_test, self.y_test):
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.contiguous().numpy().tobytes())
        return digest.hexdigest()


class Dataset(Plugin):
    """A labelled image dataset with fixed train/test splits.

    Subclasses set ``name``, ``shape`` (C, H, W), ``classes``, ``levels`` (the number of distinct
    pixel values, for discrete likelihoods) and ``default_threat``, and implement :meth:`load`.
    Nothing may be downloaded: read files shipped with a package or from a local folder.
    ``augmentation`` is how the training defenses augment its images unless told otherwise (one
    of :data:`arena.training.AUGMENTATIONS`): ``none`` (the default), ``crop`` or ``crop-flip``;
    mirror images must still belong to their class for ``crop-flip``.
    """

    kind: ClassVar[str] = "dataset"
    shape: ClassVar[tuple[int, int, int]]
    classes: ClassVar[int]
    levels: ClassVar[int] = 256
    default_threat: ClassVar[ThreatModel]
    augmentation: ClassVar[str] = "none"

    def load(self) -> Splits:
        """Return the train and test splits; the same tensors every time."""
        raise NotImplementedError

    @classmethod
    def validate_class(cls) -> None:
        super().validate_class()
        shape = getattr(cls, "shape", None)
        if not (isinstance(shape, tuple) and len(shape) == 3 and all(isinstance(s, int) and s > 0 for s in shape)):
            raise PluginError(f"dataset {cls.name!r} needs `shape` = (channels, height, width), got {shape!r}")
        if not isinstance(getattr(cls, "classes", None), int) or cls.classes < 2:
            raise PluginError(f"dataset {cls.name!r} needs `classes`, an int >= 2")
        if not isinstance(cls.levels, int) or cls.levels < 2:
            raise PluginError(f"dataset {cls.name!r} needs `levels`, an int >= 2")
        if not isinstance(getattr(cls, "default_threat", None), ThreatModel):
            raise PluginError(f"dataset {cls.name!r} needs `default_threat`, a ThreatModel")
        from .training import AUGMENTATIONS

        if cls.augmentation not in AUGMENTATIONS:
            raise PluginError(f"dataset {cls.name!r} has augmentation {cls.augmentation!r}: use one of "
                              f"{', '.join(AUGMENTATIONS)}")
        if cls.load is Dataset.load:
            raise PluginError(f"dataset {cls.name!r} does not implement load()")

    def check_splits(self, splits: Splits) -> None:
        """Refuse splits that break the contract, naming what is wrong."""
        for part in ("train", "test"):
            x, y = getattr(splits, f"x_{part}"), getattr(splits, f"y_{part}")
            if x.dtype != torch.float32 or tuple(x.shape[1:]) != self.shape:
                raise PluginError(
                    f"dataset {self.name!r}: {part} images are {x.dtype} {tuple(x.shape)}, "
                    f"expected float32 (N, {', '.join(map(str, self.shape))})"
                )
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise PluginError(f"dataset {self.name!r}: {part} labels must be int64 of shape ({x.shape[0]},)")
            if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
                raise PluginError(f"dataset {self.name!r}: {part} images leave [0, 1]")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.classes):
                raise PluginError(f"dataset {self.name!r}: {part} labels leave [0, {self.classes})")

    @classmethod
    def capabilities(cls) -> dict[str, Any]:
        return {
            "shape": list(cls.shape),
            "classes": cls.classes,
            "levels": cls.levels,
            "default_threat": {"norm": cls.default_threat.norm, "eps": cls.default_threat.eps},
            "augmentation": cls.augmentation,
        }
