"""The reference classifier of the generative track: one per dataset, trained by Arena.

No ImageNet weights can be downloaded here, so sample quality is measured in the feature space
of a classifier Arena trains itself, deterministically (a fixed seed and recipe) and caches. Its
penultimate activations are the features of FID, KID, precision/recall and density/coverage,
its softmax the class probabilities of the Inception Score. The SHA-256 of its weights file is
part of every score's identity: scores under different classifiers are never compared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .models import DEFAULT_ARCHITECTURE, build_classifier
from .training import accuracy

#: How the reference classifier is trained; a change here makes a new classifier (a new hash).
REFERENCE_RECIPE = {"architecture": DEFAULT_ARCHITECTURE, "epochs": 20, "lr": 1e-3, "batch_size": 64}
#: Fixed, independent of the run seed, so that runs with different seeds share one classifier.
REFERENCE_SEED = 0


def build_reference(shape: tuple[int, int, int], classes: int) -> nn.Sequential:
    """The reference architecture: the host's default classifier, whose last layer maps the
    penultimate features to logits."""
    model = build_classifier(REFERENCE_RECIPE["architecture"], shape, classes)
    if not isinstance(model, nn.Sequential) or not isinstance(model[-1], nn.Linear):
        raise TypeError("the reference classifier must be an nn.Sequential ending in a Linear layer")
    return model


@dataclass
class ReferenceClassifier:
    """A trained reference classifier, its weights' SHA-256 and its test accuracy."""

    model: nn.Sequential
    sha256: str
    test_accuracy: float

    @classmethod
    def of(cls, model: nn.Sequential, sha256: str, x_test: torch.Tensor, y_test: torch.Tensor) -> "ReferenceClassifier":
        return cls(model, sha256, accuracy(model, x_test, y_test))

    def embed(self, x: torch.Tensor, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """Penultimate features and softmax probabilities of images, as float64 arrays."""
        features, probabilities = [], []
        body, head = self.model[:-1], self.model[-1]
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                hidden = body(x[start : start + batch_size])
                features.append(hidden.double().cpu())
                probabilities.append(head(hidden).double().softmax(dim=1).cpu())
        return torch.cat(features).numpy(), torch.cat(probabilities).numpy()
