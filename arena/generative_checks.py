"""What keeps the generative track honest: scores against held-out images, memorisation, a
noise baseline, and the flags they raise.

A generator scored only against its training images can win by returning them. So every score
is also computed against the test split, which generators never get from the host; each
sample's nearest training image is checked for a copy (:class:`arena.generative_metrics.
Authenticity`, in the reference classifier's feature space and in pixel space), with the
held-out images' own share as the yardstick, and so is each sample's nearest test image (a
generator that read the test split itself); and uniform noise on the pixel levels, drawn from
its own seed, is scored beside every result.

Flags (warnings, which take a result out of the generators' ranking):

- ``memorised``: the share of samples that copy a training image exceeds the held-out images'
  share by more than :data:`COPY_MARGIN`, in either space;
- ``copies-test-images``: the share of samples that copy a test image exceeds the training
  images' share (against the test split) by more than :data:`COPY_MARGIN`;
- ``worse-than-noise``: the FID against the test split does not beat uniform noise's: the
  upper end of its 95% interval is not below noise's FID.

Shifted or otherwise transformed copies are not near-copies in either space and are not caught.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .generative_metrics import Authenticity, fid, sample_quality
from .images import save_grid
from .integrity import Flag

#: How far above its yardstick a share of near-copies may be before the result is flagged. On
#: `digits` (1,000 samples) the held-out images score 0% (pixels) and 1.1% (features), trained
#: VAE, DCGAN, GAN and PixelCNN 0-0.4%, the training images 100%, training images with Gaussian
#: noise of sd 0.05 93% / 75%, sd 0.1 17% / 23%, sd 0.2 0% / 1.9%, half copies half noise 50%.
COPY_MARGIN = 0.02
#: Added to the run's seed for the noise images: never the draws of a generator's own sampling.
NOISE_SEED_OFFSET = 7919
#: Sample / nearest-training-image pairs in each result's picture.
NEIGHBOUR_PAIRS = 16


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
    #: The copy tests against the test split, and the training images' shares against it.
    copy_of_test_features: Authenticity | None = None
    copy_of_test_pixels: Authenticity | None = None
    train_vs_test: dict[str, float] | None = None

    @classmethod
    def of(cls, train_features: np.ndarray, test_features: np.ndarray, x_train: torch.Tensor,
           x_test: torch.Tensor) -> "RealSets":
        train_pixels = x_train.flatten(1).double().cpu().numpy()
        test_pixels = x_test.flatten(1).double().cpu().numpy()
        features, pixels = Authenticity(train_features), Authenticity(train_pixels)
        heldout = {"heldout_memorised": features.share(test_features),
                   "heldout_memorised_pixels": pixels.share(test_pixels)}
        on_test = Authenticity(test_features), Authenticity(test_pixels)
        train_vs_test = {"test_copies": on_test[0].share(train_features),
                         "test_copies_pixels": on_test[1].share(train_pixels)}
        return cls(train_features, test_features, train_pixels, test_pixels, features, pixels, heldout, *on_test,
                   train_vs_test)


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
            **real.heldout, "test_copies": real.copy_of_test_features.share(features),
            "test_copies_pixels": real.copy_of_test_pixels.share(pixels)}


def noise_fid(real: RealSets, embed: Any, count: int, shape: tuple[int, ...], levels: int, seed: int) -> float:
    """FID against the test split of ``count`` images of uniform noise on the pixel levels
    (seeded), embedded by ``embed`` (the reference classifier's)."""
    random = torch.Generator().manual_seed(seed + NOISE_SEED_OFFSET)
    noise = torch.randint(0, levels, (count, *shape), generator=random).float() / (levels - 1)
    features, _ = embed(noise)
    return fid(real.test_features, features)


def flags(scores: dict[str, Any], train_vs_test: dict[str, float] | None = None) -> list[Flag]:
    """The warnings a generator's scores raise (``train_vs_test``: the training images' shares
    of copies of test images, the yardstick of ``copies-test-images``)."""
    found = []
    copies = _over({name: scores.get(name) for name in ("memorised", "memorised_pixels")},
                   {name: scores.get(f"heldout_{name}") for name in ("memorised", "memorised_pixels")})
    if copies:
        found.append(Flag("memorised", f"samples copy training images (within half the distance between that image "
                                       f"and its nearest other training image): {copies} (held-out images' share in "
                                       "brackets)"))
    test = _over({name: scores.get(name) for name in ("test_copies", "test_copies_pixels")}, train_vs_test or {})
    if test:
        found.append(Flag("copies-test-images", f"samples copy test images, which generators are never given: {test} "
                                                "(the training images' share in brackets)"))
    fid_test, high, noise = scores.get("fid_test"), scores.get("fid_test_high"), scores.get("noise_fid_test")
    bound = high if high is not None else fid_test
    if bound is not None and noise is not None and bound >= noise:
        found.append(Flag("worse-than-noise", f"FID against the test split {fid_test:.4g} (95% interval up to "
                                              f"{bound:.4g}) does not beat uniform noise's {noise:.4g}"))
    return found


def _over(shares: dict[str, Any], yardsticks: dict[str, Any]) -> str:
    """The spaces in which a share of copies exceeds its yardstick by more than the margin, said
    in words (empty when none does)."""
    said = []
    for name, share in shares.items():
        yardstick = yardsticks.get(name.replace("heldout_", ""))
        if share is not None and yardstick is not None and share > yardstick + COPY_MARGIN:
            space = "pixel" if name.endswith("pixels") else "feature"
            said.append((space, share, yardstick))
    return "; ".join(f"{100 * share:.1f}% of samples in {space} space ({100 * mark:.1f}%)" for space, share, mark in said)


def neighbours_picture(real: RealSets, samples: torch.Tensor, x_train: torch.Tensor, path: Path) -> Path:
    """The first samples beside their nearest training images (pixel space): pairs of columns."""
    shown = samples[:NEIGHBOUR_PAIRS].cpu()
    index, _ = real.pixels.nearest(shown.flatten(1).double().numpy())
    nearest = x_train.cpu()[torch.as_tensor(index)]
    pairs = torch.stack([shown, nearest], dim=1).flatten(0, 1)  # sample, neighbour, sample, ...
    return save_grid(pairs, 8, path)
