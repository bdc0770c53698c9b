"""What keeps the generative track honest: scores against held-out images, memorisation, a
noise baseline, and the flags they raise.

A generator scored only against its training images can win by returning them. So every score
is also computed against the test split, which the generator never saw; each sample's nearest
training image is checked for a copy (:func:`arena.generative_metrics.unauthentic_share`, in
the reference classifier's feature space and in pixel space), with the held-out images' own
share as the yardstick; and uniform noise on the pixel levels is scored beside every result.

Flags (warnings, which take a result out of the generators' ranking):

- ``memorised``: the share of samples that copy a training image exceeds the held-out images'
  share by more than :data:`MEMORISATION_MARGIN`, in either space;
- ``worse-than-noise``: FID against the test split no better than uniform noise's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import pairwise_distances
from threadpoolctl import threadpool_limits

from .generative_metrics import fid, sample_quality
from .images import save_grid
from .integrity import Flag

#: How far above the held-out images' share of "copies" a generator's share may be before its
#: result is flagged as memorised. On `digits` the held-out images score 0.49 (features) and
#: 0.42 (pixels), trained generators 0.11-0.20 and 0.01-0.07, the training images themselves
#: 1.0, and training images with Gaussian noise of sd 0.1 0.81 and 0.95.
MEMORISATION_MARGIN = 0.1
#: Sample / nearest-training-image pairs in each result's picture.
NEIGHBOUR_PAIRS = 16


class Authenticity:
    """Each training row's distance to its nearest other training row, computed once per set,
    to test candidates against (see :func:`arena.generative_metrics.unauthentic_share`)."""

    def __init__(self, train: np.ndarray) -> None:
        self.train = np.asarray(train, np.float64)
        with threadpool_limits(limits=1):
            within = pairwise_distances(self.train, self.train)
        np.fill_diagonal(within, np.inf)
        self.own = within.min(axis=1)

    def nearest(self, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each candidate's nearest training row and its distance to it."""
        with threadpool_limits(limits=1):
            distances = pairwise_distances(np.asarray(candidates, np.float64), self.train)
        index = distances.argmin(axis=1)
        return index, distances[np.arange(len(index)), index]

    def share(self, candidates: np.ndarray) -> float:
        """The share of candidates closer to their nearest training row than that row's own
        nearest training neighbour is (Alaa et al. 2022's unauthentic samples)."""
        index, distance = self.nearest(candidates)
        return float((distance < self.own[index]).mean())


@dataclass
class RealSets:
    """A dataset's real images as the checks need them: features and pixels of both splits,
    and the authenticity tests of the training split."""

    train_features: np.ndarray
    test_features: np.ndarray
    train_pixels: np.ndarray
    test_pixels: np.ndarray
    features: Authenticity
    pixels: Authenticity
    heldout: dict[str, float]

    @classmethod
    def of(cls, train_features: np.ndarray, test_features: np.ndarray, x_train: torch.Tensor,
           x_test: torch.Tensor) -> "RealSets":
        train_pixels = x_train.flatten(1).double().cpu().numpy()
        test_pixels = x_test.flatten(1).double().cpu().numpy()
        features, pixels = Authenticity(train_features), Authenticity(train_pixels)
        heldout = {"heldout_memorised": features.share(test_features),
                   "heldout_memorised_pixels": pixels.share(test_pixels)}
        return cls(train_features, test_features, train_pixels, test_pixels, features, pixels, heldout)


def held_out_scores(real: RealSets, features: np.ndarray, probabilities: np.ndarray, seed: int) -> dict[str, Any]:
    """Every sample-quality score against the test split, named ``*_test``."""
    quality = sample_quality(real.test_features, features, probabilities, seed)
    return {
        "test_n": len(real.test_features),
        "fid_test": quality.fid, "fid_test_low": quality.fid_low, "fid_test_high": quality.fid_high,
        "kid_test": quality.kid, "kid_test_std": quality.kid_std,
        "precision_test": quality.precision, "recall_test": quality.recall,
        "density_test": quality.density, "coverage_test": quality.coverage,
    }


def memorisation(real: RealSets, features: np.ndarray, samples: torch.Tensor) -> dict[str, Any]:
    """The share of samples that copy a training image, in feature and pixel space, beside the
    held-out images' share."""
    pixels = samples.flatten(1).double().cpu().numpy()
    return {"memorised": real.features.share(features), "memorised_pixels": real.pixels.share(pixels),
            **real.heldout}


def noise_fid(real: RealSets, embed: Any, count: int, shape: tuple[int, ...], levels: int, seed: int) -> float:
    """FID against the test split of ``count`` images of uniform noise on the pixel levels
    (seeded), embedded by ``embed`` (the reference classifier's)."""
    random = torch.Generator().manual_seed(seed)
    noise = torch.randint(0, levels, (count, *shape), generator=random).float() / (levels - 1)
    features, _ = embed(noise)
    return fid(real.test_features, features)


def flags(scores: dict[str, Any]) -> list[Flag]:
    """The warnings a generator's scores raise."""
    found = []
    copies = [(scores.get(name), scores.get(f"heldout_{name}"), space)
              for name, space in (("memorised", "feature"), ("memorised_pixels", "pixel"))]
    over = [(share, heldout, space) for share, heldout, space in copies
            if share is not None and heldout is not None and share > heldout + MEMORISATION_MARGIN]
    if over:
        said = "; ".join(f"{100 * share:.0f}% of samples in {space} space (held-out images: {100 * heldout:.0f}%)"
                         for share, heldout, space in over)
        found.append(Flag("memorised", f"samples copy training images: closer to their nearest training image than "
                                       f"it is to any other training image for {said}"))
    fid_test, noise = scores.get("fid_test"), scores.get("noise_fid_test")
    if fid_test is not None and noise is not None and fid_test >= noise:
        found.append(Flag("worse-than-noise", f"FID against the test split {fid_test:.4g} is no better than uniform "
                                              f"noise's {noise:.4g}"))
    return found


def neighbours_picture(real: RealSets, samples: torch.Tensor, x_train: torch.Tensor, path: Path) -> Path:
    """The first samples beside their nearest training images (pixel space): pairs of columns."""
    shown = samples[:NEIGHBOUR_PAIRS].cpu()
    index, _ = real.pixels.nearest(shown.flatten(1).double().numpy())
    nearest = x_train.cpu()[torch.as_tensor(index)]
    pairs = torch.stack([shown, nearest], dim=1).flatten(0, 1)  # sample, neighbour, sample, ...
    return save_grid(pairs, 8, path)
