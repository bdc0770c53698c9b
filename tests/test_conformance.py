"""The conformance checks of arena.testing: every built-in plugin passes them, and each broken
plugin fails exactly the check for the promise it breaks, with a message saying how to fix it."""

from __future__ import annotations

import json

import pytest

from arena.plugins import get_registry
from arena.testing import ContractError, check_attack, check_dataset, check_defense, check_generator, conformance

from . import contract_breakers as broken

#: Fewer steps and epochs than the defaults: the checks test the contract, not the strength.
FAST = {"apgd": {"iterations": 10}, "apgd-t": {"iterations": 10, "target_classes": 2},
        "fab": {"iterations": 10, "target_classes": 2}, "pgd": {"steps": 5}, "hopskipjump": {"max_evals": 300, "init_evals": 20},
        "ensemble-transfer": {"steps": 2}, "transfer": {"steps": 2}}
CHECKERS = {"attack": check_attack, "defense": check_defense, "generator": check_generator, "dataset": check_dataset}


#: Datasets read from official files this machine does not have: tests/test_data.py checks them
#: on files it writes in their formats.
OFFICIAL_FILES = {"mnist", "fashion-mnist", "cifar10", "svhn"}


def _builtins() -> list[tuple[str, str]]:
    registry = get_registry()
    return [(kind, name) for kind in CHECKERS for name in registry.names(kind)
            if registry.get(kind, name).source.builtin and not (kind == "dataset" and name in OFFICIAL_FILES)
            and (kind, name) != ("defense", "external")]  # needs your checkpoint: tests/test_external.py


@pytest.mark.parametrize(("kind", "name"), _builtins())
def test_every_builtin_plugin_keeps_its_contract(kind, name, tmp_path):
    cls = get_registry().get(kind, name).cls
    overrides = dict(FAST.get(name, {}))
    if "epochs" in cls.parameter_defaults():
        overrides["epochs"] = 1
    results = CHECKERS[kind](cls, overrides, home=tmp_path)
    assert results and all(r.passed for r in results)
    if kind == "attack":  # every declared norm and mode was exercised
        modes = int(cls.supports_untargeted) + int(cls.supports_targeted)
        assert sum(r.check.startswith("stays in budget") for r in results) == len(cls.norms) * modes


def _failed(kind: str, cls: type, **overrides) -> dict[str, str]:
    with pytest.raises(ContractError) as raised:
        CHECKERS[kind](cls, overrides)
    results = conformance(kind, cls, overrides)
    failed = {r.check: r.message for r in results if not r.passed}
    for check in failed:
        assert f"- {check}: " in str(raised.value)
    return failed


def test_an_attack_that_leaves_the_eps_ball():
    failed = _failed("attack", broken.LeavesTheBall)
    assert set(failed) == {"stays in budget (linf untargeted)", "stays in budget (linf targeted)"}
    assert "above eps 0.2" in failed["stays in budget (linf untargeted)"]
    assert "project onto the eps-ball (arena.project)" in failed["stays in budget (linf untargeted)"]


def test_an_attack_that_changes_the_models_weights():
    failed = _failed("attack", broken.ChangesTheWeights)
    assert set(failed) == {"leaves the model as given (linf untargeted)", "leaves the model as given (linf targeted)"}
    assert "weights or buffers differ" in failed["leaves the model as given (linf untargeted)"]


def test_an_attack_that_calls_the_model_in_train_mode():
    failed = _failed("attack", broken.TrainMode)
    assert set(failed) == {"calls the model in eval mode (linf untargeted)", "calls the model in eval mode (linf targeted)"}
    assert "leave the model in eval mode" in failed["calls the model in eval mode (linf targeted)"]


def test_a_query_attack_that_exceeds_its_budget():
    failed = _failed("attack", broken.Greedy)
    assert set(failed) == {"query budget (linf untargeted)"}
    assert "check `oracle.remaining()` before each query" in failed["query budget (linf untargeted)"]


def test_an_attack_that_is_not_reproducible_under_a_fixed_seed():
    failed = _failed("attack", broken.Unseeded)
    assert set(failed) == {"same seed, same output (linf untargeted)", "same seed, same output (linf targeted)"}
    assert "never from the clock or os.urandom" in failed["same seed, same output (linf untargeted)"]


def test_a_defense_whose_hyperparameter_is_not_recorded():
    failed = _failed("defense", broken.Forgetful)
    assert set(failed) == {"hyperparameters recorded"}
    assert "'lr'" in failed["hyperparameters recorded"]
    assert "store it unchanged as self.<name>" in failed["hyperparameters recorded"]


def test_a_generator_with_samples_outside_the_unit_interval():
    failed = _failed("generator", broken.OutOfRange)
    assert set(failed) == {"samples in [0, 1] at the dataset's shape"}
    assert "must return finite float32 images of shape (16, 1, 8, 8) in [0, 1]" in next(iter(failed.values()))


def test_a_generator_with_a_log_likelihood_above_zero():
    failed = _failed("generator", broken.Overconfident)
    assert set(failed) == {"log-likelihood is a probability"}
    assert "gave max 5 nats" in failed["log-likelihood is a probability"]


def test_a_correct_generator_of_the_same_family_passes(tmp_path):
    assert all(r.passed for r in check_generator(broken._Independent, home=tmp_path))


def test_a_dataset_off_its_declared_pixel_grid():
    failed = _failed("dataset", broken.OffTheGrid)
    assert set(failed) == {"pixels on the levels grid"}
    assert "set `levels` to the number of distinct pixel values" in failed["pixels on the levels grid"]


def test_a_class_the_host_refuses_stops_at_registration():
    class Nameless(broken._Step):
        name = "Not A Name"

    (result,) = conformance("attack", Nameless)
    assert result.check == "registers" and not result.passed and "needs a class attribute `name`" in result.message


def test_plugins_check_reports_and_arena_plugins_marks_a_failing_third_party_plugin(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import arena
    from arena.cli import cli
    from arena.plugins import Source, load_registry, set_registry

    class Package:
        @staticmethod
        @arena.hookimpl
        def register_attacks(register):
            register(broken.LeavesTheBall)
            register(broken._Step)

    monkeypatch.setenv("ARENA_HOME", str(tmp_path / "home"))
    set_registry(load_registry(extra=[(Package(), Source("arena-breakers", "1.0", "breakers"))]))
    listed = CliRunner().invoke(cli, ["plugins"]).stdout
    assert "not run: arena plugins check leaves-the-ball" in listed and "not run: arena plugins check step" in listed

    checked = CliRunner().invoke(cli, ["plugins", "check", "leaves-the-ball", "step"])
    assert checked.exit_code == 1
    rows = [line for line in checked.stdout.splitlines() if "stays in budget (linf untargeted)" in line]
    assert len(rows) == 2 and "FAILED" in rows[0] and "passed" in rows[1]
    assert "1 plugin of 2 failed" in checked.stdout
    listed = CliRunner().invoke(cli, ["plugins"]).stdout
    assert "FAILED: arena plugins check leaves-the-ball" in listed and "not run: arena plugins check step" not in listed
    as_json = CliRunner().invoke(cli, ["plugins", "check", "attack:step", "--json"])
    assert as_json.exit_code == 0 and all(c["passed"] for c in json.loads(as_json.stdout)[0]["checks"])

    unknown = CliRunner().invoke(cli, ["plugins", "check", "nothing"])
    assert unknown.exit_code == 1 and "no plugin named 'nothing' is installed" in unknown.stderr


def test_a_generator_that_ignores_the_generator_it_is_given():
    failed = _failed("generator", broken.IgnoresItsGenerator)
    assert set(failed) == {"same seed, same samples"}
    assert "take every random number from the `generator` sample() is given" in failed["same seed, same samples"]


def test_the_checks_leave_the_callers_random_state_as_it_was():
    import torch

    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    check_attack(get_registry().get("attack", "fgsm").cls)
    assert torch.equal(torch.rand(3), expected)
