"""Conformance checks: does a plugin class keep the contract the host relies on?

Each check exercises one promise of the contract on small data (the built-in ``digits-tiny``
dataset) and small random models, the way the host calls the plugin, and says, when it fails,
what the contract is and how to fix the plugin. They serve plugin authors (``arena.testing``'s
``check_attack`` and friends, in their own test suites) and users (``arena plugins check
NAME``), and Arena's own tests run them over every built-in plugin.

- every kind: the class registers and validates; each hyperparameter round-trips through
  ``-p NAME.KEY=VALUE`` into what is recorded;
- attacks: for every declared norm, targeted and untargeted as declared, the output has the
  input's shape and dtype, lies in [0, 1] and within eps; a query attack stays within its query
  budget; the model it is given is left as given (weights, eval mode, frozen weights) and never
  called in training mode; the same seed gives the same output;
- defenses: build and train on the host's context; the trained model maps the dataset's images
  to one logit per class; it is reloaded from the model cache rather than trained again; a
  model declared deterministic answers the same twice;
- generators: build and train on the host's context; samples have the dataset's shape, are
  finite and in [0, 1], and the same seed gives the same samples; a declared log-likelihood
  of images on the dataset's pixel grid is finite and at most 0 nats (a probability);
- datasets: the splits keep the dataset contract (dtype, shape, [0, 1], labels), pixels lie on
  the declared ``levels`` grid, every class is present, and loading twice gives the same data.
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

#: Images each attack check runs on, and the query budget per image it gets.
ATTACK_IMAGES = 8
QUERY_BUDGET = 500
#: The budgets attacks are checked under, per norm (for ``digits-tiny``'s 8x8 grey images).
EPS = {"linf": 0.2, "l2": 1.0}
SEED = 0
KINDS = ("attack", "defense", "generator", "dataset")


@dataclass(frozen=True)
class CheckResult:
    """One check of one plugin: what it checks, whether it passed, and (failed) what the
    contract is and how to fix the plugin."""

    check: str
    passed: bool
    message: str = ""


class ContractError(AssertionError):
    """A plugin breaks its contract; the message lists each failed check with how to fix it."""


def conformance(kind: str, cls: type, overrides: dict[str, Any] | None = None,
                home: str | Path | None = None) -> list[CheckResult]:
    """Every check of a plugin class of ``kind``, in order. ``overrides`` are hyperparameters to
    check it with (say, fewer epochs); ``home`` is where models trained for the checks are
    cached (default: a temporary folder, removed afterwards)."""
    if kind not in KINDS:
        raise ValueError(f"unknown plugin kind {kind!r}: use one of {', '.join(KINDS)}")
    results: list[CheckResult] = []
    with tempfile.TemporaryDirectory(prefix="arena-checks-") as temporary, _isolated():
        where = Path(home) if home is not None else Path(temporary)
        for result in _checks(kind, cls, dict(overrides or {}), where):
            results.append(result)
            if result.check == "registers" and not result.passed:
                break  # nothing else can run on a class the host refuses
    return results


@contextlib.contextmanager
def _isolated() -> Iterator[None]:
    """The checks leave the caller's random generators as they were, and put no model in a
    shared artifact store (``ARENA_ARTIFACTS``)."""
    import os

    import numpy
    import torch

    states = random.getstate(), numpy.random.get_state(), torch.get_rng_state()
    artifacts = os.environ.pop("ARENA_ARTIFACTS", None)
    try:
        yield
    finally:
        random.setstate(states[0])
        numpy.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if artifacts is not None:
            os.environ["ARENA_ARTIFACTS"] = artifacts


def require(results: list[CheckResult], name: str) -> list[CheckResult]:
    """Raise :class:`ContractError` listing every failed check of plugin ``name``."""
    failed = [r for r in results if not r.passed]
    if failed:
        lines = "\n".join(f"- {r.check}: {r.message}" for r in failed)
        raise ContractError(f"{name} fails {len(failed)} of {len(results)} conformance checks:\n{lines}")
    return results


# -- shared ----------------------------------------------------------------------------------


def _checks(kind: str, cls: type, overrides: dict[str, Any], home: Path) -> Iterator[CheckResult]:
    from .base import Plugin
    from .errors import ArenaError
    from .plugins import Registry, Source

    try:
        if not (isinstance(cls, type) and issubclass(cls, Plugin)):
            raise ArenaError(f"{cls!r} is not a plugin class")
        Registry().add(kind, cls, Source("checked", "0"))
    except ArenaError as exc:
        yield CheckResult("registers", False, f"{exc}. The host refuses the class at start-up: fix the class "
                                              "attributes and methods it names (see CONTRIBUTING, The plugin API).")
        return
    yield CheckResult("registers", True)
    hyperparameters = list(_hyperparameter_checks(cls))
    yield from hyperparameters
    try:
        plugin = cls.create(overrides)
    except ArenaError as exc:
        if all(r.passed for r in hyperparameters):  # else they said why already
            yield CheckResult("creates", False, f"{exc}: the class must build from its defaults plus the "
                                                f"overrides {overrides or {}}.")
        return
    yield from {"attack": _attack_checks, "defense": _model_checks, "generator": _model_checks,
                "dataset": _dataset_checks}[kind](cls, plugin, overrides, home)


def _hyperparameter_checks(cls: type) -> Iterator[CheckResult]:
    """Each hyperparameter, given on the command line as another valid value, is what the
    instance records."""
    from .cli.common import parse_params
    from .errors import ArenaError

    defaults = cls.parameter_defaults()
    try:
        recorded = cls.create().hyperparameters()
    except (ArenaError, AttributeError) as exc:
        yield CheckResult("hyperparameters recorded", False, f"{exc}. Each keyword argument of __init__ is a "
                          "hyperparameter: store it unchanged as self.<name> (the host records those values).")
        return
    json_defaults = json.loads(json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()}))
    if recorded != json_defaults:
        changed = sorted(k for k in defaults if recorded.get(k) != json_defaults.get(k))
        yield CheckResult("hyperparameters recorded", False, f"with no overrides the instance records {changed} "
                          f"as {[recorded.get(k) for k in changed]}, not the defaults "
                          f"{[json_defaults.get(k) for k in changed]}: store each argument unchanged as self.<name>.")
        return
    problems = []
    for key, candidates in _alternative_values(cls).items():
        for value in candidates:  # the first another hyperparameter's validate() accepts
            text = json.dumps(value)
            given = parse_params((f"{cls.name}.{key}={text}",))[cls.name]
            try:
                got = cls.create(given).hyperparameters().get(key)
            except ArenaError:
                continue
            if got != value:
                problems.append(f"-p {cls.name}.{key}={text} is recorded as {json.dumps(got)}")
            break
    if problems:
        yield CheckResult("hyperparameters round-trip", False, "; ".join(problems) + ". What a user sets with -p "
                          "must be what runs and what is recorded: store each __init__ argument unchanged as "
                          "self.<name>, and declare what it accepts in `bounds` rather than changing it.")
    else:
        yield CheckResult("hyperparameters round-trip", True)


def _alternative_values(cls: type) -> dict[str, list[Any]]:
    """For each hyperparameter, valid values other than its default (where some are evident)."""
    from .bounds import Choice

    bounds = cls.hyperparameter_bounds()
    values: dict[str, list[Any]] = {}
    for key, default in cls.parameter_defaults().items():
        bound = bounds.get(key)
        candidates: list[Any] = []
        if isinstance(default, (tuple, list)):
            candidates = [list(reversed(default))] if len(set(default)) > 1 else []
        elif isinstance(bound, Choice):
            candidates = [c for c in bound.values if c != default]
        elif isinstance(default, bool):
            candidates = [not default]
        elif isinstance(default, int):
            candidates = [default * 2, default + 1, default // 2, default - 1]
        elif isinstance(default, float):
            candidates = [default / 2, default * 2, default + 0.5]
        values[key] = [c for c in candidates if c != default and (bound is None or bound.check(key, c) is None)]
    return values


def _seed_everything(seed: int) -> None:
    import numpy
    import torch

    random.seed(seed)
    numpy.random.seed(seed)
    torch.manual_seed(seed)


def _tiny() -> Any:
    from arena_plugins.datasets.digits import DigitsTiny

    dataset = DigitsTiny()
    return dataset, dataset.load()


def _host(kind: str, cls: type, home: Path) -> Any:
    """A host whose registry holds the installed plugins (a wrapping defense needs the one it
    wraps) and, under its name, the class checked."""
    from .host import Host
    from .plugins import PluginInfo, Source, load_registry

    registry = load_registry()
    known = registry.plugins[kind].get(cls.name)
    if known is None or known.cls is not cls:
        registry.plugins[kind][cls.name] = PluginInfo(kind, cls.name, cls, Source("checked", "0"))
    return Host(registry, home)


def _failure(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


# -- attacks ---------------------------------------------------------------------------------


def _attack_checks(cls: type, attack: Any, overrides: dict[str, Any], home: Path) -> Iterator[CheckResult]:
    import torch

    from .judging import choose_targets
    from .models import build_classifier
    from .threat import ThreatModel

    dataset, splits = _tiny()
    x, y = splits.x_test[:ATTACK_IMAGES], splits.y_test[:ATTACK_IMAGES]
    torch.manual_seed(SEED)
    model = build_classifier("cnn", dataset.shape, dataset.classes)
    surrogates = {}
    for index, architecture in enumerate(attack.surrogate_architectures()):
        torch.manual_seed(SEED + 1 + index)
        surrogates[architecture] = build_classifier(architecture, dataset.shape, dataset.classes)
    modes = [m for m, ok in ((False, cls.supports_untargeted), (True, cls.supports_targeted)) if ok]
    for norm in cls.norms:
        for targeted in modes:
            threat = ThreatModel(norm, EPS[norm], targeted)
            target = choose_targets(y, dataset.classes, SEED) if targeted else None
            label = f"{norm} {'targeted' if targeted else 'untargeted'}"
            yield from _attack_mode(attack, model, surrogates, x, y, threat, target, label)


def _attack_mode(attack: Any, model: Any, surrogates: dict[str, Any], x: Any, y: Any, threat: Any, target: Any,
                 label: str) -> Iterator[CheckResult]:
    import torch

    from .errors import AccessError, QueryBudgetExceeded, RefusedResult
    from .host import freeze
    from .integrity import fingerprint, frozen_state_problems
    from .threat import check_adversarial

    outputs = []
    for attempt in range(2):  # each on fresh copies: what one run changes must not reach the other
        given = {"target": freeze(copy.deepcopy(model)),
                 **{name: freeze(copy.deepcopy(m)) for name, m in surrogates.items()}}
        prints = {name: fingerprint(m) for name, m in given.items()}
        in_training = _watch_training_calls(given.values())
        try:
            x_adv, oracle = _perturb(attack, given["target"], {name: given[name] for name in surrogates}, x, y,
                                     threat, target)
        except QueryBudgetExceeded as exc:
            yield CheckResult(f"query budget ({label})", False, f"{exc}. A query attack gets a budget of queries "
                              "per image: check `oracle.remaining()` before each query and stop where it is 0.")
            return
        except AccessError as exc:
            yield CheckResult(f"access ({label})", False, f"{exc}. Use only what the declared access level gives.")
            return
        except Exception as exc:  # the plugin's own error
            yield CheckResult(f"runs ({label})", False, f"perturb raised {_failure(exc)}.")
            return
        finally:
            for handle in in_training.handles:
                handle.remove()
        if attempt == 0:
            try:
                outputs.append(check_adversarial(x, x_adv, threat))
                yield CheckResult(f"stays in budget ({label})", True)
            except RefusedResult as exc:
                yield CheckResult(f"stays in budget ({label})", False, f"{exc}. Return a tensor of x's shape and "
                                  f"dtype within eps of x in the {threat.norm} norm and in [0, 1]: after each step, "
                                  "project onto the eps-ball (arena.project) and clamp to [0, 1].")
                return
            changed = [f"{name}: {problem}" for name, m in given.items()
                       for problem in frozen_state_problems(m, prints[name])]
            yield CheckResult(f"leaves the model as given ({label})", not changed,
                              "" if not changed else f"{'; '.join(changed)}. The host gives the model in eval mode "
                              "with frozen weights and judges with its own copy: never change its weights, mode "
                              "or requires_grad; take gradients with respect to the input only.")
            yield CheckResult(f"calls the model in eval mode ({label})", not in_training.seen,
                              "" if not in_training.seen else "the model was called in training mode (the attack "
                              "called .train() on it or on one of its modules): dropout and batch norm then answer "
                              "differently from the model being judged; leave the model in eval mode.")
            if oracle is not None:  # the oracle refuses a query past the budget (caught above)
                yield CheckResult(f"query budget ({label})", True)
        else:
            same = isinstance(x_adv, torch.Tensor) and torch.equal(outputs[0], x_adv.detach())
            yield CheckResult(f"same seed, same output ({label})", same, "" if same else
                              "two runs from the same seed gave different adversarial examples. The host seeds "
                              "Python's, NumPy's and torch's generators before each attack: draw randomness from "
                              "those (or a torch.Generator seeded from them), never from the clock or os.urandom.")


@dataclass
class _TrainingCalls:
    seen: bool
    handles: list[Any]


def _watch_training_calls(models: Any) -> _TrainingCalls:
    """Hooks that note any forward pass of a module in training mode."""
    watch = _TrainingCalls(False, [])

    def hook(module: Any, inputs: Any) -> None:
        if module.training:
            watch.seen = True

    for model in models:
        for module in model.modules():
            watch.handles.append(module.register_forward_pre_hook(hook))
    return watch


def _perturb(attack: Any, model: Any, surrogates: dict[str, Any], x: Any, y: Any, threat: Any,
             target: Any) -> tuple[Any, Any]:
    """The attack's output as the host's worker calls it (seeded, given its access level's
    object), and the oracle of a query attack."""
    from .access import LabelOracle, ScoreOracle, TransferAccess, WhiteBox
    from .levels import Access

    access = Access(attack.access)
    oracle = None
    if access == Access.WHITE_BOX:
        given: Any = WhiteBox(model)
    elif access == Access.SCORE_QUERY:
        given = oracle = ScoreOracle(model, len(x), QUERY_BUDGET)
    elif access == Access.LABEL_QUERY:
        given = oracle = LabelOracle(model, len(x), QUERY_BUDGET)
    else:
        given = TransferAccess({name: WhiteBox(m) for name, m in surrogates.items()})
    _seed_everything(SEED)
    return attack.perturb(given, x.clone(), y.clone(), threat, None if target is None else target.clone()), oracle


# -- defenses and generators -----------------------------------------------------------------


def _model_checks(cls: type, plugin: Any, overrides: dict[str, Any], home: Path) -> Iterator[CheckResult]:
    kind = cls.kind
    host = _host(kind, cls, home)
    info = host.registry.get(kind, cls.name)
    data = host.dataset("digits-tiny")
    try:
        built = host.plugin_model(info, overrides, data, SEED)
    except Exception as exc:
        yield CheckResult("trains", False, f"building or training on digits-tiny raised {_failure(exc)}. build() "
                          "returns an nn.Module for the dataset's shape; train() fits it in place on ctx.splits.")
        return
    yield CheckResult("trains", True)
    again = _host(kind, cls, home)
    try:
        reloaded = again.plugin_model(again.registry.get(kind, cls.name), overrides, again.dataset("digits-tiny"), SEED)
        cached = reloaded.cached and reloaded.sha256 == built.sha256
        why = "" if cached else "a second session trained it again instead of loading the checkpoint"
    except Exception as exc:
        cached, why = False, f"loading it again raised {_failure(exc)}"
    yield CheckResult("reloads from the cache", cached, "" if cached else f"{why}. The host saves the trained "
                      "model's state_dict and, next time, calls build() and loads it: everything the model needs "
                      "must be in its parameters and buffers, and build() must make the same architecture.")
    if kind == "defense":
        yield from _defense_outputs(cls, built.model, data)
    else:
        yield from _generator_outputs(plugin, built.model, data)


def _defense_outputs(cls: type, model: Any, data: Any) -> Iterator[CheckResult]:
    import torch

    x = data.splits.x_test[:32]
    with torch.no_grad():
        logits = model(x)
        shape_ok = isinstance(logits, torch.Tensor) and tuple(logits.shape) == (len(x), data.plugin.classes)
        yield CheckResult("one logit per class", shape_ok and bool(torch.isfinite(logits).all()), "" if shape_ok and
                          bool(torch.isfinite(logits).all()) else f"the model maps {tuple(x.shape)} images to "
                          f"{getattr(logits, 'shape', type(logits).__name__)}: it must return finite logits of shape "
                          f"(N, {data.plugin.classes}) for images in [0, 1].")
        if cls.deterministic and shape_ok:
            same = torch.equal(logits, model(x))
            yield CheckResult("deterministic as declared", same, "" if same else "two forward passes on the same "
                              "images differ: set `deterministic = False` on a randomized defense, so that it is "
                              "attacked and judged as one (EOT, majority vote).")


def _generator_outputs(generator: Any, model: Any, data: Any) -> Iterator[CheckResult]:
    import torch

    shape = data.plugin.shape
    draws = []
    for attempt in range(2):
        # The global generators differ between the draws; the `generator` given is the same.
        _seed_everything(SEED + 100 * attempt)
        with torch.no_grad():
            try:
                draws.append(generator.sample(model, 16, torch.Generator().manual_seed(SEED)))
            except Exception as exc:
                yield CheckResult("samples", False, f"sample() raised {_failure(exc)}.")
                return
    samples = draws[0]
    good = (isinstance(samples, torch.Tensor) and tuple(samples.shape) == (16, *shape)
            and samples.dtype == torch.float32 and bool(torch.isfinite(samples).all()))
    inside = good and float(samples.min()) >= 0 and float(samples.max()) <= 1
    what = (f"{samples.dtype} {tuple(samples.shape)} in [{float(samples.min()):.4g}, {float(samples.max()):.4g}]"
            if isinstance(samples, torch.Tensor) and samples.numel() else type(samples).__name__)
    yield CheckResult("samples in [0, 1] at the dataset's shape", inside, "" if inside else f"sample(model, 16, ...) "
                      f"returned {what}: it must return finite float32 images of shape (16, {', '.join(map(str, shape))}) "
                      "in [0, 1] (clamp, or squash with a sigmoid).")
    same = good and isinstance(draws[1], torch.Tensor) and torch.equal(samples, draws[1])
    yield CheckResult("same seed, same samples", same, "" if same else "two draws with identically seeded "
                      "generators differ: take every random number from the `generator` sample() is given.")
    if generator.likelihood is not None:
        x = data.splits.x_test[:16]
        try:
            with torch.no_grad():
                log_p = generator.log_likelihood(model, x)
        except Exception as exc:
            yield CheckResult("log-likelihood", False, f"log_likelihood() raised {_failure(exc)}.")
            return
        fine = isinstance(log_p, torch.Tensor) and tuple(log_p.shape) == (len(x),) and bool(torch.isfinite(log_p).all())
        proper = fine and float(log_p.max()) <= 1e-4
        detail = f"max {float(log_p.max()):.4g} nats" if fine else f"{getattr(log_p, 'shape', type(log_p).__name__)}"
        yield CheckResult("log-likelihood is a probability", proper, "" if proper else f"log_likelihood() on "
                          f"{len(x)} test images gave {detail}: on images of the dataset's {data.plugin.levels} pixel "
                          "levels it must be the log of a probability (of the discrete image) in nats, one finite "
                          "value <= 0 per image; a density of continuous pixels is not one (integrate over each "
                          "pixel's bin, or dequantize).")


# -- datasets --------------------------------------------------------------------------------


def _dataset_checks(cls: type, dataset: Any, overrides: dict[str, Any], home: Path) -> Iterator[CheckResult]:
    from .errors import ArenaError

    try:
        splits = dataset.load()
        dataset.check_splits(splits)
    except ArenaError as exc:
        yield CheckResult("splits", False, f"{exc}.")
        return
    except Exception as exc:
        yield CheckResult("splits", False, f"load() raised {_failure(exc)}.")
        return
    yield CheckResult("splits", True)
    levels = cls.levels - 1
    off = max(float((x * levels - (x * levels).round()).abs().max()) if x.numel() else 0.0
              for x in (splits.x_train, splits.x_test))
    yield CheckResult("pixels on the levels grid", off <= 1e-4, "" if off <= 1e-4 else f"pixels lie up to "
                      f"{off:.3g} levels off the grid k/{levels} that `levels = {cls.levels}` declares: set `levels` "
                      "to the number of distinct pixel values (256 for 8-bit images) and scale them by 1/(levels-1).")
    missing = [c for c in range(cls.classes) for y in (splits.y_train, splits.y_test) if not bool((y == c).any())]
    yield CheckResult("every class present", not missing, "" if not missing else f"classes {sorted(set(missing))} "
                      f"have no images in a split; `classes = {cls.classes}` must count only classes present.")
    try:
        again = dataset.load()
        same = again.content_hash() == splits.content_hash()
    except Exception:
        same = False
    yield CheckResult("loads the same data", same, "" if same else "two calls of load() gave different tensors: "
                      "the dataset's content hash is part of every result's identity; fix the split (a seeded "
                      "shuffle) and the order.")


def check(kind: str, cls: type, overrides: dict[str, Any] | None = None,
          home: str | Path | None = None) -> list[CheckResult]:
    """:func:`conformance`, raising :class:`ContractError` if any check fails."""
    return require(conformance(kind, cls, overrides, home), f"{kind} {getattr(cls, 'name', cls)!r}")


def checker(kind: str) -> Callable[..., list[CheckResult]]:
    def run(cls: type, overrides: dict[str, Any] | None = None, home: str | Path | None = None) -> list[CheckResult]:
        return check(kind, cls, overrides, home)

    run.__name__ = f"check_{kind}"
    run.__doc__ = (f"Run every conformance check of a {kind} plugin class; raise ContractError naming each "
                   "failed check, what the contract is and how to fix it. Returns the results.")
    return run


# -- what was checked --------------------------------------------------------------------------


class RecordedChecks:
    """The outcome of the last ``arena plugins check`` of each plugin, kept in
    ``$ARENA_HOME/checks.json`` with the package version and code hash it was run on: a plugin
    whose code changed since counts as not checked."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            loaded = json.loads(path.read_text())
        except (OSError, ValueError):
            loaded = {}
        self.entries: dict[str, Any] = loaded if isinstance(loaded, dict) else {}

    @staticmethod
    def _key(info: Any) -> str:
        return f"{info.kind}:{info.name}"

    def status(self, info: Any) -> str:
        """``passed``, ``failed`` or ``not run`` (never, or on other code than is installed)."""
        entry = self.entries.get(self._key(info))
        if not isinstance(entry, dict):
            return "not run"
        same = (entry.get("package"), entry.get("version"), entry.get("code_sha256")) == (
            info.source.package, info.source.version, info.code_sha256)
        if not same:
            return "not run"
        return "passed" if entry.get("passed") is True else "failed"

    def record(self, info: Any, results: list[CheckResult]) -> None:
        from datetime import datetime, timezone

        from .cache import atomic_write

        self.entries[self._key(info)] = {
            "package": info.source.package, "version": info.source.version, "code_sha256": info.code_sha256,
            "passed": all(r.passed for r in results), "failed": [r.check for r in results if not r.passed],
            "checked_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        text = json.dumps(self.entries, indent=2, sort_keys=True)
        atomic_write(self.path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))


def recorded_checks() -> RecordedChecks:
    from .config import home

    return RecordedChecks(home() / "checks.json")
