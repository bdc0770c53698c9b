"""Bad input ends in one clear line and a non-zero exit, never a traceback or lost results."""

from __future__ import annotations

import sqlite3

import pytest
import torch

import arena
from arena.errors import ArenaError
from arena.plugins import Source, load_registry, set_registry

from . import broken_plugins
from .conftest import run_arena


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "-a", "fgms", "-d", "standard"], "unknown attack 'fgms': did you mean"),
        (["run", "-a", "fgsm", "-d", "standart"], "unknown defense 'standart': did you mean 'standard'"),
        (["run", "-a", "fgsm", "-d", "standard", "--dataset", "digitz"], "unknown dataset 'digitz'"),
        (["run", "-a", "fgsm", "-d", "standard", "--eps", "1.5"], "linf eps 1.5 is outside (0, 1]"),
        (["run", "-a", "fgsm", "-d", "standard", "--eps", "0"], "must be a number above 0"),
        (["run", "-a", "fgsm", "-d", "standard", "--eps", "0.1,x"], "'x' is not a number"),
        (["run", "-a", "fgsm", "-d", "standard", "--norm", "l2", "--eps", "0.5"], "attack 'fgsm' does not support norm l2"),
        (["run", "-a", "fgm", "-d", "standard", "--norm", "l2"], "--norm l2 needs --eps"),
        (["run", "-a", "fgsm", "-d", "standard", "--n", "0"], "--n 0 is outside 1..360"),
        (["run", "-a", "fgsm"], "nothing to run: pass --attack and --defense"),
        (["run", "-a", "fgsm", "-d", "standard", "-p", "standard.epoch=3"], "has no hyperparameter 'epoch'"),
        (["run", "-a", "fgsm", "-d", "standard", "-p", "epochs=3"], "use PLUGIN.NAME=VALUE"),
        (["run", "-a", "fgsm", "-d", "standard", "--device", "cuda:0"] if not torch.cuda.is_available()
         else ["run", "-a", "fgsm", "-d", "standard", "--device", "tpu"], "device"),
        (["show", "999"], "no run 999"),
        (["check", "999"], "no run 999"),
        (["run", "-a", "fgsm", "-d", "standard", "--timeout", "0"], "--timeout 0 must be above 0 seconds"),
        (["run", "-a", "fgsm", "-d", "standard", "--queries", "0"], "--queries must be at least 1"),
        (["run", "-a", "fgsm", "-d", "standard", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["run", "-a", "random-corners", "-d", "standard", "--targeted"], "'random-corners' has no targeted mode"),
    ],
)
def test_bad_input_is_one_line(arena, args, message):
    broken_plugins.install()
    result = arena(*args)
    assert result.exit_code != 0
    assert message in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(error_lines) == 1 and error_lines[0].startswith("Error: ")
    assert "Traceback" not in result.output + result.stderr


def test_debug_shows_the_traceback(tmp_path):
    quiet = run_arena("run", "-a", "nope", "-d", "standard", "--db", str(tmp_path / "r.db"))
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr
    loud = run_arena("--debug", "run", "-a", "nope", "-d", "standard", "--db", str(tmp_path / "r.db"))
    assert loud.returncode == 1 and "Traceback" in loud.stderr and "UnknownPluginError" in loud.stderr


def test_a_file_that_is_not_a_database_is_refused_untouched(arena, tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database" * 100)
    before = path.read_bytes()
    result = arena("leaderboard", "--db", str(path), db=False)
    assert result.exit_code == 1
    assert "is not a readable SQLite database" in result.stderr and "left untouched" in result.stderr
    assert path.read_bytes() == before


def test_a_foreign_sqlite_database_is_refused_untouched(arena, tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        conn.execute("INSERT INTO invoices VALUES (1, 9.5)")
    before = path.read_bytes()
    result = arena("run", "-a", "fgsm", "-d", "standard", "--db", str(path), db=False)
    assert result.exit_code == 1
    assert "database of something else (tables: invoices)" in result.stderr
    assert path.read_bytes() == before


def test_unwritable_arena_home(arena, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("ARENA_HOME", str(blocker / "home"))
    result = arena("run", "-a", "fgsm", "-d", "standard", db=False)
    assert result.exit_code == 1
    assert "cannot write to the Arena data folder" in result.stderr and "set ARENA_HOME" in result.stderr


class _Raises(arena.Attack):
    """Raises on every batch."""

    name = "raises"

    def perturb(self, access, x, y, threat, target=None):
        raise ValueError("the plugin's own bug")


class _Oversteps(arena.Attack):
    """Returns a perturbation twice the budget."""

    name = "oversteps"

    def perturb(self, access, x, y, threat, target=None):
        return (x + 2 * threat.eps).clamp(0, 1)


def test_a_plugin_that_raises_or_cheats_fails_only_its_own_pairing(arena):
    plugin = type("P", (), {"register_attacks": staticmethod(arena_hook(lambda register: [register(_Raises), register(_Oversteps)]))})()
    registry = load_registry(extra=[(plugin, Source("arena-faulty", "0.1"))])
    set_registry(registry)
    result = arena("run", "-a", "raises,fgsm,oversteps", "-d", "standard", "--n", "40")
    assert result.exit_code == 1
    assert "error: raises vs standard" in result.stderr and "ValueError: the plugin's own bug" in result.stderr
    assert "refused: oversteps vs standard" in result.stderr and "above eps 0.2" in result.stderr
    rows = {r["attack"]: r for r in arena.json("results", "--json")}
    assert rows["fgsm"]["status"] == "ok" and rows["fgsm"]["robust_accuracy"] is not None
    assert rows["raises"]["status"] == "error" and rows["oversteps"]["status"] == "refused"
    shown = arena("show", str(rows["raises"]["run_id"]))
    assert "Traceback" in shown.stdout and "the plugin's own bug" in shown.stdout
    # Failed pairings never reach the leaderboard.
    assert "raises" not in arena("leaderboard").stdout


def arena_hook(function):
    return arena.hookimpl(function, specname="register_attacks")


def test_debug_lets_arena_errors_through(arena):
    from click.testing import CliRunner

    from arena.cli import cli

    with pytest.raises(ArenaError):
        CliRunner().invoke(cli, ["--debug", "run", "-a", "nope", "-d", "standard", "--db", arena.db],
                           catch_exceptions=False)
