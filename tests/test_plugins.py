"""The plugin host: entry points, third-party packages, broken ones, validation and access."""

from __future__ import annotations

import json

import pytest
import torch

import arena
from arena import Access, AccessError, QueryBudgetExceeded, ThreatModel
from arena.access import LabelOracle, ScoreOracle, TransferAccess, WhiteBox
from arena.errors import PluginError, UnknownPluginError
from arena.plugins import Source, load_registry, set_registry

from .conftest import FIXTURES, pip_install_target, run_arena


@pytest.fixture(scope="session")
def third_party(tmp_path_factory):
    """The fixture packages arena-hello (works) and arena-broken (fails to import), pip-installed
    into a folder that subprocesses get on PYTHONPATH."""
    target = tmp_path_factory.mktemp("site")
    pip_install_target(FIXTURES / "arena-hello", target)
    pip_install_target(FIXTURES / "arena-broken", target)
    return target


def test_third_party_plugin_is_listed_and_runs(third_party, tmp_path):
    listed = run_arena("plugins", "--json", pythonpath=third_party)
    assert listed.returncode == 0, listed.stderr
    payload = json.loads(listed.stdout)
    hello = next(p for p in payload["plugins"] if p["name"] == "corner-noise")
    assert (hello["kind"], hello["package"], hello["version"], hello["builtin"]) == ("attack", "arena-hello", "1.2.3", False)
    assert hello["capabilities"]["access"] == "zero-query"
    # The broken package is reported with its name, version and error; the rest still loads.
    (problem,) = payload["problems"]
    assert problem["package"] == "arena-broken" and problem["version"] == "0.0.1"
    assert "arena_dependency_that_is_not_installed" in problem["error"]
    assert {"fgsm", "advtrain", "digits"} <= {p["name"] for p in payload["plugins"]}

    db = f"sqlite:///{tmp_path / 'r.db'}"
    ran = run_arena("run", "--attack", "corner-noise", "--defense", "standard", "--n", "60", "--db", db,
                    pythonpath=third_party)
    assert ran.returncode == 0, ran.stderr
    assert "plugin not loaded: arena-broken 0.0.1" in ran.stderr
    rows = json.loads(run_arena("results", "--json", "--db", db, pythonpath=third_party).stdout)
    assert rows[0]["attack_package"] == "arena-hello" and rows[0]["attack_version"] == "1.2.3"
    assert rows[0]["attack_access"] == "zero-query" and rows[0]["status"] == "ok"
    assert rows[0]["robust_accuracy"] <= rows[0]["clean_accuracy"]
    assert rows[0]["install"] == "pip install arena-hello==1.2.3"

    # The leaderboard names the package behind a third-party plugin, never behind Arena's own.
    board = run_arena("leaderboard", "--db", db, pythonpath=third_party)
    assert board.returncode == 0, board.stderr
    assert "corner-noise (arena-hello 1.2.3)" in board.stdout and "arena-bench" not in board.stdout
    markdown = run_arena("leaderboard", "--format", "md", "--db", db, pythonpath=third_party).stdout
    assert "| corner-noise (arena-hello 1.2.3) |" in markdown and "arena-bench" not in markdown
    # ... and what to install before the reproduce command: a note, and each run's own line.
    assert "install them before the commands: pip install arena-hello==1.2.3_" in markdown
    (run,) = [line for line in markdown.splitlines() if "arena run -a corner-noise" in line]
    assert "| pip install arena-hello==1.2.3 | arena run -a corner-noise -d standard " in run


def test_arena_load_plugins_selects_third_party_packages(third_party):
    none = json.loads(run_arena("plugins", "--json", pythonpath=third_party, env={"ARENA_LOAD_PLUGINS": ""}).stdout)
    assert {p["package"] for p in none["plugins"]} == {"arena-bench"} and none["problems"] == []
    hello = json.loads(run_arena("plugins", "--json", pythonpath=third_party,
                                 env={"ARENA_LOAD_PLUGINS": "arena-hello"}).stdout)
    assert "corner-noise" in {p["name"] for p in hello["plugins"]} and hello["problems"] == []


def test_arena_load_plugins_naming_no_package_is_warned_of(third_party, tmp_path):
    def plugins(selection):
        return run_arena("plugins", "--json", pythonpath=third_party, env={"ARENA_LOAD_PLUGINS": selection})

    typo = plugins("arena-helo")
    assert typo.returncode == 0 and "corner-noise" not in typo.stdout
    assert ("warning: ARENA_LOAD_PLUGINS names 'arena-helo', which is no installed plugin package: did you mean "
            "arena-hello?") in typo.stderr
    entry_point = plugins("hello")
    assert ("ARENA_LOAD_PLUGINS names 'hello', which is no installed plugin package: it is the entry-point name "
            "of arena-hello: ARENA_LOAD_PLUGINS takes package names") in entry_point.stderr
    # Names that match an installed package (in any spelling), and Arena's own, are not warned of.
    for selection in ("arena_hello", "Arena-Hello,arena-bench", ""):
        assert "warning" not in plugins(selection).stderr, selection

    # A plugin the selection left out is unknown: the error says the variable limits what is loaded.
    ran = run_arena("run", "-a", "corner-noise", "-d", "standard", "--db", str(tmp_path / "r.db"),
                    pythonpath=third_party, env={"ARENA_LOAD_PLUGINS": "hello"})
    assert ran.returncode == 1
    *warnings, error = [line for line in ran.stderr.splitlines() if line.strip()]
    assert warnings == ["warning: ARENA_LOAD_PLUGINS names 'hello', which is no installed plugin package: it is the "
                        "entry-point name of arena-hello: ARENA_LOAD_PLUGINS takes package names"]
    assert error.startswith("Error: unknown attack 'corner-noise': ")
    assert error.endswith("; ARENA_LOAD_PLUGINS='hello' limits the third-party packages loaded; not loaded: "
                          "arena-broken 0.0.1, arena-hello 1.2.3 (unset it to load every installed package)")
    # Without the variable, the same error says nothing of it.
    unknown = run_arena("run", "-a", "deepfool", "-d", "standard", "--db", str(tmp_path / "r.db"),
                        pythonpath=third_party)
    assert unknown.returncode == 1 and "ARENA_LOAD_PLUGINS" not in unknown.stderr


class _Good(arena.Attack):
    """A valid attack."""

    name = "good"

    def perturb(self, access, x, y, threat, target=None):
        return x


def _plugin(**hooks):
    return type("Plugin", (), {k: staticmethod(arena.hookimpl(v, specname=k)) for k, v in hooks.items()})()


def test_duplicate_names_are_an_error_naming_both_packages():
    class Copy(_Good):
        """Same name, other package."""

    first = _plugin(register_attacks=lambda register: register(_Good))
    second = _plugin(register_attacks=lambda register: register(Copy))
    registry = load_registry(extra=[(first, Source("arena-one", "1.0")), (second, Source("arena-two", "2.0"))])
    with pytest.raises(PluginError, match="registered by both arena-one 1.0 and arena-two 2.0"):
        registry.get("attack", "good")
    assert any("duplicates" in p.error for p in registry.problems)


def test_misspelt_hook_is_reported_not_silently_ignored():
    class Typo:
        @arena.hookimpl
        def register_atacks(self, register):  # noqa: D401 - the typo is the point
            register(_Good)

    registry = load_registry(extra=[(Typo(), Source("arena-typo", "0.1"))])
    assert any(p.package == "arena-typo" and "register_atacks" in p.error for p in registry.problems)
    assert "good" not in registry.names("attack")


@pytest.mark.parametrize(
    "attrs, message",
    [
        ({"name": "Bad Name"}, "needs a class attribute `name`"),
        ({"access": "telepathy"}, "declares access 'telepathy'"),
        ({"norms": ("l1",)}, "declares norms"),
        ({"__init__": lambda self, steps: None}, "has no default"),
        ({"__init__": lambda self, **kw: None}, "list each hyperparameter"),
        ({"name": "autoattack"}, "has the name of Arena's attack preset"),  # -a autoattack runs the preset
    ],
)
def test_contract_violations_are_refused_with_reasons(attrs, message):
    broken = type("Broken", (_Good,), {"name": "broken", **attrs})
    registry = load_registry(extra=[(_plugin(register_attacks=lambda register: register(broken)), Source("arena-x", "1"))])
    assert broken.name not in registry.names("attack")
    assert any(message in p.error for p in registry.problems), registry.problems


def test_registering_a_non_plugin_is_refused():
    registry = load_registry(extra=[(_plugin(register_defenses=lambda register: register(_Good)), Source("arena-x", "1"))])
    assert any("is not a subclass of arena.Defense" in p.error for p in registry.problems)


def test_unknown_plugin_suggests_close_names():
    registry = load_registry()
    with pytest.raises(UnknownPluginError, match=r"unknown attack 'fgms': did you mean .*'fgsm'"):
        registry.get("attack", "fgms")


def test_hyperparameters_are_checked_and_coerced():
    registry = load_registry()
    info = registry.get("defense", "advtrain")
    assert info.create({"epochs": 3.0}).epochs == 3
    with pytest.raises(arena.ArenaError, match="has no hyperparameter 'epoch'"):
        info.create({"epoch": 3})
    with pytest.raises(arena.ArenaError, match="epochs=2.5 is not a whole number"):
        info.create({"epochs": 2.5})
    with pytest.raises(arena.ArenaError, match=r"alpha=2 is above the maximum 1 \(accepted: \[0, 1\]\)"):
        info.create({"alpha": 2})


# -- access levels ----------------------------------------------------------------------------


@pytest.fixture
def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval().requires_grad_(False)


def test_score_oracle_counts_queries_and_hides_the_model(model):
    x = torch.rand(4, 1, 8, 8)
    oracle = ScoreOracle(model, batch_size=4, budget=3)
    scores = oracle(x)
    torch.testing.assert_close(scores, torch.log_softmax(model(x), dim=1))
    oracle(x[:2], index=torch.tensor([0, 1]))
    assert oracle.queries.tolist() == [2, 2, 1, 1]
    assert oracle.remaining().tolist() == [1, 1, 2, 2]
    with pytest.raises(AccessError, match="cannot read the target's model"):
        oracle.model
    with pytest.raises(AccessError, match="no gradients"):
        oracle(x.clone().requires_grad_(True))
    oracle(x)
    with pytest.raises(QueryBudgetExceeded):
        oracle(x)
    assert oracle.queries.tolist() == [3, 3, 2, 2]  # a refused query is not counted


def test_label_oracle_returns_labels_only(model):
    x = torch.rand(3, 1, 8, 8)
    oracle = LabelOracle(model, batch_size=3, budget=10)
    assert torch.equal(oracle(x), model(x).argmax(1))
    with pytest.raises(AccessError):
        oracle.parameters


def test_transfer_access_has_no_target(model):
    access = TransferAccess({"cnn": WhiteBox(model)})
    assert set(access.surrogates) == {"cnn"}
    for forbidden in ("model", "oracle", "gradient"):
        with pytest.raises(AccessError, match="zero-query"):
            getattr(access, forbidden)


def test_a_query_attack_reaching_for_the_model_fails_its_pairing(arena, db):
    class Cheater(_Good):
        """Declares score-query access but tries to read the weights."""

        name = "cheater"
        access = Access.SCORE_QUERY

        def perturb(self, access, x, y, threat, target=None):
            access.model  # noqa: B018 - the access violation under test
            return x

    registry = load_registry(extra=[(_plugin(register_attacks=lambda register: register(Cheater)), Source("arena-cheat", "1"))])
    set_registry(registry)
    result = arena("run", "--attack", "cheater", "--defense", "standard", "--n", "20")
    assert result.exit_code == 1
    assert "cannot read the target's model" in result.stderr
    rows = arena.json("results", "--json")
    assert rows[0]["status"] == "error"


def test_white_box_counts_passes(model):
    access = WhiteBox(model)
    x, y = torch.rand(5, 1, 8, 8), torch.zeros(5, dtype=torch.long)
    access.gradient(x, y)
    access.logits(x)
    assert (access.counter.forward, access.counter.backward) == (10, 5)


def test_threat_model_validation():
    with pytest.raises(arena.ArenaError, match=r"outside \(0, 1\]"):
        ThreatModel("linf", 1.5)
    with pytest.raises(arena.ArenaError, match="above 0"):
        ThreatModel("linf", 0)
    with pytest.raises(arena.ArenaError, match="unknown norm"):
        ThreatModel("l1", 0.1)
    with pytest.raises(arena.ArenaError, match="exceeds 8"):
        ThreatModel("l2", 9.0).check_for_shape((1, 8, 8))


def test_a_plugin_command_is_found_by_name(monkeypatch):
    """Commands added through register_commands are looked up when a name is not Arena's own."""
    import click
    from click.testing import CliRunner

    import arena
    import arena.cli as cli_module
    from arena.plugins import Source, load_registry, set_registry

    class Greeter:
        @arena.hookimpl
        def register_commands(self, cli):
            @cli.command("greet")
            def greet():
                """Say hello."""
                click.echo("hello from a plugin")

    set_registry(load_registry(extra=[(Greeter(), Source("arena-greet", "1.0", "greet"))]))
    monkeypatch.setattr(cli_module, "_PLUGIN_COMMANDS_ADDED", False)
    try:
        result = CliRunner().invoke(cli_module.cli, ["greet"])
        assert result.exit_code == 0 and result.output == "hello from a plugin\n"
        unknown = CliRunner().invoke(cli_module.cli, ["gret"])
        assert unknown.exit_code == 2 and "No such command 'gret'" in unknown.output
    finally:
        cli_module.cli.commands.pop("greet", None)
