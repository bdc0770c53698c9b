"""The model host: every trained model of every track comes through one path.

identity -> key -> model cache (a verified checkpoint) or build + train -> freeze -> (probe)

Defenses, generators, the surrogates of transfer attacks and the reference classifier of the
generative track are all models of this kind; :meth:`Host.model` is the path, and the methods
around it only say what each model's identity is and how it is built and trained. The host
also owns the process environment of a run (device, determinism) and the loaded datasets.
"""

from __future__ import annotations

import copy
import os
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy
import torch
from torch import nn

from .cache import ModelCache
from .dataset import Dataset, Splits
from .errors import InvalidInputError, ModelChanged, PluginError
from .integrity import ModelProbe, fingerprint, frozen_state_problems, probe_model
from .models import build_classifier
from .plugins import PluginInfo, Registry
from .progress import Reporter, quiet
from .provenance import stable_hash
from .training import BuildContext, Recipe, fit_classifier

#: How the host trains the surrogate models of zero-query (transfer) attacks.
SURROGATE_RECIPE = {"epochs": 20, "lr": 1e-3, "batch_size": 64}
#: Surrogates are trained with seeds offset from the run seed, so that a surrogate of the same
#: architecture as the target is still a different model.
SURROGATE_SEED_OFFSET = 1000


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when a GPU is present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInputError(f"device {name!r} was asked for but no CUDA GPU is available: use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise InvalidInputError(f"unknown device {name!r}: use auto, cpu or cuda") from None


def make_deterministic(seed: int) -> None:
    """Seed every generator and make torch use deterministic algorithms (``--deterministic``)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    numpy.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


@dataclass
class LoadedDataset:
    info: PluginInfo
    plugin: Dataset
    splits: Splits  # on the host's device
    content_hash: str


@dataclass
class BuiltModel:
    """A frozen trained model and what the host knows of it."""

    model: nn.Module
    key: str
    sha256: str
    params: dict[str, Any]
    info: PluginInfo | None
    cached: bool
    probe: ModelProbe | None = None
    #: :func:`arena.integrity.fingerprint` of the frozen model, checked before and after each use.
    fingerprint: str = ""
    #: Wall-clock seconds this process spent building and training the model (None: from the cache).
    train_seconds: float | None = None
    #: The training time the cache recorded when the checkpoint was made.
    recorded_train_seconds: float | None = None


@dataclass(frozen=True)
class ModelRecipe:
    """How one model is made: its key, what the cache records of it, and how it is built and trained."""

    key: str
    kind: str
    name: str
    build: Callable[[], nn.Module]
    train: Callable[[nn.Module], Any]
    meta: dict[str, Any]
    info: PluginInfo | None = None
    params: dict[str, Any] | None = None
    #: Probe the frozen model (randomness, gradients) and keep the probe in the cache record.
    probe: Callable[[nn.Module], ModelProbe] | None = None


def recorded_probe(record: dict[str, Any] | None) -> ModelProbe | None:
    """The probe the model cache keeps in a checkpoint's record (None: never probed)."""
    probe = (record or {}).get("probe")
    return ModelProbe.from_dict(probe) if isinstance(probe, dict) else None


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and no weight gradients: attacks need input gradients only."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def source(info: PluginInfo) -> dict[str, Any]:
    """Where a plugin came from, as runs and model records keep it."""
    return {"name": info.name, "package": info.source.package, "version": info.source.version,
            "code_sha256": info.code_sha256}


def defaults(info: PluginInfo) -> dict[str, Any]:
    """A plugin's hyperparameter defaults, as runs record them: labels of stored results are
    read against them without importing the plugin."""
    return _jsonable(info.cls.parameter_defaults())


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def arena_version() -> str:
    import arena

    return arena.__version__


class Host:
    """Datasets and trained models for every track, on one device, from one model cache."""

    def __init__(self, registry: Registry, home: Path, device: torch.device | None = None,
                 reporter: Reporter | None = None) -> None:
        self.registry = registry
        self.home = home
        self.device = device if device is not None else torch.device("cpu")
        self.reporter = reporter or quiet()
        from .artifact_store import artifact_store

        self.cache = ModelCache(home / "models", self.reporter, artifact_store())
        self._datasets: dict[str, LoadedDataset] = {}
        self._models: dict[str, BuiltModel] = {}
        self._failures: dict[str, BaseException] = {}
        self._lineages: dict[str, str] = {}

    # -- datasets ----------------------------------------------------------------------------

    def dataset(self, name: str) -> LoadedDataset:
        if name not in self._datasets:
            info = self.registry.get("dataset", name)
            plugin = info.create()
            splits = plugin.load()
            plugin.check_splits(splits)
            content_hash = splits.content_hash()
            on_device = Splits(*(t.to(self.device) for t in (splits.x_train, splits.y_train, splits.x_test, splits.y_test)))
            self._datasets[name] = LoadedDataset(info, plugin, on_device, content_hash)
        return self._datasets[name]

    # -- the one path ------------------------------------------------------------------------

    def model(self, recipe: ModelRecipe) -> BuiltModel:
        """The frozen model of ``recipe``: from this process, else from a verified checkpoint,
        else built, trained and saved. A model that failed to build fails every later request
        the same way."""
        if recipe.key in self._failures:
            raise self._failures[recipe.key]
        if recipe.key not in self._models:
            started = time.perf_counter()
            try:
                built = self.cache.get(recipe.key, recipe.kind, recipe.name, recipe.build, recipe.train, recipe.meta)
            except Exception as exc:
                self._failures[recipe.key] = exc
                raise
            # Building counts too: a wrapping defense trains the model it wraps in build().
            train_seconds = None if built.cached else time.perf_counter() - started
            model = freeze(built.model)
            verified = fingerprint(model)  # before the probe: a forward pass that changes the model is caught
            probe = None
            if recipe.probe is not None:
                probe = recipe.probe(model)
                recorded = recorded_probe(self.cache.record(recipe.key))
                if recorded is not None and recorded.randomized_late:  # found random while judged, earlier
                    probe = replace(probe, randomized=True, randomized_late=True)
                self.cache.annotate(recipe.key, probe=probe.as_dict())
            self._models[recipe.key] = BuiltModel(model, recipe.key, built.sha256, recipe.params or {}, recipe.info,
                                                  built.cached, probe, verified, train_seconds, built.train_seconds)
        return self._models[recipe.key]

    def forget(self, key: str) -> None:
        """Drop a model from this process: the next request loads it from its verified checkpoint."""
        self._models.pop(key, None)

    def remember_probe(self, built: BuiltModel, probe: ModelProbe) -> None:
        """Replace what the host knows of a model's behaviour (e.g. randomness found late)."""
        built.probe = probe
        self.cache.annotate(built.key, probe=probe.as_dict())

    # -- plugin models (defenses, generators) ------------------------------------------------

    def context(self, data: LoadedDataset, seed: int, label: str, test: bool = True) -> BuildContext:
        """What a plugin's build and train get; without ``test``, splits whose test half is
        empty (generators: their samples are scored against the test split)."""

        def trained_defense(name: str, **params: Any) -> nn.Module:
            # Training or loading the inner model re-seeds torch; the caller's random stream must
            # not depend on whether that model was in the cache.
            devices = [self.device.index or 0] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                inner = self.plugin_model(self.registry.get("defense", name), params, data, seed).model
            # A copy: whatever the wrapping defense does to it never reaches the inner defense's model.
            return copy.deepcopy(inner)

        splits = data.splits if test else Splits(data.splits.x_train, data.splits.y_train, data.splits.x_test[:0],
                                                 data.splits.y_test[:0])
        return BuildContext(data.plugin, splits, self.device, seed, self.reporter, trained_defense, label)

    def model_identity(self, info: PluginInfo, overrides: dict[str, Any], data: LoadedDataset,
                       seed: int) -> tuple[Any, dict[str, Any], str]:
        """A defense's or generator's instance, its resolved hyperparameters and the key of the
        model it trains: a hash of everything that determines that model, the plugin's code
        included (:attr:`PluginInfo.code_sha256`). The same hash without the code is the model's
        lineage (:meth:`lineage`)."""
        plugin = info.create(overrides)
        plugin.resolve(data.plugin)
        plugin.check_hyperparameters()  # the values the dataset decided are bounded too
        params = plugin.hyperparameters()
        identity = {
            "kind": info.kind,
            "name": info.name,
            "package": info.source.package,
            "version": info.source.version,
            "params": plugin.identity(),
            "dataset": data.info.name,
            "dataset_hash": data.content_hash,
            "seed": seed,
            "arena": arena_version(),
        }
        key = stable_hash({**identity, "code": info.code_sha256})
        self._lineages[key] = stable_hash(identity)
        return plugin, params, key

    def lineage(self, model_key: str) -> str:
        """The key a model of :meth:`model_identity` had before plugin code was part of keys:
        what models of successive versions of the same code share."""
        return self._lineages[model_key]

    def plugin_model(self, info: PluginInfo, overrides: dict[str, Any], data: LoadedDataset, seed: int) -> BuiltModel:
        """The trained model of a defense or generator plugin (defenses are probed)."""
        plugin, params, key = self.model_identity(info, overrides, data, seed)
        ctx = self.context(data, seed, f"{info.name} on {data.info.name}", test=info.kind != "generator")

        def build() -> nn.Module:
            torch.manual_seed(seed)
            model = plugin.build(data.plugin, ctx)
            if not isinstance(model, nn.Module):
                raise PluginError(f"{info.kind} {info.name!r} build() returned {type(model).__name__}, not an nn.Module")
            return model.to(self.device)

        def train(model: nn.Module) -> Any:
            torch.manual_seed(seed)
            return plugin.train(model, ctx)

        meta = {info.kind: info.name, "source": source(info), "params": params, "dataset": data.info.name, "seed": seed}
        probe = (lambda model: probe_model(model, data.splits.x_test, data.splits.y_test)) \
            if info.kind == "defense" else None
        return self.model(ModelRecipe(key, info.kind, info.name, build, train, meta, info, params, probe))

    def verified(self, info: PluginInfo, overrides: dict[str, Any], data: LoadedDataset, seed: int) -> BuiltModel:
        """:meth:`plugin_model`, checked against its verified state (eval mode, frozen weights,
        fingerprint); a model that changed since is dropped and loaded again from the cache."""
        built = self.plugin_model(info, overrides, data, seed)
        problems = frozen_state_problems(built.model, built.fingerprint)
        if problems:
            self.reporter.log(f"{info.kind} {info.name}: {'; '.join(problems)}; reloading its verified checkpoint")
            self.forget(built.key)
            built = self.plugin_model(info, overrides, data, seed)
        return built

    def check_unchanged(self, built: BuiltModel, when: str) -> None:
        """Raise :class:`ModelChanged` (and forget the model, so the next use reloads it) if
        ``built`` is no longer the verified model."""
        problems = frozen_state_problems(built.model, built.fingerprint)
        if problems:
            self.forget(built.key)
            raise ModelChanged(f"the defense model changed {when}: {'; '.join(problems)}; this pairing is not "
                               "judged, the next one starts from the verified checkpoint")

    # -- host-trained models -----------------------------------------------------------------

    def surrogate_keys(self, architectures: tuple[str, ...], data: LoadedDataset, seed: int) -> list[tuple[str, str, int]]:
        """(architecture, model key, seed) of each surrogate of a zero-query attack."""
        keys = []
        for position, architecture in enumerate(architectures):
            # Counted per architecture, so that one architecture's first surrogate is the same
            # model whichever attack asks for it (a single-surrogate transfer and an ensemble).
            surrogate_seed = seed + SURROGATE_SEED_OFFSET + architectures[:position].count(architecture)
            identity = {
                "kind": "surrogate",
                "architecture": architecture,
                "recipe": SURROGATE_RECIPE,
                "dataset": data.info.name,
                "dataset_hash": data.content_hash,
                "seed": surrogate_seed,
                "arena": arena_version(),
            }
            keys.append((architecture, stable_hash(identity), surrogate_seed))
        return keys

    def surrogates(self, architectures: tuple[str, ...], data: LoadedDataset, seed: int) -> dict[str, nn.Module]:
        """Surrogate classifiers for zero-query attacks, trained by the host on the training split."""
        models = {}
        for architecture, key, surrogate_seed in self.surrogate_keys(architectures, data, seed):

            def build(architecture: str = architecture, surrogate_seed: int = surrogate_seed) -> nn.Module:
                torch.manual_seed(surrogate_seed)
                return build_classifier(architecture, data.plugin.shape, data.plugin.classes).to(self.device)

            def train(model: nn.Module, architecture: str = architecture, surrogate_seed: int = surrogate_seed) -> Any:
                return fit_classifier(model, data.splits, Recipe(**SURROGATE_RECIPE), seed=surrogate_seed,
                                      reporter=self.reporter, description=f"training surrogate {architecture}")

            meta = {"kind": "surrogate", "architecture": architecture, "recipe": SURROGATE_RECIPE,
                    "dataset": data.info.name, "dataset_hash": data.content_hash, "seed": surrogate_seed,
                    "arena": arena_version()}
            models[architecture] = self.model(ModelRecipe(key, "surrogate", architecture, build, train, meta)).model
        return models

    def reference_key(self, data: LoadedDataset) -> tuple[str, dict[str, Any]]:
        """The model key of a dataset's reference classifier (generative track) and its identity."""
        from .reference import REFERENCE_RECIPE, REFERENCE_SEED

        identity = {
            "kind": "reference-classifier",
            "recipe": REFERENCE_RECIPE,
            # Trained on one CPU thread its weights are the same everywhere on a CPU; a GPU
            # trains another network, with a key of its own.
            "device": self.device.type,
            "dataset": data.info.name,
            "dataset_hash": data.content_hash,
            "seed": REFERENCE_SEED,
            "arena": arena_version(),
        }
        return stable_hash(identity), identity

    def reference(self, data: LoadedDataset) -> BuiltModel:
        """The dataset's reference classifier, trained once with a fixed seed."""
        from .reference import REFERENCE_RECIPE, REFERENCE_SEED, build_reference

        key, identity = self.reference_key(data)
        recipe = {k: v for k, v in REFERENCE_RECIPE.items() if k != "architecture"}

        def build() -> nn.Module:
            torch.manual_seed(REFERENCE_SEED)
            return build_reference(data.plugin.shape, data.plugin.classes).to(self.device)

        def train(model: nn.Module) -> Any:
            # On one thread: the weights then do not depend on how many threads the caller has
            # (float sums in another order), so neither do the scores it defines.
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return fit_classifier(model, data.splits, Recipe(**recipe), seed=REFERENCE_SEED, reporter=self.reporter,
                                      description=f"training the reference classifier of {data.info.name}")
            finally:
                torch.set_num_threads(threads)

        return self.model(ModelRecipe(key, "reference", data.info.name, build, train, identity))
