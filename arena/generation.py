"""The generative track: train (or load) each generator, measure its likelihood and the quality
of its samples, and store one run per generator.

The host owns every invariant here as in the robustness track: seeding, eval mode and frozen
weights, the batches, checking what a plugin returns (shape, range, a probability never above
one), quantising samples onto the dataset's pixel levels, the reference classifier and every
score, and writing the result in one transaction.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import records
from .artifact_store import keep_file
from .errors import InvalidInputError, PluginError, RefusedResult
from .generative_metrics import (
    DENSITY_COVERAGE_K,
    FID_BOOTSTRAP,
    FID_INTERVAL,
    PRECISION_RECALL_K,
    bits_per_dim,
    sample_quality,
    uniform_bits_per_dim,
)
from .generator import Generator
from . import generative_checks as checks
from .generative_checks import RealSets
from .images import save_grid
from .integrity import data_flags
from .host import Host, LoadedDataset, arena_version
from .plugins import PluginInfo
from .provenance import stable_hash
from .reference import ReferenceClassifier
from .store import GenerativeResult, Store
from .track import Outcome

#: What defines the scores, beyond the reference classifier: part of every generative run's key.
METRICS = {
    "precision_recall_k": PRECISION_RECALL_K,
    "density_coverage_k": DENSITY_COVERAGE_K,
    "fid_bootstrap": FID_BOOTSTRAP,
    "fid_interval": FID_INTERVAL,
    "reference_split": "train",
    "likelihood_split": "test",
}
#: Samples shown in a run's PNG grid, and its columns.
GRID_SAMPLES, GRID_COLUMNS = 64, 8
#: Completions of half-images: test images (one per class, in class order), completions each.
COMPLETION_IMAGES, COMPLETIONS_EACH = 8, 3
#: A log-likelihood above this many nats is a probability above one: refused.
LOG_PROBABILITY_TOLERANCE = 1e-3
#: How far outside [0, 1] a sample may stray (float arithmetic) before it is refused.
RANGE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class GenerativeSettings:
    """Settings that are part of every generative result's identity."""

    seed: int = 0
    samples: int = 1000
    batch_size: int = 256


TRACK = "generative"


def quantise(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Images moved onto the dataset's pixel grid, where the real images live."""
    return (x.clamp(0, 1) * (levels - 1)).round() / (levels - 1)


class GenerativeScorer:
    """Scores generators on a dataset with the host's datasets and models (the generators and
    the reference classifier come through :meth:`arena.host.Host.model` like every model)."""

    def __init__(self, host: Host, store: Store) -> None:
        self.host = host
        self.store = store
        self._references: dict[str, ReferenceClassifier] = {}
        self._reference_features: dict[str, np.ndarray] = {}
        self._real: dict[str, RealSets] = {}

    # -- the reference classifier ---------------------------------------------------------------

    def reference(self, data: LoadedDataset) -> ReferenceClassifier:
        """The dataset's reference classifier, trained once with a fixed seed and cached."""
        if data.info.name not in self._references:
            built = self.host.reference(data)
            self._references[data.info.name] = ReferenceClassifier.of(
                built.model, built.sha256, data.splits.x_test, data.splits.y_test  # type: ignore[arg-type]
            )
        return self._references[data.info.name]

    def reference_features(self, data: LoadedDataset) -> np.ndarray:
        """Reference-classifier features of the training split: the real side of every score."""
        if data.info.name not in self._reference_features:
            features, _ = self.reference(data).embed(data.splits.x_train)
            self._reference_features[data.info.name] = features
        return self._reference_features[data.info.name]

    def real(self, data: LoadedDataset) -> RealSets:
        """The dataset's real images as the held-out and memorisation checks need them."""
        if data.info.name not in self._real:
            test_features, _ = self.reference(data).embed(data.splits.x_test)
            self._real[data.info.name] = RealSets.of(self.reference_features(data), test_features,
                                                     data.splits.x_train, data.splits.x_test)
        return self._real[data.info.name]

    # -- plan and jobs --------------------------------------------------------------------------

    def check(self, settings: GenerativeSettings, infos: list[PluginInfo], data: LoadedDataset,
              params: dict[str, dict[str, Any]]) -> None:
        """Refuse bad settings and hyperparameters before any work."""
        if settings.samples < 2:
            raise InvalidInputError("--samples must be at least 2 (FID needs a covariance)")
        if settings.batch_size < 1:
            raise InvalidInputError("--batch-size must be at least 1")
        for info in infos:  # bad hyperparameters fail before any work
            info.create(params.get(info.name))
        for info in infos:  # and so do values the dataset decides, before any training
            self.host.model_identity(info, params.get(info.name, {}), data, settings.seed)

    def identity(self, info: PluginInfo, overrides: dict[str, Any], data: LoadedDataset,
                 settings: GenerativeSettings, classifier_key: str) -> tuple[str, str, str]:
        """The run key, its lineage and the generator's model key. The identity without the
        generator's code hashes to the lineage; the model key in the run's key adds it. The
        reference classifier enters by its model key (recipe, dataset, seed), not by its
        checkpoint's bytes."""
        _, _, model_key = self.host.model_identity(info, overrides, data, settings.seed)
        identity = {
            "track": TRACK,
            "model_key": self.host.lineage(model_key),
            "samples": settings.samples,
            "batch_size": settings.batch_size,
            "seed": settings.seed,
            "classifier_key": classifier_key,
            "metrics": METRICS,
            "arena": arena_version(),
        }
        return stable_hash({**identity, "model_key": model_key}), stable_hash(identity), model_key

    def run(self, data: LoadedDataset, info: PluginInfo, settings: GenerativeSettings,
            overrides: dict[str, Any], force: bool = False) -> Outcome:
        """Train (or load) one generator, score it and store its run (``force``: recompute a
        stored result; the new run supersedes it)."""
        started = time.perf_counter()
        generator, gen_params, _ = self.host.model_identity(info, overrides, data, settings.seed)
        reference = self.reference(data)
        classifier_key, _ = self.host.reference_key(data)
        key, lineage, model_key = self.identity(info, overrides, data, settings, classifier_key)
        if (existing := records.reused(self.store, key, force, info.name, generator=info.name)) is not None:
            return existing
        device = self.host.device
        run = records.new_run(key, TRACK, data, settings.seed, settings.samples, device)
        run.lineage = lineage
        result = GenerativeResult(
            generator=info.name, generator_package=info.source.package, generator_version=info.source.version,
            generator_params=gen_params, model_key=model_key, likelihood_kind=generator.likelihood, likelihoods={},
            uniform_bits_per_dim=uniform_bits_per_dim(data.plugin.levels), samples_n=settings.samples,
            reference_n=len(data.splits.x_train), classifier_sha256=reference.sha256,
            classifier_accuracy=reference.test_accuracy, classifier_key=classifier_key,
        )
        run.generative = result
        run.provenance = records.provenance(device, data, {"generator": info}, seed=settings.seed,
                                            batch_size=settings.batch_size, classifier_sha256=reference.sha256,
                                            metrics=METRICS)
        try:
            trained = self.host.plugin_model(info, overrides, data, settings.seed)
            run.provenance["checkpoint_sha256"] = trained.sha256
            result.train_seconds = trained.recorded_train_seconds
            scores, artifacts = self._score(data, generator, trained.model, reference, settings)
        except Exception as exc:  # a plugin that raises fails only its own run
            records.record_failure(run, exc, info)
        else:
            run.status = "ok"
            run.artifacts = artifacts
            for name, value in scores.items():
                setattr(result, name, value)
            run.flags = [flag.as_dict() for flag in [*checks.flags(scores, self.real(data).train_vs_test),
                                                     *data_flags(data.plugin)]]
        run.duration_s = time.perf_counter() - started
        return records.save(self.store, run, force, info.name, generator=info.name)

    def _score(self, data: LoadedDataset, generator: Generator, model: nn.Module, reference: ReferenceClassifier,
               settings: GenerativeSettings) -> tuple[dict[str, Any], dict[str, str]]:
        scores: dict[str, Any] = {}
        if generator.likelihood is not None:
            scores.update(self._likelihood(data, generator, model, settings))
            # The same on as many training images: a gap to the test split is a sign of overfitting.
            seen = data.splits.x_train[: len(data.splits.x_test)]
            scores["bits_per_dim_train"] = self._likelihood(data, generator, model, settings, seen)["bits_per_dim"]
        started = time.perf_counter()
        samples = self._samples(data, generator, model, settings)
        scores["sample_seconds"] = time.perf_counter() - started
        features, probabilities = reference.embed(samples)
        quality = sample_quality(self.reference_features(data), features, probabilities, settings.seed)
        scores.update(vars(quality))
        real = self.real(data)
        scores.update(checks.held_out_scores(real, features, probabilities, settings.seed))
        scores.update(checks.memorisation(real, features, samples))
        scores["noise_fid_test"] = checks.noise_fid(real, reference.embed, settings.samples, data.plugin.shape,
                                                    data.plugin.levels, settings.seed)
        # The grids go to the artifact store, by content; the run records where.
        home = self.host.home
        artifacts = {
            "samples": keep_file(home, ".png", lambda path: save_grid(samples[:GRID_SAMPLES], GRID_COLUMNS, Path(path))),
            "neighbours": keep_file(home, ".png", lambda path: checks.neighbours_picture(real, samples,
                                                                                         data.splits.x_train, Path(path))),
        }
        if generator.completes():
            artifacts["completions"] = keep_file(home, ".png", lambda path: self._completions(data, generator, model,
                                                                                              settings, Path(path)))
        return scores, artifacts

    def _likelihood(self, data: LoadedDataset, generator: Generator, model: nn.Module,
                    settings: GenerativeSettings, images: torch.Tensor | None = None) -> dict[str, Any]:
        """Every likelihood estimate on the test split (or ``images``) in bits/dim; the
        tightest is the headline."""
        x_test = data.splits.x_test if images is None else images
        pieces: dict[str, list[torch.Tensor]] = {}
        torch.manual_seed(settings.seed)
        with torch.no_grad():
            for start in range(0, len(x_test), settings.batch_size):
                batch = x_test[start : start + settings.batch_size]
                estimates = generator.likelihood_estimates(model, batch)
                if not isinstance(estimates, dict) or not estimates:
                    raise PluginError(f"likelihood_estimates() returned {type(estimates).__name__}, not a dict of tensors")
                for name, values in estimates.items():
                    pieces.setdefault(str(name), []).append(_checked_log_likelihood(name, values, len(batch)))
        dims = math.prod(data.plugin.shape)
        estimates_bpd = {name: bits_per_dim(torch.cat(parts).double().numpy(), dims) for name, parts in pieces.items()}
        return {
            "likelihoods": estimates_bpd,
            "bits_per_dim": min(estimates_bpd.values()),
            "likelihood_n": len(x_test),
        }

    def _samples(self, data: LoadedDataset, generator: Generator, model: nn.Module,
                 settings: GenerativeSettings) -> torch.Tensor:
        """``settings.samples`` images in batches from one seeded random generator, checked and
        quantised onto the dataset's pixel levels."""
        random = torch.Generator().manual_seed(settings.seed)
        torch.manual_seed(settings.seed)
        batches = []
        total = settings.samples
        with torch.no_grad(), self.host.reporter.task(f"sampling {generator.name}", total=total) as advance:
            for start in range(0, total, settings.batch_size):
                n = min(settings.batch_size, total - start)
                batches.append(_checked_images(generator.sample(model, n, random), n, data.plugin.shape))
                advance(n)
        return quantise(torch.cat(batches).to(self.host.device), data.plugin.levels)

    def _completions(self, data: LoadedDataset, generator: Generator, model: nn.Module,
                     settings: GenerativeSettings, path: Path) -> Path:
        """A grid, one test image per row: the original, its top half, then completions."""
        _, height, width = data.plugin.shape
        known = (height // 2) * width
        labels = data.splits.y_test.cpu()
        picks = [int((labels == c).nonzero()[0]) for c in range(data.plugin.classes) if (labels == c).any()]
        originals = data.splits.x_test[picks[:COMPLETION_IMAGES]]
        halves = originals.clone()
        halves[:, :, height // 2 :] = 0.5
        random = torch.Generator().manual_seed(settings.seed)
        torch.manual_seed(settings.seed)
        with torch.no_grad():
            completed = [
                _checked_images(generator.complete(model, originals, known, random), len(originals), data.plugin.shape)
                for _ in range(COMPLETIONS_EACH)
            ]
        rows = torch.stack([originals.cpu(), halves.cpu(), *completed], dim=1)  # (images, columns, C, H, W)
        return save_grid(rows.flatten(0, 1), 2 + COMPLETIONS_EACH, path)


def _checked_log_likelihood(name: Any, values: Any, n: int) -> torch.Tensor:
    if not isinstance(values, torch.Tensor) or values.shape != (n,):
        shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise PluginError(f"likelihood estimate {name!r} has shape {shape}, expected ({n},): one value per image")
    values = values.detach().double().cpu()
    if not torch.isfinite(values).all():
        raise RefusedResult(f"likelihood estimate {name!r} is not finite for some images")
    if float(values.max()) > LOG_PROBABILITY_TOLERANCE:
        raise RefusedResult(
            f"likelihood estimate {name!r} is log p(x) = {float(values.max()):.4g} nats > 0, a probability above "
            "one: it must be a probability of the discrete pixel levels"
        )
    return values


def _checked_images(x: Any, n: int, shape: tuple[int, int, int]) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or tuple(x.shape) != (n, *shape):
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise PluginError(f"returned images of shape {got}, expected {(n, *shape)}")
    x = x.detach().float()
    if not torch.isfinite(x).all():
        raise RefusedResult("returned images with NaN or infinite pixels")
    low, high = float(x.min()), float(x.max())
    if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise RefusedResult(f"returned pixels in [{low:.4g}, {high:.4g}], outside [0, 1]")
    return x.cpu()
