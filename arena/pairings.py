"""The robustness track's work: the plan of a matrix (model training, surrogate training, one
job per pairing) and the execution of each job.

Every pairing's keys are computed here once, for the plan and for the run alike. A pairing
stores one run per evaluation the defense model calls for (adaptive first, see
:mod:`arena.evaluation`); which ones is known once the model is trained and probed, and the
model cache keeps the probe beside the checkpoint, so a plan reads it without loading the model.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from safetensors.torch import save_file

from . import records
from .access import Access
from .attack import Attack
from .artifact_store import keep_file
from .errors import InvalidInputError, LateRandomness
from .evaluation import DEFAULT_QUERY_BUDGET, PLAIN, Evaluation, adaptive_evaluation, check_settings, evaluation_flags, plan as evaluations
from .host import Host, LoadedDataset, arena_version, recorded_probe
from .integrity import CROSS_RUN_CODES, ModelProbe, cross_run_flags, data_flags, run_flags
from .judging import Pairing, Settings, evaluate
from .plugins import PluginInfo
from .progress import Reporter
from .provenance import stable_hash
from .results import plugin_label, with_budget
from .store import RobustnessResult, Run
from .threat import ThreatModel
from .track import Job, Outcome, Request

if TYPE_CHECKING:
    from .store import Store

TRACK = "robustness"


def settings_of(request: Request, seed: int) -> Settings:
    option = request.option
    return Settings(seed=seed, n=option("n"), batch_size=request.batch_size, query_budget=option("query_budget", DEFAULT_QUERY_BUDGET),
                    timeout=option("timeout"), fast=bool(option("fast", False)),
                    evaluation=option("evaluation", "both"), eot_samples=option("eot_samples", Settings.eot_samples),
                    decision_draws=option("decision_draws", Settings.decision_draws),
                    keep_all_examples=option("keep_examples", "some") == "all")


def threats_of(request: Request, host: Host) -> list[ThreatModel]:
    """The threat models of a request: ``--norm``/``--eps`` or the dataset's default."""
    dataset = request.dataset
    default = host.registry.get("dataset", dataset).cls.default_threat
    norm = request.option("norm") or default.norm
    eps_values = request.option("eps")
    if eps_values is None:
        if norm != default.norm:
            raise InvalidInputError(f"--norm {norm} needs --eps: {dataset}'s default eps is for {default.norm}")
        eps_values = [default.eps]
    return [ThreatModel(norm, eps, bool(request.option("targeted", False))) for eps in eps_values]


def attack_instance(info: PluginInfo, overrides: dict[str, Any] | None, data: LoadedDataset) -> Attack:
    """The attack instance with its dataset-dependent hyperparameters resolved and checked."""
    attack: Attack = info.create(overrides)  # type: ignore[assignment]
    attack.resolve(data.plugin)
    attack.check_hyperparameters()
    return attack


class PairingKeys:
    """The identity of one pairing and the key and lineage of each of its evaluations."""

    def __init__(self, host: Host, pairing: tuple[PluginInfo, PluginInfo, ThreatModel], data: LoadedDataset,
                 settings: Settings, params: dict[str, dict[str, Any]]) -> None:
        defense_info, attack_info, threat = pairing
        self.data = data
        self.attack = attack_instance(attack_info, params.get(attack_info.name), data)
        _, self.defense_params, self.defense_key = host.model_identity(
            defense_info, dict(params.get(defense_info.name, {})), data, settings.seed)
        self.attack_info = attack_info
        self.n = settings.n if settings.n is not None else len(data.splits.y_test)
        query_attack = self.attack.access in (Access.SCORE_QUERY, Access.LABEL_QUERY)
        # The identity without the plugins' code (its hash is the run's lineage, the key results
        # had before code was part of keys); the key adds the attack's and the defense's code.
        self.identity: dict[str, Any] = {
            "track": TRACK,
            "defense_key": host.lineage(self.defense_key),
            "attack": attack_info.name,
            "attack_package": attack_info.source.package,
            "attack_version": attack_info.source.version,
            "attack_params": self.attack.hyperparameters(),
            "threat": [threat.norm, threat.eps, threat.targeted],
            "n": self.n,
            "seed": settings.seed,
            "query_budget": settings.query_budget if query_attack else None,
            "arena": arena_version(),
        }
        if settings.fast:  # only then, so that results computed before the fast path keep their keys
            self.identity["fast"] = True

    def lineage(self, evaluation: Evaluation) -> str:
        # Plain results keep the lineage they had before evaluations were recorded.
        return stable_hash(self._evaluated(evaluation))

    def key(self, evaluation: Evaluation) -> str:
        return stable_hash({**self._evaluated(evaluation), "defense_key": self.defense_key,
                            "attack_code": self.attack_info.code_sha256})

    def _evaluated(self, evaluation: Evaluation) -> dict[str, Any]:
        return self.identity if not evaluation.adaptive else {**self.identity, "evaluation": evaluation.as_dict()}


@dataclass(frozen=True)
class AttackConfig:
    """One attack configuration of a run: the plugin, the hyperparameters set for it (``-p``, or
    a preset's), and the query budget a preset fixes (None: ``--queries``)."""

    info: PluginInfo
    params: dict[str, Any] | None = None
    query_budget: int | None = None

    def settings(self, settings: Settings) -> Settings:
        return settings if self.query_budget is None else replace(settings, query_budget=self.query_budget)


def attack_configs(request: Request, host: Host, params: dict[str, dict[str, Any]]) -> list[AttackConfig]:
    """The attack configurations ``--attack`` asks for, in order: named attacks (``all``: every
    one) with their ``-p`` values, and each preset's members with the preset's (see
    :mod:`arena.presets`); a configuration asked for twice runs once."""
    from .presets import PRESETS

    names = list(request.option("attacks", []))
    direct = {info.name for info in host.registry.resolve("attack", [n for n in names if n not in PRESETS])}
    for name in names:
        preset = PRESETS.get(name)
        if preset is not None and request.option("targeted", False):
            raise InvalidInputError(f"-a {name} is {preset.title}, an untargeted evaluation: drop --targeted, or "
                                    "name the attacks to run targeted")
        if preset is not None and request.option("fast", False):
            host.reporter.log(f"note: -a {name} with --fast: its runs are fast-path results (labelled [fast]), not "
                              f"{preset.title}'s float32 evaluation, and fill no {preset.title} column")
        for member in preset.members if preset else ():
            if member.attack in params and member.attack not in direct:
                key = next(iter(params[member.attack]))
                raise InvalidInputError(
                    f"-p {member.attack}.{key}: {member.attack} runs here only as part of -a {name}, whose "
                    f"hyperparameters are fixed ({preset.title}); add -a {member.attack} to also run it with "
                    "your values, or drop the -p")
    configs: list[AttackConfig] = []
    seen: set[str] = set()
    for name in names:
        preset = PRESETS.get(name)
        if preset is not None:
            found = [AttackConfig(host.registry.get("attack", m.attack), dict(m.params), m.query_budget)
                     for m in preset.members]
        else:
            found = [AttackConfig(info, params.get(info.name)) for info in host.registry.resolve("attack", [name])]
        for config in found:
            attack = config.info.create(config.params)  # bad hyperparameters fail before any work
            query = attack.access in (Access.SCORE_QUERY, Access.LABEL_QUERY)
            budget = (config.query_budget or request.option("query_budget", DEFAULT_QUERY_BUDGET)) if query else None
            identity = stable_hash([config.info.name, attack.hyperparameters(), budget])
            if identity not in seen:
                seen.add(identity)
                configs.append(config)
    return configs


def compatible(attacks: list[AttackConfig], threats: list[ThreatModel],
               reporter: Reporter) -> list[tuple[AttackConfig, ThreatModel]]:
    """Pairs of attack configuration and threat model the attack supports. The others are
    skipped with one note per attack and reason (named, selected by ``all`` or by a preset
    alike); it is an error only when no pairing at all can run."""
    pairs = []
    skipped: list[str] = []
    for config in attacks:
        info = config.info
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
                pairs.append((config, threat))
            else:
                problems.setdefault(problem, []).append(threat)
        for problem, where in problems.items():
            eps = ", ".join(f"{threat.eps:g}" for threat in where)
            note = f"attack {info.name!r} {problem}" + (f" (eps {eps})" if len(where) < len(threats) else "")
            if note not in skipped:
                skipped.append(note)
    if not pairs:
        raise InvalidInputError(f"no attack can run under the requested threat model: {'; '.join(skipped)}")
    for reason in skipped:
        reporter.log(f"note: {reason}: skipping its pairings")
    return pairs


def plan(request: Request, host: Host, store: Store, force: bool = False) -> list[Job]:
    """Training jobs and one job per pairing, for every seed; everything is checked first."""
    params = {name: dict(values) for name, values in request.params.items()}
    attacks = attack_configs(request, host, params)
    defense_infos = host.registry.resolve("defense", request.option("defenses", []))
    for info in defense_infos:  # bad hyperparameters fail before any work
        info.create(params.get(info.name))
    threats = threats_of(request, host)
    data = host.dataset(request.dataset)
    for threat in threats:
        threat.check_for_shape(data.plugin.shape)
    settings = settings_of(request, request.seeds[0])
    n_test = len(data.splits.y_test)
    n = settings.n if settings.n is not None else n_test
    if not 1 <= n <= n_test:
        raise InvalidInputError(f"--n {n} is outside 1..{n_test}, the size of {request.dataset}'s test split")
    if settings.batch_size < 1:
        raise InvalidInputError("--batch-size must be at least 1")
    if settings.query_budget < 1:
        raise InvalidInputError("--queries must be at least 1")
    check_settings(settings.evaluation, settings.eot_samples, settings.decision_draws)
    pairs = compatible(attacks, threats, reporter=host.reporter)
    jobs: list[Job] = []
    for seed in request.seeds:
        settings = settings_of(request, seed)
        for config in attacks:  # values the dataset decides fail before any training too
            attack_instance(config.info, config.params, data)
        for info in defense_infos:
            host.model_identity(info, params.get(info.name, {}), data, seed)
        seen: set[str] = set()
        for defense_info in defense_infos:
            overrides = dict(params.get(defense_info.name, {}))
            for config, threat in pairs:
                mine = {defense_info.name: overrides}
                if config.params is not None:
                    mine[config.info.name] = dict(config.params)
                keys = PairingKeys(host, (defense_info, config.info, threat), data, config.settings(settings), mine)
                jobs += _training_jobs(host, keys, (defense_info, overrides), data, settings, seen)
                jobs.append(_pairing_job(host, store, keys, (defense_info, threat), config.settings(settings),
                                         request, force, mine))
    return jobs


def _training_jobs(host: Host, keys: PairingKeys, defense: tuple[PluginInfo, dict[str, Any]], data: LoadedDataset,
                   settings: Settings, seen: set[str]) -> list[Job]:
    """The model-training jobs a pairing needs that no earlier job of the plan trains
    (``defense``: its plugin and the hyperparameters the user set)."""
    defense_info, overrides = defense
    jobs = []
    if keys.defense_key not in seen:
        seen.add(keys.defense_key)
        jobs.append(Job(TRACK, "train-defense", keys.defense_key, f"train defense {defense_info.name} (seed "
                        f"{settings.seed})", {"dataset": data.info.name, "defense": defense_info.name,
                                              "params": overrides, "seed": settings.seed},
                        stored=host.cache.record(keys.defense_key) is not None))
    if keys.attack.access == Access.ZERO_QUERY:
        architectures = tuple(keys.attack.surrogate_architectures())
        for architecture, key, surrogate_seed in host.surrogate_keys(architectures, data, settings.seed):
            if key not in seen:
                seen.add(key)
                jobs.append(Job(TRACK, "train-surrogate", key, f"train surrogate {architecture} (seed {surrogate_seed})",
                                {"dataset": data.info.name, "architectures": list(architectures), "seed": settings.seed},
                                stored=host.cache.record(key) is not None))
    return jobs


def expected(host: Host, keys: PairingKeys, settings: Settings) -> tuple[list[Evaluation], bool]:
    """The evaluations a pairing stores as far as the model cache knows (its probe of the
    defense model), and whether that is known (False: the model was never trained and probed,
    and its plain evaluation is all a plan can say)."""
    probe = recorded_probe(host.cache.record(keys.defense_key))
    chosen = evaluations(probe, keys.attack.access, settings.evaluation, settings.eot_samples, settings.decision_draws)
    return chosen, probe is not None


def _pairing_job(host: Host, store: Store, keys: PairingKeys, pairing: tuple[PluginInfo, ThreatModel],
                 settings: Settings, request: Request, force: bool, params: dict[str, dict[str, Any]]) -> Job:
    defense_info, threat = pairing
    chosen, known = expected(host, keys, settings)
    run_keys = tuple(keys.key(evaluation) for evaluation in chosen)
    needs = [keys.defense_key]
    if keys.attack.access == Access.ZERO_QUERY:
        architectures = tuple(keys.attack.surrogate_architectures())
        needs += [key for _, key, _ in host.surrogate_keys(architectures, host.dataset(request.dataset), settings.seed)]
    spec = {
        "dataset": request.dataset,
        "attack": keys.attack_info.name,
        "defense": defense_info.name,
        "params": {name: dict(values) for name, values in params.items() if values},
        "threat": [threat.norm, threat.eps, threat.targeted],
        "settings": asdict(settings),
    }
    stored = not force and all(store.find_run(key) is not None for key in run_keys)
    attack = with_budget(plugin_label(keys.attack_info.name, keys.attack.hyperparameters(),
                                      keys.attack_info.cls.parameter_defaults()), keys.identity["query_budget"])
    label = f"{attack} vs {defense_info.name} ({threat}, seed {settings.seed})"
    return Job(TRACK, "evaluate", run_keys[0], label, spec, tuple(needs), stored, run_keys, keys_final=known)


def train(job: Job, host: Host) -> None:
    """A training job: the model lands in the host and its cache. A failure is not recorded
    here: every pairing that needs the model asks the host for it and records the failure
    (in this process the host remembers it; another process tries once more)."""
    spec = job.spec
    data = host.dataset(spec["dataset"])
    try:
        if job.kind == "train-defense":
            host.plugin_model(host.registry.get("defense", spec["defense"]), dict(spec["params"]), data, spec["seed"])
        else:
            host.surrogates(tuple(spec["architectures"]), data, spec["seed"])
    except Exception:  # noqa: BLE001 - recorded on the pairings that need it
        pass


def execute(job: Job, host: Host, store: Store, force: bool) -> list[Outcome]:
    """Every evaluation of one pairing that the settings ask for (one, unless the model needs
    an adaptive evaluation, see :mod:`arena.evaluation`)."""
    spec = job.spec
    settings = Settings(**spec["settings"])
    data = host.dataset(spec["dataset"])
    defense_info = host.registry.get("defense", spec["defense"])
    attack_info = host.registry.get("attack", spec["attack"])
    threat = ThreatModel(*spec["threat"])
    params = {name: dict(values) for name, values in spec["params"].items()}
    keys = PairingKeys(host, (defense_info, attack_info, threat), data, settings, params)
    label = f"{attack_info.name} vs {defense_info.name} ({threat})"
    details: dict[str, Any] = dict(attack=attack_info.name, defense=defense_info.name, threat=threat)
    started = time.perf_counter()
    try:
        built = host.verified(defense_info, params.get(defense_info.name, {}), data, settings.seed)
    except Exception as exc:
        # Stored under the first key the plan gave (the model cache may know the evaluations).
        first = expected(host, keys, settings)[0][0]
        run = _new_run(host, keys, defense_info, threat, settings, first)
        if (existing := records.reused(store, run.key, force, label, **details, evaluation=first)) is not None:
            return [existing]
        records.record_failure(run, exc, defense_info)
        run.duration_s = time.perf_counter() - started
        return [records.save(store, run, force, label, **details, evaluation=first)]

    details.update(train_seconds=built.train_seconds, model_cached=built.cached)
    adaptive = adaptive_evaluation(built.probe, keys.attack.access, settings.eot_samples, settings.decision_draws)
    outcomes = []
    for evaluation in evaluations(built.probe, keys.attack.access, settings.evaluation, settings.eot_samples,
                                  settings.decision_draws):
        run = _new_run(host, keys, defense_info, threat, settings, evaluation)
        if (existing := records.reused(store, run.key, force, label, **details, evaluation=evaluation)) is not None:
            outcomes.append(existing)
            continue
        run.provenance["checkpoint_sha256"] = built.sha256
        try:
            judged = evaluate(host, Pairing(data, built, keys.attack, threat, keys.n, attack_info.name,
                                            defense_info.name, evaluation), settings)
        except LateRandomness:
            # Found random on the judged batches: evaluate it as the randomized model it is.
            host.remember_probe(built, replace(built.probe or ModelProbe(False, False, 0.0), randomized=True,
                                               randomized_late=True))
            return execute(job, host, store, force)
        except Exception as exc:
            records.record_failure(run, exc, attack_info)
        else:
            run.status = "ok"
            run.samples = judged.samples
            # Kept in the artifact store, by content; the run records where.
            run.artifacts = {"examples": keep_file(host.home, ".safetensors",
                                                   lambda path: save_file(judged.examples, path))}
            metrics = judged.metrics
            # The attack's own wall time (without training or judging) goes with the
            # provenance: the schema has no column for it.
            run.provenance["attack_seconds"] = metrics.pop("attack_seconds")
            if settings.keep_all_examples:  # every attacked sample's example: all of them can be re-checked
                run.provenance["examples_kept"] = "all"
            for name, value in metrics.items():
                setattr(run.robustness, name, value)
            white_box = keys.attack.access == Access.WHITE_BOX
            declared = bool(getattr(defense_info.cls, "deterministic", True))
            flags = built.probe.flags(white_box=white_box, bpda=evaluation.bpda,
                                      declared_deterministic=declared) if built.probe else []
            flags += evaluation_flags(evaluation, adaptive, built.probe)
            flags += run_flags(threat.norm, threat.eps, data.plugin.shape, data.plugin.classes,
                               metrics["robust_accuracy"])
            flags += data_flags(data.plugin)
            run.flags = [flag.as_dict() for flag in flags]
        run.duration_s = time.perf_counter() - started
        started = time.perf_counter()
        outcomes.append(records.save(store, run, force, label, **details, evaluation=evaluation))
    return outcomes


def _new_run(host: Host, keys: PairingKeys, defense_info: PluginInfo, threat: ThreatModel, settings: Settings,
             evaluation: Evaluation) -> Run:
    """A run record with its identity and provenance filled in, before any result."""
    attack, attack_info = keys.attack, keys.attack_info
    data = keys.data
    run = records.new_run(keys.key(evaluation), TRACK, data, settings.seed, keys.n, host.device)
    run.lineage = keys.lineage(evaluation)
    query_attack = attack.access in (Access.SCORE_QUERY, Access.LABEL_QUERY)
    run.robustness = RobustnessResult(
        attack=attack_info.name,
        attack_package=attack_info.source.package,
        attack_version=attack_info.source.version,
        attack_access=str(Access(attack.access)),
        attack_params=attack.hyperparameters(),
        defense=defense_info.name,
        defense_package=defense_info.source.package,
        defense_version=defense_info.source.version,
        defense_params=keys.defense_params,
        defense_key=keys.defense_key,
        norm=threat.norm,
        eps=threat.eps,
        targeted=threat.targeted,
        query_budget=settings.query_budget if query_attack else None,
        evaluation=evaluation.as_dict(),
    )
    run.provenance = records.provenance(host.device, data, {"attack": attack_info, "defense": defense_info},
                                        seed=settings.seed, batch_size=settings.batch_size, fast=settings.fast)
    return run


def refresh_cross_run_flags(host: Host, store: Store, dataset: str) -> None:
    """Recompute the flags that compare stored results (eps sweeps, black- vs white-box)."""
    from .checks import steps_parameter
    from .results import robustness_rows

    rows = robustness_rows(store, host.registry, dataset=dataset)
    for row in rows:  # the attack's own word on what its step count is, where it is installed
        if row["attack"] in host.registry.plugins["attack"]:
            params = row["attack_params"] or {}
            steps = steps_parameter(host.registry.get("attack", row["attack"]).cls, params)
            row["attack_iterative"] = steps is not None and params[steps] > 1
    computed = cross_run_flags(rows)
    for row in rows:
        kept = [f for f in row["flags"] if f.get("code") not in CROSS_RUN_CODES]
        flags = kept + [f.as_dict() for f in computed.get(row["run_id"], [])]
        if flags != row["flags"]:
            store.update_run(row["run_id"], flags=flags)
