"""Hyperparameters are checked before any work: declared bounds, the ``validate`` hook, and
``-p`` naming a plugin of the run. A refused value is one line on stderr, exit code 1, no
dataset loaded, no model trained and nothing stored."""

from __future__ import annotations

import json
import math

import pytest

import arena
from arena.errors import InvalidInputError, PluginError
from arena.models import ARCHITECTURES
from arena.training import TRAINING_BOUNDS
from arena.plugins import Source, load_registry, set_registry
from arena.host import Host


class DeepFool(arena.Attack):
    """A stand-in whose name is near a misspelt one; never run."""

    name = "deepfool"
    access = arena.Access.WHITE_BOX
    norms = ("linf",)
    bounds = {"steps": arena.Range(1)}

    def __init__(self, steps: int = 50):
        self.steps = steps

    def perturb(self, access, x, y, threat, target=None):
        return x


class Scaled(arena.Attack):
    """Steps by ``scale`` (None: ten times the dataset's eps, which is too much on digits)."""

    name = "scaled"
    access = arena.Access.WHITE_BOX
    norms = ("linf",)
    bounds = {"scale": arena.Range(0, 1, low_inclusive=False)}

    def __init__(self, scale: float | None = None, first: int = 1, last: int = 2):
        self.scale = scale
        self.first = first
        self.last = last

    def resolve(self, dataset):
        if self.scale is None:
            self.scale = 10 * dataset.default_threat.eps

    def validate(self):
        if self.first > self.last:
            raise arena.ArenaError(f"first={self.first} is after last={self.last}")

    def perturb(self, access, x, y, threat, target=None):
        return x


class _Fixtures:
    @staticmethod
    @arena.hookimpl
    def register_attacks(register):
        register(DeepFool)
        register(Scaled)


def _install_fixtures() -> None:
    set_registry(load_registry(extra=[(_Fixtures(), Source("arena-hyperparameter-fixtures", "0.1"))]))


@pytest.fixture
def no_work(tmp_path, monkeypatch):
    """A fresh ARENA_HOME, and a dataset loader that records every load."""
    home = tmp_path / "home"
    monkeypatch.setenv("ARENA_HOME", str(home))
    loads = []
    original = Host.dataset

    def dataset(self, name):
        loads.append(name)
        return original(self, name)

    monkeypatch.setattr(Host, "dataset", dataset)
    return home, loads


def _refused(arena, args, message):
    result = arena(*args)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert json.loads(arena("results", "--json", "--all").stdout) == []
    return lines[0]


@pytest.mark.parametrize(
    "params, message",
    [
        (["-p", "standard.epochs=0"], "defense 'standard': epochs=0 is below the minimum 1"),
        (["-p", "standard.batch_size=0"], "defense 'standard': batch_size=0 is below the minimum 1"),
        (["-p", "standard.architecture=nosuch"],
         f"defense 'standard': architecture='nosuch' is not one of {', '.join(ARCHITECTURES)}"),
        (["-p", "standard.lr=0"], "defense 'standard': lr=0 is not above 0"),
        (["-p", "standard.epochs=abc"], "defense 'standard': epochs='abc' is not a whole number"),
        (["-p", "fgsm.steps=3"], "attack 'fgsm' has no hyperparameter 'steps'"),
        (["-p", "deepfol.steps=3"], "-p deepfol.steps: no attack, defense or generator is named 'deepfol'"),
        (["-p", "pgd.steps=3"], "-p pgd.steps: attack 'pgd' is not part of this run"),
        (["-p", "vae.epochs=3"], "-p vae.epochs: generator 'vae' is not part of this run"),
        (["-p", "advtrain.alpha=0.3"], "-p advtrain.alpha: defense 'advtrain' is not part of this run"),
        (["-p", "digits.size=3"], "-p digits.size: 'digits' is a dataset"),
        (["-p", "fgms.steps=3"], "did you mean 'fgsm'?"),
        (["-p", "standard.recipe=rice2020"], "defense 'standard': recipe='rice2020' is not one of arena, zagoruyko2016"),
        (["-p", "standard.optimizer=sgd", "-p", "standard.momentum=0", "-p", "standard.nesterov=true"],
         "defense 'standard': nesterov=true needs optimizer=sgd with momentum above 0 (got optimizer=sgd, momentum=0)"),
        (["-p", "standard.augment=flip"], "defense 'standard': augment='flip' is not one of none, crop, crop-flip"),
        (["-p", "standard.milestones=[0.75,0.5]"], "defense 'standard': milestones=[0.75, 0.5]: give increasing fractions"),
        (["-p", "standard.amp=fp8"], "defense 'standard': amp='fp8' is not one of off, bf16, fp16"),
    ],
)
def test_a_bad_parameter_of_a_standard_run_is_refused_before_any_work(arena, no_work, params, message):
    home, loads = no_work
    _refused(arena, ["run", "-a", "fgsm", "-d", "standard", *params], message)
    assert loads == []
    assert not any(home.rglob("*.safetensors")) and not any(home.rglob("*.json"))


@pytest.mark.parametrize(
    "value, message",
    [
        ("eps=abc", "defense 'advtrain': eps='abc' is not a number in (0, 1]"),
        ("eps=1.5", "defense 'advtrain': eps=1.5 is above the maximum 1 (accepted: (0, 1])"),
        ("lr=-1", "defense 'advtrain': lr=-1 is not above 0"),
        ("alpha=2", "defense 'advtrain': alpha=2 is above the maximum 1 (accepted: [0, 1])"),
        ("architecture=mpl", "architecture='mpl' is not one of cnn, mlp, lenet, resnet, preact-resnet18, wrn-28-10, wrn-34-10 or "
         "wrn-DEPTH-WIDTH; did you mean 'mlp'?"),
        ("architecture=wrn-27-10", "architecture='wrn-27-10' is not a WideResNet the host builds (WideResNet depth 27 and "
         "width 10: the depth must be 6n + 4"),
    ],
)
def test_advtrain_values_are_refused_before_any_work(arena, no_work, value, message):
    home, loads = no_work
    _refused(arena, ["run", "-a", "fgsm", "-d", "advtrain", "-p", f"advtrain.{value}"], message)
    assert loads == []


def test_a_misspelt_plugin_name_suggests_the_near_one(arena, no_work):
    _install_fixtures()
    _refused(arena, ["run", "-a", "fgsm", "-d", "standard", "-p", "deepfol.steps=3"],
             "no attack, defense or generator is named 'deepfol'; did you mean 'deepfool'?")
    _refused(arena, ["run", "-a", "fgsm", "-d", "standard", "-p", "deepfool.steps=3"],
             "attack 'deepfool' is not part of this run (this run's plugins: fgsm, standard): add -a deepfool")
    assert no_work[1] == []


def test_generator_parameters_are_refused_before_any_work(arena, no_work):
    _refused(arena, ["run", "-g", "vae", "-p", "vae.lr=0"], "generator 'vae': lr=0 is not above 0")
    _refused(arena, ["run", "-g", "vae", "-p", "pixelcnn.epochs=1"], "generator 'pixelcnn' is not part of this run")
    _refused(arena, ["run", "-g", "image-transformer", "-p", "image-transformer.heads=3"],
             "generator 'image-transformer': dim=64 is not a multiple of 4 and of heads=3")
    # The generator track of a combined run is checked before the robustness track starts.
    _refused(arena, ["run", "-a", "fgsm", "-d", "standard", "-g", "vae", "-p", "vae.batch_size=0"],
             "generator 'vae': batch_size=0 is below the minimum 1")
    assert no_work[1] == []


def test_a_value_the_dataset_decides_is_checked_once_resolved(arena, no_work):
    """``scale`` defaults to None; the value digits gives it is out of bounds: refused after the
    dataset is loaded and before any model is trained."""
    home, loads = no_work
    _install_fixtures()
    _refused(arena, ["run", "-a", "scaled", "-d", "standard"], "attack 'scaled': scale=2 is above the maximum 1")
    assert loads == ["digits"] and not any(home.rglob("*.safetensors"))
    _refused(arena, ["run", "-a", "scaled", "-d", "standard", "-p", "scaled.first=3"],
             "attack 'scaled': first=3 is after last=2")


# -- the bounds themselves --------------------------------------------------------------------


def test_range_accepts_its_interval_and_names_what_it_refuses():
    at_least_one = arena.Range(1)
    assert at_least_one.check("epochs", 1) is None and at_least_one.check("epochs", 10**6) is None
    assert at_least_one.check("epochs", 0) == "epochs=0 is below the minimum 1"
    positive = arena.Range(0, low_inclusive=False)
    assert positive.check("lr", 1e-9) is None
    assert positive.check("lr", 0.0) == "lr=0 is not above 0"
    assert positive.check("lr", -1.5) == "lr=-1.5 is not above 0"
    fraction = arena.Range(0, 1, low_inclusive=False)
    assert fraction.check("p", 1) is None and fraction.check("p", 0.5) is None
    assert fraction.check("p", 0) == "p=0 is not above 0 (accepted: (0, 1])"
    assert fraction.check("p", 1.01) == "p=1.01 is above the maximum 1 (accepted: (0, 1])"
    half_open = arena.Range(0, 1, high_inclusive=False)
    assert half_open.check("p", 0) is None
    assert half_open.check("p", 1) == "p=1 is not below 1 (accepted: [0, 1))"
    assert arena.Range(high=5).check("x", -100) is None
    assert arena.Range(high=5).check("x", 6) == "x=6 is above the maximum 5"


def test_range_refuses_what_is_not_a_finite_number():
    bound = arena.Range(0, 1)
    assert bound.check("eps", "abc") == "eps='abc' is not a number in [0, 1]"
    assert bound.check("eps", None) == "eps=null is not a number in [0, 1]"
    assert bound.check("eps", True) == "eps=true is not a number in [0, 1]"
    assert bound.check("eps", math.nan) is not None and bound.check("eps", math.inf) is not None
    assert arena.Range(1).check("steps", "x") == "steps='x' is not a number in [1, inf)"


def test_range_is_checked_when_declared():
    with pytest.raises(ValueError):
        arena.Range(2, 1)
    with pytest.raises(TypeError):
        arena.Range("0")


def test_choice_accepts_its_values_only():
    bound = arena.Choice(ARCHITECTURES)  # a mapping gives its keys
    assert bound.values == tuple(ARCHITECTURES)
    assert bound.check("architecture", "mlp") is None
    assert bound.check("architecture", "nosuch") == "architecture='nosuch' is not one of cnn, mlp, lenet, resnet, preact-resnet18, wrn-28-10, wrn-34-10"
    assert bound.check("architecture", "lenett").endswith("; did you mean 'lenet'?")
    assert arena.Choice((1, 2, 4)).check("bits", 3) == "bits=3 is not one of 1, 2, 4"
    assert arena.Choice((1, 2)).check("bits", True) is not None  # True == 1, but is not a choice
    with pytest.raises(ValueError):
        arena.Choice(())


def test_an_architecture_is_a_named_one_or_any_wide_resnet_the_host_builds():
    bound = TRAINING_BOUNDS["architecture"]
    assert bound.check("architecture", "wrn-10-1") is None and bound.check("architecture", "wrn-16-4") is None
    assert bound.check("architecture", "preact-resnet18") is None
    assert bound.check("architecture", "wrn-12-1").startswith("architecture='wrn-12-1' is not a WideResNet the host builds")
    assert bound.check("architecture", "wrn-10-0") is not None
    assert bound.check("architecture", "resnt").endswith("or wrn-DEPTH-WIDTH; did you mean 'resnet'?")
    assert load_registry().get("defense", "standard").create({"architecture": "wrn-10-1"}).architecture == "wrn-10-1"


def test_a_tuple_is_checked_element_by_element():
    bound = arena.Choice(("cnn", "mlp"))
    assert bound.check("surrogates", ("cnn", "mlp", "cnn")) is None
    assert bound.check("surrogates", ("cnn", "vgg")) == "surrogates=['cnn', 'vgg']: 'vgg' is not one of cnn, mlp"


# -- the contract for plugin classes ----------------------------------------------------------


def _attack(bounds, **defaults):
    params = ", ".join(f"{name}={value!r}" for name, value in defaults.items())
    namespace = {}
    exec(f"def __init__(self, {params}):\n" + "".join(f"    self.{n} = {n}\n" for n in defaults), namespace)
    return type("Fixture", (arena.Attack,), {
        "name": "fixture", "access": arena.Access.WHITE_BOX, "norms": ("linf",), "bounds": bounds,
        "__init__": namespace["__init__"], "perturb": lambda self, access, x, y, threat, target=None: x,
    })


def test_create_checks_bounds_before_init_and_validate_after():
    calls = []
    cls = _attack({"steps": arena.Range(1)}, steps=10)
    original = cls.__init__
    cls.__init__ = lambda self, steps=10: (calls.append(steps), original(self, steps))[1]
    with pytest.raises(InvalidInputError, match=r"^attack 'fixture': steps=0 is below the minimum 1$"):
        cls.create({"steps": 0})
    assert calls == []  # refused before __init__ ran
    assert cls.create({"steps": 3}).steps == 3

    def validate(self):
        raise arena.ArenaError("steps must be odd")

    cls.validate = lambda self: None if self.steps % 2 else validate(self)
    with pytest.raises(InvalidInputError, match=r"^attack 'fixture': steps must be odd$"):
        cls.create({"steps": 4})


def test_a_class_with_bad_bounds_is_refused_at_registration():
    with pytest.raises(PluginError, match="bounds names 'step', which is not a hyperparameter"):
        _attack({"step": arena.Range(1)}, steps=10).validate_class()
    with pytest.raises(PluginError, match=r"bounds\['steps'\] is .*, not an arena.Range or arena.Choice"):
        _attack({"steps": (1, None)}, steps=10).validate_class()
    with pytest.raises(PluginError, match="the default steps=0 is below the minimum 1"):
        _attack({"steps": arena.Range(1)}, steps=0).validate_class()
    _attack({"eps": arena.Range(0, 1)}, eps=None).validate_class()  # None: the dataset decides


def test_a_subclass_inherits_the_bounds_of_its_own_hyperparameters():
    registry = load_registry()
    bim = registry.get("attack", "bim").cls
    assert set(bim.hyperparameter_bounds()) == {"steps", "step_size"}  # PGD's, less restarts
    assert set(registry.get("defense", "advtrain").cls.hyperparameter_bounds()) >= {"eps", "epochs", "alpha"}


def test_plugins_lists_what_each_hyperparameter_accepts(arena):
    listed = {(p["kind"], p["name"]): p for p in arena.json("plugins", "--json")["plugins"]}
    assert listed[("defense", "standard")]["bounds"] == {
        "recipe": "one of arena, zagoruyko2016",
        "architecture": "one of cnn, mlp, lenet, resnet, preact-resnet18, wrn-28-10, wrn-34-10 or wrn-DEPTH-WIDTH",
        "epochs": "a number in [1, inf)",
        "lr": "a number in (0, inf)", "batch_size": "a number in [1, inf)",
        "lr_schedule": "one of constant, cyclic, piecewise, cosine", "optimizer": "one of adam, sgd",
        "momentum": "a number in [0, 1)", "weight_decay": "a number in [0, inf)", "milestones": "a number in (0, 1)",
        "lr_decay": "a number in (0, 1]", "augment": "one of none, crop, crop-flip", "amp": "one of off, bf16, fp16"}
    assert listed[("attack", "fgsm")]["bounds"] == {}


def test_every_builtin_plugin_bounds_every_hyperparameter_but_its_switches():
    registry = load_registry()
    assert registry.problems == []  # every default lies within its bounds
    for info in registry.all():
        if not info.source.builtin:
            continue
        defaults = info.cls.parameter_defaults()
        switches = {name for name, value in defaults.items() if isinstance(value, bool)}
        assert set(info.cls.hyperparameter_bounds()) == set(defaults) - switches, info.name
