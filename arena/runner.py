"""The runner: resolves plugins, builds or loads models, runs attacks in batches, judges, stores.

The host owns every invariant: the device, eval mode and frozen weights, seeding, the choice
of evaluation points and targets, the access an attack gets, re-checking each ``x_adv``
against the budget, re-classifying it, and writing the result in one transaction.
"""

from __future__ import annotations

import copy
import os
import random
import time
import traceback
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy
import torch
from safetensors.torch import save_file
from torch import nn

from .access import Access, LabelOracle, PassCounter, ScoreOracle
from .attack import Attack
from .cache import ModelCache, atomic_write
from .dataset import Dataset, Splits
from .defense import Defense
from .errors import ArenaError, InvalidInputError, LateRandomness, ModelChanged, PluginError, RefusedResult
from .fast import FastModel, tf32_matmul
from .isolation import AttackWorker, WorkerError, release_workers
from .evaluation import (
    DEFAULT_DECISION_DRAWS,
    DEFAULT_EOT_SAMPLES,
    PLAIN,
    Evaluation,
    adaptive_evaluation,
    check_settings,
    evaluation_flags,
    judge,
    plan,
)
from .integrity import (
    CROSS_RUN_CODES,
    ModelProbe,
    cross_run_flags,
    fingerprint,
    frozen_state_problems,
    probe_model,
    run_flags,
)
from .models import build_classifier
from .plugins import PluginInfo, Registry
from .progress import Reporter, quiet
from .provenance import environment, stable_hash
from .store import RobustnessResult, Run, Sample, Store
from .threat import ThreatModel, check_adversarial, perturbation_norms
from .training import BuildContext, fit_classifier

#: How the host trains the surrogate models of zero-query (transfer) attacks.
SURROGATE_RECIPE = {"epochs": 20, "lr": 1e-3, "batch_size": 64}
#: How many attacked samples each run keeps as images (clean and adversarial) for `arena show`.
EXAMPLES_KEPT = 8
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


def choose_targets(labels: torch.Tensor, classes: int, seed: int) -> torch.Tensor:
    """The host's target for each sample: a seeded uniform choice among the other classes."""
    generator = torch.Generator().manual_seed(seed)
    offsets = torch.randint(1, classes, labels.shape, generator=generator)
    return (labels.cpu() + offsets) % classes


def predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Predicted labels, in batches, without gradients."""
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


@dataclass(frozen=True)
class Settings:
    """How pairings are run. ``seed``, ``n`` and (for query attacks) ``query_budget`` are part of
    every result's identity; ``timeout`` bounds one attack's wall time in seconds.

    ``evaluation`` picks which of a pairing's evaluations run (``both``, ``adaptive`` or
    ``plain``, see :mod:`arena.evaluation`); ``eot_samples`` and ``decision_draws`` set the
    adaptive evaluation of randomized models and are part of its results' identity.
    """

    seed: int = 0
    n: int | None = None
    batch_size: int = 256
    query_budget: int = 5000
    timeout: float | None = None
    #: The opt-in fast path of the attack's passes (see :mod:`arena.fast`).
    fast: bool = False
    evaluation: str = "both"
    eot_samples: int = DEFAULT_EOT_SAMPLES
    decision_draws: int = DEFAULT_DECISION_DRAWS


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
    splits: Splits  # on the run's device
    content_hash: str


@dataclass
class BuiltModel:
    model: nn.Module
    key: str
    sha256: str
    params: dict[str, Any]
    info: PluginInfo
    cached: bool
    probe: ModelProbe | None = None
    #: :func:`arena.integrity.fingerprint` of the frozen model, checked before and after each pairing.
    fingerprint: str = ""
    #: Wall-clock seconds this process spent building and training the model (None: from the cache).
    train_seconds: float | None = None


@dataclass
class PairingOutcome:
    """A stored run and whether it was reused from an earlier identical command."""

    run: Run
    reused: bool
    attack: str
    defense: str
    threat: ThreatModel
    evaluation: Evaluation = PLAIN
    #: Seconds spent training the defense model in this command; None when it came from the cache
    #: (or could not be built), see ``model_cached``.
    train_seconds: float | None = None
    #: Whether the defense model was loaded from the model cache (None: it was not built).
    model_cached: bool | None = None

    @property
    def ok(self) -> bool:
        return self.run.status == "ok"

    @property
    def attack_seconds(self) -> float | None:
        """The attack's own wall time (without training or judging), where the run recorded it."""
        value = (self.run.provenance or {}).get("attack_seconds")
        return float(value) if isinstance(value, (int, float)) else None


@dataclass
class Runner:
    store: Store
    registry: Registry
    home: Path
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    reporter: Reporter = field(default_factory=quiet)
    force: bool = False

    def __post_init__(self) -> None:
        self.cache = ModelCache(self.home / "models", self.reporter)
        self._datasets: dict[str, LoadedDataset] = {}
        self._models: dict[str, BuiltModel] = {}
        self._failures: dict[str, BaseException] = {}
        self._lineages: dict[str, str] = {}

    # -- datasets and models ----------------------------------------------------------------

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

    def _context(self, data: LoadedDataset, seed: int, label: str) -> BuildContext:
        def trained_defense(name: str, **params: Any) -> nn.Module:
            # Training or loading the inner model re-seeds torch; the caller's random stream must
            # not depend on whether that model was in the cache.
            devices = [self.device.index or 0] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                inner = self.defense_model(self.registry.get("defense", name), params, data, seed).model
            # A copy: whatever the wrapping defense does to it never reaches the inner defense's model.
            return copy.deepcopy(inner)

        return BuildContext(data.plugin, data.splits, self.device, seed, self.reporter, trained_defense, label)

    def model_identity(
        self, info: PluginInfo, overrides: dict[str, Any], data: LoadedDataset, seed: int
    ) -> tuple[Any, dict[str, Any], str]:
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
            "params": params,
            "dataset": data.info.name,
            "dataset_hash": data.content_hash,
            "seed": seed,
            "arena": _arena_version(),
        }
        key = stable_hash({**identity, "code": info.code_sha256})
        self._lineages[key] = stable_hash(identity)
        return plugin, params, key

    def lineage(self, model_key: str) -> str:
        """The key a model of :meth:`model_identity` had before plugin code was part of keys:
        what models of successive versions of the same code share."""
        return self._lineages[model_key]

    def defense_identity(
        self, info: PluginInfo, overrides: dict[str, Any], data: LoadedDataset, seed: int
    ) -> tuple[Defense, dict[str, Any], str]:
        """The defense instance, its resolved hyperparameters and its model key."""
        return self.model_identity(info, overrides, data, seed)

    def defense_model(self, info: PluginInfo, overrides: dict[str, Any], data: LoadedDataset, seed: int) -> BuiltModel:
        """The trained model of a defense, from the cache when a verified checkpoint exists."""
        defense, params, key = self.defense_identity(info, overrides, data, seed)
        if key in self._failures:  # a defense that failed to build fails every pairing the same way
            raise self._failures[key]
        if key not in self._models:
            ctx = self._context(data, seed, f"{info.name} on {data.info.name}")

            def build() -> nn.Module:
                torch.manual_seed(seed)
                model = defense.build(data.plugin, ctx)
                if not isinstance(model, nn.Module):
                    raise PluginError(f"defense {info.name!r} build() returned {type(model).__name__}, not an nn.Module")
                return model.to(self.device)

            def train(model: nn.Module) -> Any:
                torch.manual_seed(seed)
                return defense.train(model, ctx)

            meta = {"defense": info.name, "source": _source(info), "params": params, "dataset": data.info.name, "seed": seed}
            started = time.perf_counter()
            try:
                built = self.cache.get(key, "defense", info.name, build, train, meta)
            except Exception as exc:
                self._failures[key] = exc
                raise
            # Building counts too: a wrapping defense trains the model it wraps in build().
            train_seconds = None if built.cached else time.perf_counter() - started
            model = _freeze(built.model)
            verified = fingerprint(model)
            probe = probe_model(model, data.splits.x_test, data.splits.y_test)
            self._models[key] = BuiltModel(model, key, built.sha256, params, info, built.cached, probe, verified,
                                           train_seconds)
        return self._models[key]

    def verified_defense_model(
        self, info: PluginInfo, overrides: dict[str, Any], data: LoadedDataset, seed: int
    ) -> BuiltModel:
        """:meth:`defense_model`, checked against its verified state (eval mode, frozen weights,
        fingerprint); a model that changed since is dropped and loaded again from the cache."""
        built = self.defense_model(info, overrides, data, seed)
        problems = frozen_state_problems(built.model, built.fingerprint)
        if problems:
            self.reporter.log(f"defense {info.name}: {'; '.join(problems)}; reloading its verified checkpoint")
            del self._models[built.key]
            built = self.defense_model(info, overrides, data, seed)
        return built

    def check_unchanged(self, built: BuiltModel, when: str) -> None:
        """Raise :class:`ModelChanged` (and forget the model, so the next pairing reloads it) if
        ``built`` is no longer the verified model."""
        problems = frozen_state_problems(built.model, built.fingerprint)
        if problems:
            self._models.pop(built.key, None)
            raise ModelChanged(f"the defense model changed {when}: {'; '.join(problems)}; this pairing is not "
                               "judged, the next one starts from the verified checkpoint")

    def surrogates(self, architectures: tuple[str, ...], data: LoadedDataset, seed: int) -> dict[str, nn.Module]:
        """Surrogate classifiers for zero-query attacks, trained by the host on the training split."""
        models = {}
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
                "arena": _arena_version(),
            }
            key = stable_hash(identity)
            if key not in self._models:

                def build(architecture: str = architecture, surrogate_seed: int = surrogate_seed) -> nn.Module:
                    torch.manual_seed(surrogate_seed)
                    return build_classifier(architecture, data.plugin.shape, data.plugin.classes).to(self.device)

                def train(model: nn.Module, architecture: str = architecture, surrogate_seed: int = surrogate_seed) -> Any:
                    return fit_classifier(
                        model,
                        data.splits,
                        seed=surrogate_seed,
                        reporter=self.reporter,
                        description=f"training surrogate {architecture}",
                        **SURROGATE_RECIPE,
                    )

                built = self.cache.get(key, "surrogate", architecture, build, train, identity)
                self._models[key] = BuiltModel(_freeze(built.model), key, built.sha256, {}, None, built.cached)  # type: ignore[arg-type]
            models[architecture] = self._models[key].model
        return models

    def attack(self, info: PluginInfo, overrides: dict[str, Any] | None, data: LoadedDataset) -> Attack:
        """The attack instance with its dataset-dependent hyperparameters resolved and checked."""
        attack: Attack = info.create(overrides)  # type: ignore[assignment]
        attack.resolve(data.plugin)
        attack.check_hyperparameters()
        return attack

    # -- robustness track -------------------------------------------------------------------

    def robustness(
        self,
        dataset: str,
        attacks: list[str],
        defenses: list[str],
        threats: list[ThreatModel] | None = None,
        settings: Settings = Settings(),
        params: dict[str, dict[str, Any]] | None = None,
    ) -> list[PairingOutcome]:
        """Evaluate every attack against every defense under every threat model."""
        params = params or {}
        attack_infos = self.registry.resolve("attack", attacks)
        defense_infos = self.registry.resolve("defense", defenses)
        for info in [*attack_infos, *defense_infos]:  # bad hyperparameters fail before any work
            info.create(params.get(info.name))
        data = self.dataset(dataset)
        threats = threats or [data.plugin.default_threat]
        for threat in threats:
            threat.check_for_shape(data.plugin.shape)
        n_test = len(data.splits.y_test)
        n = settings.n if settings.n is not None else n_test
        if not 1 <= n <= n_test:
            raise InvalidInputError(f"--n {n} is outside 1..{n_test}, the size of {dataset}'s test split")
        if settings.batch_size < 1:
            raise InvalidInputError("--batch-size must be at least 1")
        if settings.query_budget < 1:
            raise InvalidInputError("--queries must be at least 1")
        check_settings(settings.evaluation, settings.eot_samples, settings.decision_draws)
        pairings = _compatible(attack_infos, threats, reporter=self.reporter)
        for info in attack_infos:  # and so do values the dataset decides, before any training
            self.attack(info, params.get(info.name), data)
        for info in defense_infos:
            self.defense_identity(info, params.get(info.name, {}), data, settings.seed)
        outcomes = []
        try:
            for defense_info in defense_infos:
                for attack_info, threat in pairings:
                    outcomes.extend(self._pairing(data, defense_info, attack_info, threat, n, settings, params))
        finally:
            release_workers()
        self.refresh_cross_run_flags(dataset)
        return outcomes

    def refresh_cross_run_flags(self, dataset: str) -> None:
        """Recompute the flags that compare stored results (eps sweeps, black- vs white-box)."""
        from .results import robustness_rows

        from .checks import steps_parameter

        rows = robustness_rows(self.store, self.registry, dataset=dataset)
        for row in rows:  # the attack's own word on what its step count is, where it is installed
            if row["attack"] in self.registry.plugins["attack"]:
                params = row["attack_params"] or {}
                steps = steps_parameter(self.registry.get("attack", row["attack"]).cls, params)
                row["attack_iterative"] = steps is not None and params[steps] > 1
        computed = cross_run_flags(rows)
        for row in rows:
            kept = [f for f in row["flags"] if f.get("code") not in CROSS_RUN_CODES]
            flags = kept + [f.as_dict() for f in computed.get(row["run_id"], [])]
            if flags != row["flags"]:
                self.store.update_run(row["run_id"], flags=flags)

    def _pairing(
        self,
        data: LoadedDataset,
        defense_info: PluginInfo,
        attack_info: PluginInfo,
        threat: ThreatModel,
        n: int,
        settings: Settings,
        params: dict[str, dict[str, Any]],
    ) -> list[PairingOutcome]:
        """Every evaluation of one pairing that ``settings.evaluation`` asks for (one, unless the
        model needs an adaptive evaluation, see :mod:`arena.evaluation`)."""
        attack = self.attack(attack_info, params.get(attack_info.name), data)
        label = dict(attack=attack_info.name, defense=defense_info.name, threat=threat)
        started = time.perf_counter()
        _, defense_params, defense_key = self.defense_identity(
            defense_info, params.get(defense_info.name, {}), data, settings.seed
        )
        query_attack = attack.access in (Access.SCORE_QUERY, Access.LABEL_QUERY)
        # The identity without the plugins' code (its hash is the run's lineage, the key results
        # had before code was part of keys); the key adds the attack's and the defense's code.
        identity = {
            "track": "robustness",
            "defense_key": self.lineage(defense_key),
            "attack": attack_info.name,
            "attack_package": attack_info.source.package,
            "attack_version": attack_info.source.version,
            "attack_params": attack.hyperparameters(),
            "threat": [threat.norm, threat.eps, threat.targeted],
            "n": n,
            "seed": settings.seed,
            "query_budget": settings.query_budget if query_attack else None,
            "arena": _arena_version(),
        }
        if settings.fast:  # only then, so that results computed before the fast path keep their keys
            identity["fast"] = True

        def new_run(evaluation: Evaluation) -> Run:
            # Plain results keep the lineage they had before evaluations were recorded.
            evaluated = identity if not evaluation.adaptive else {**identity, "evaluation": evaluation.as_dict()}
            key = stable_hash({**evaluated, "defense_key": defense_key, "attack_code": attack_info.code_sha256})
            run = self._new_run(key, data, defense_info, defense_params, defense_key, attack_info, attack,
                                threat, n, settings, evaluation)
            run.lineage = stable_hash(evaluated)
            return run

        try:
            built = self.verified_defense_model(defense_info, params.get(defense_info.name, {}), data, settings.seed)
        except Exception as exc:
            run = new_run(PLAIN)
            if not self.force and (existing := self.store.find_run(run.key)) is not None:
                return [PairingOutcome(existing, True, **label)]
            _record_failure(run, exc, defense_info)
            run.duration_s = time.perf_counter() - started
            stored = self.store.save_run(run, replace=self.force)
            return [PairingOutcome(stored, stored is not run, **label)]

        label.update(train_seconds=built.train_seconds, model_cached=built.cached)
        adaptive = adaptive_evaluation(built.probe, attack.access, settings.eot_samples, settings.decision_draws)
        outcomes = []
        for evaluation in plan(built.probe, attack.access, settings.evaluation, settings.eot_samples,
                               settings.decision_draws):
            run = new_run(evaluation)
            if not self.force and (existing := self.store.find_run(run.key)) is not None:
                outcomes.append(PairingOutcome(existing, True, **label, evaluation=evaluation))
                continue
            run.provenance["checkpoint_sha256"] = built.sha256
            try:
                samples, metrics, examples = self._evaluate(
                    data, built, attack, threat, n, settings, attack_info.name, defense_info.name, evaluation
                )
            except LateRandomness:
                # Found random on the judged batches: evaluate it as the randomized model it is.
                built.probe = replace(built.probe or ModelProbe(False, False, 0.0), randomized=True,
                                      randomized_late=True)
                return self._pairing(data, defense_info, attack_info, threat, n, settings, params)
            except Exception as exc:
                _record_failure(run, exc, attack_info)
            else:
                run.status = "ok"
                run.samples = samples
                run.artifacts = {"examples": str(self._save_examples(self.artifact_stem(run), examples))}
                # The attack's own wall time (without training or judging) goes with the
                # provenance: the schema has no column for it.
                run.provenance["attack_seconds"] = metrics.pop("attack_seconds")
                for name, value in metrics.items():
                    setattr(run.robustness, name, value)
                white_box = attack.access == Access.WHITE_BOX
                declared = bool(getattr(defense_info.cls, "deterministic", True))
                flags = built.probe.flags(white_box=white_box, bpda=evaluation.bpda,
                                          declared_deterministic=declared) if built.probe else []
                flags += evaluation_flags(evaluation, adaptive, built.probe)
                flags += run_flags(threat.norm, threat.eps, data.plugin.shape, data.plugin.classes,
                                   metrics["robust_accuracy"])
                run.flags = [flag.as_dict() for flag in flags]
            run.duration_s = time.perf_counter() - started
            started = time.perf_counter()
            stored = self.store.save_run(run, replace=self.force)
            outcomes.append(PairingOutcome(stored, stored is not run, **label, evaluation=evaluation))
        return outcomes

    def _new_run(
        self,
        key: str,
        data: LoadedDataset,
        defense_info: PluginInfo,
        defense_params: dict[str, Any],
        defense_key: str,
        attack_info: PluginInfo,
        attack: Attack,
        threat: ThreatModel,
        n: int,
        settings: Settings,
        evaluation: Evaluation,
    ) -> Run:
        """A run record with its identity and provenance filled in, before any result."""
        query_attack = attack.access in (Access.SCORE_QUERY, Access.LABEL_QUERY)
        run = Run(
            key=key,
            track="robustness",
            created_at=datetime.now(timezone.utc),
            dataset=data.info.name,
            dataset_hash=data.content_hash,
            seed=settings.seed,
            n=n,
            device=str(self.device),
            flags=[],
            artifacts={},
        )
        run.robustness = RobustnessResult(
            attack=attack_info.name,
            attack_package=attack_info.source.package,
            attack_version=attack_info.source.version,
            attack_access=str(Access(attack.access)),
            attack_params=attack.hyperparameters(),
            defense=defense_info.name,
            defense_package=defense_info.source.package,
            defense_version=defense_info.source.version,
            defense_params=defense_params,
            defense_key=defense_key,
            norm=threat.norm,
            eps=threat.eps,
            targeted=threat.targeted,
            query_budget=settings.query_budget if query_attack else None,
            evaluation=evaluation.as_dict(),
        )
        run.provenance = {
            **environment(self.device),
            "seed": settings.seed,
            "batch_size": settings.batch_size,
            "fast": settings.fast,
            "dataset_hash": data.content_hash,
            "checkpoint_sha256": None,
            "plugins": {
                "dataset": _source(data.info),
                "attack": _source(attack_info),
                "defense": _source(defense_info),
            },
        }
        return run

    def _evaluate(
        self,
        data: LoadedDataset,
        built: BuiltModel,
        attack: Attack,
        threat: ThreatModel,
        n: int,
        settings: Settings,
        attack_name: str,
        defense_name: str,
        evaluation: Evaluation = PLAIN,
    ) -> tuple[list[Sample], dict[str, Any], dict[str, torch.Tensor]]:
        """Attack the clean-correct points of the test split in batches, each in the attack's
        worker process, and judge every ``x_adv`` with the host's own model. A model the probe
        found deterministic is re-checked on every judged batch (:func:`arena.evaluation.judge`);
        the model must be unchanged at the end, in the host and in the attack's worker."""
        model = built.model
        recheck = not (built.probe and built.probe.randomized)
        transfer_models = (  # first: training them re-seeds torch
            self.surrogates(attack.surrogate_architectures(), data, settings.seed)
            if attack.access == Access.ZERO_QUERY
            else {}
        )
        # One seeded stream for the clean pass, the attack and the judgement: a randomized
        # model's draws are reproducible too.
        torch.manual_seed(settings.seed)
        x_all, y_all = data.splits.x_test[:n], data.splits.y_test[:n]
        clean_pred = judge(model, x_all, y_all, None, evaluation.decision_draws, settings.batch_size, recheck)
        correct = clean_pred == y_all
        targets = choose_targets(y_all, data.plugin.classes, settings.seed).to(self.device) if threat.targeted else None
        x_adv_all = x_all.clone()
        queries = torch.zeros(n, dtype=torch.long) if attack.access in (Access.SCORE_QUERY, Access.LABEL_QUERY) else None
        counter = PassCounter()
        attacked = correct.nonzero().flatten()  # only clean-correct points are attacked
        batches = [attacked[i : i + settings.batch_size] for i in range(0, len(attacked), settings.batch_size)]
        description = f"{attack_name} → {defense_name} ({threat}" + (
            f", {evaluation.describe()})" if evaluation.adaptive else ")"
        )
        # The fast path changes the attack's view of the models only; the host judges in float32.
        oracle_view = FastModel(model, self.device) if settings.fast and queries is not None else model
        white_box = attack.access == Access.WHITE_BOX
        started = time.perf_counter()
        with self.reporter.task(description, total=max(len(batches), 1)) as advance, AttackWorker(
            attack,
            model if white_box else None,
            transfer_models,
            self.device,
            settings.seed,
            eot_samples=evaluation.eot_samples,
            bpda=evaluation.bpda,
            fast=settings.fast,
            timeout=settings.timeout,
            description=f"attack {attack_name} against {defense_name}",
        ) as worker, tf32_matmul(self.device, enabled=settings.fast):
            for index in batches:
                x, y = x_all[index], y_all[index]
                oracle = self._oracle(attack, oracle_view, len(index), settings.query_budget)
                x_adv, forward, backward = worker.perturb(
                    x, y, threat, None if targets is None else targets[index], oracle
                )
                counter.forward += forward
                counter.backward += backward
                x_adv_all[index] = check_adversarial(x, x_adv, threat)
                if queries is not None:
                    queries[index.cpu()] = oracle.queries
                advance()
            changed = worker.finish()
        attack_seconds = time.perf_counter() - started
        adv_pred = judge(model, x_adv_all, y_all, targets, evaluation.decision_draws, settings.batch_size, recheck)
        self.check_unchanged(built, "while it was attacked and judged")
        if changed:
            raise ModelChanged(f"the attack changed its copy of the model ({'; '.join(changed)}); an attack must "
                               "leave the model as given")
        goal = (adv_pred == targets) if targets is not None else (adv_pred != y_all)
        success = correct & goal
        robust = correct & (adv_pred == y_all)  # never above clean accuracy, by construction
        linf, l2 = perturbation_norms(x_all, x_adv_all)

        to_list = lambda t: t.cpu().tolist()  # noqa: E731
        samples = [
            Sample(
                index=i,
                label=label,
                target=target,
                clean_pred=cp,
                adv_pred=ap,
                clean_correct=cc,
                success=s,
                robust=r,
                linf=li,
                l2=l2_,
                queries=q,
            )
            for i, label, target, cp, ap, cc, s, r, li, l2_, q in zip(
                range(n),
                to_list(y_all),
                to_list(targets) if targets is not None else [None] * n,
                to_list(clean_pred),
                to_list(adv_pred),
                to_list(correct),
                to_list(success),
                to_list(robust),
                to_list(linf),
                to_list(l2),
                to_list(queries) if queries is not None else [None] * n,
            )
        ]
        metrics = robustness_metrics(correct, success, robust, linf, l2, queries, counter)
        metrics["attack_seconds"] = attack_seconds
        # Keep a few attacked samples, successful ones first, for pictures of the perturbation.
        order = sorted(attacked.tolist(), key=lambda i: (not bool(success[i]), i))[:EXAMPLES_KEPT]
        keep = torch.tensor(order, dtype=torch.long, device=x_all.device)
        examples = {
            "index": keep.cpu(),
            "x": x_all[keep].cpu().contiguous(),
            "x_adv": x_adv_all[keep].cpu().contiguous(),
            "label": y_all[keep].cpu(),
            "adv_pred": adv_pred[keep].cpu(),
        }
        return samples, metrics, examples

    def artifact_stem(self, run: Run) -> str:
        """The name a run's files start with: its key, and with ``force`` the time it was created
        too, so that a recomputation never overwrites the files of the run it supersedes."""
        return run.key if not self.force else f"{run.key}-{run.created_at:%Y%m%dT%H%M%S%f}"

    def _save_examples(self, stem: str, examples: dict[str, torch.Tensor]) -> Path:
        path = self.home / "runs" / f"{stem}.safetensors"
        atomic_write(path, lambda temporary: save_file(examples, temporary))
        return path

    @staticmethod
    def _oracle(attack: Attack, model: nn.Module, batch: int, budget: int) -> ScoreOracle | LabelOracle | None:
        """The host's own oracle for one batch of a query attack (it answers the worker's queries
        and counts them); None for other attacks."""
        access = Access(attack.access)
        if access == Access.SCORE_QUERY:
            return ScoreOracle(model, batch, budget)
        if access == Access.LABEL_QUERY:
            return LabelOracle(model, batch, budget)
        return None


def robustness_metrics(
    correct: torch.Tensor,
    success: torch.Tensor,
    robust: torch.Tensor,
    linf: torch.Tensor,
    l2: torch.Tensor,
    queries: torch.Tensor | None,
    counter: PassCounter,
) -> dict[str, Any]:
    """Accuracy, success rate and perturbation sizes from per-sample outcomes.

    Robust accuracy counts a sample only if it is classified correctly both before and after
    the attack; the success rate is over clean-correct samples; perturbation sizes are over
    successful samples.
    """
    n_correct = int(correct.sum())
    won = success.nonzero().flatten()
    attacked = correct.nonzero().flatten().cpu()

    def stat(values: torch.Tensor, fn: str) -> float | None:
        if len(won) == 0:
            return None
        picked = values[won].double()
        return float(picked.mean() if fn == "mean" else picked.median())

    return {
        "clean_accuracy": float(correct.double().mean()),
        "robust_accuracy": float(robust.double().mean()),
        "attack_success_rate": float(success.sum()) / n_correct if n_correct else None,
        "mean_linf": stat(linf, "mean"),
        "median_linf": stat(linf, "median"),
        "mean_l2": stat(l2, "mean"),
        "median_l2": stat(l2, "median"),
        "queries_mean": float(queries[attacked].double().mean()) if queries is not None and len(attacked) else None,
        "queries_max": int(queries.max()) if queries is not None and len(queries) else None,
        "forward_passes": counter.forward,
        "backward_passes": counter.backward,
    }


def _compatible(
    attacks: list[PluginInfo], threats: list[ThreatModel], reporter: Reporter
) -> list[tuple[PluginInfo, ThreatModel]]:
    """Pairs of attack and threat model the attack supports. The others are skipped with one
    note per attack and reason (named or selected by ``all`` alike); it is an error only when no
    pairing at all can run."""
    pairs = []
    skipped: list[str] = []
    for info in attacks:
        cls: type[Attack] = info.cls  # type: ignore[assignment]
        problems: dict[str, list[ThreatModel]] = {}
        for threat in threats:
            problem = None
            if threat.norm not in cls.norms:
                problem = f"does not support norm {threat.norm} (it supports {', '.join(cls.norms)})"
            elif threat.targeted and not cls.supports_targeted:
                problem = "has no targeted mode"
            elif not threat.targeted and not cls.supports_untargeted:
                problem = "is targeted only: add --targeted"
            if problem is None:
                pairs.append((info, threat))
            else:
                problems.setdefault(problem, []).append(threat)
        for problem, where in problems.items():
            eps = ", ".join(f"{threat.eps:g}" for threat in where)
            skipped.append(f"attack {info.name!r} {problem}" + (f" (eps {eps})" if len(where) < len(threats) else ""))
    if not pairs:
        raise InvalidInputError(f"no attack can run under the requested threat model: {'; '.join(skipped)}")
    for reason in skipped:
        reporter.log(f"note: {reason}: skipping its pairings")
    return pairs


def _record_failure(run: Run, exc: BaseException, failing: PluginInfo) -> None:
    """Mark a run refused (the host refused the attack's output) or errored (a plugin raised)."""
    if isinstance(exc, RefusedResult):
        run.status, run.error = "refused", f"{failing.name}: {exc}"
    elif isinstance(exc, ArenaError):
        run.status, run.error = "error", f"{failing.kind} {failing.name}: {exc}"
    elif isinstance(exc, WorkerError):  # an attack raised in its worker process
        run.status = "error"
        run.error = f"{failing.kind} {failing.name} ({failing.source}) raised {exc.type_name}: {exc}\n{exc.traceback_text}"
    else:  # a plugin that raises marks only its own pairing as failed
        run.status = "error"
        run.error = (
            f"{failing.kind} {failing.name} ({failing.source}) raised {type(exc).__name__}: {exc}\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        )


def _freeze(model: nn.Module) -> nn.Module:
    """Eval mode and no weight gradients: attacks need input gradients only."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def _source(info: PluginInfo) -> dict[str, str | None]:
    return {"name": info.name, "package": info.source.package, "version": info.source.version,
            "code_sha256": info.code_sha256}


def _arena_version() -> str:
    import arena

    return arena.__version__
