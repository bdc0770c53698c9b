"""Results that follow the code: ``--force`` and edited plugins store new runs that supersede the
old ones, which are kept as history, out of the rankings and out of `arena results`."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import arena as arena_api
from arena.plugins import Source, load_registry, set_registry
from arena.store import open_store

from .conftest import FIXTURES, pip_install_target, run_arena


def _register(kind: str, cls: type) -> None:
    hook = arena_api.hookimpl(lambda register: register(cls), specname=f"register_{kind}s")
    plugin = type("Plugin", (), {f"register_{kind}s": staticmethod(hook)})()
    set_registry(load_registry(extra=[(plugin, Source("arena-history-fixtures", "0.1"))]))


def test_force_stores_a_recomputation_that_differs_as_a_new_current_run(arena, db, tmp_path):
    scale = tmp_path / "scale"

    class FileScaled(arena_api.Attack):
        """FGSM at a fraction of eps read from a file when it runs (the same code and
        hyperparameters, different numbers: what a recomputation after a silent change gives)."""

        name = "file-scaled"
        norms = ("linf",)
        path = str(scale)  # a class attribute: the class travels to the attack's worker by value

        def perturb(self, access, x, y, threat, target=None):
            with open(self.path) as handle:
                fraction = float(handle.read())
            return (x + fraction * threat.eps * access.gradient(x, y).sign()).clamp(0, 1)

    _register("attack", FileScaled)
    command = ("run", "-a", "file-scaled", "-d", "standard", "--n", "120")
    scale.write_text("1.0")
    assert arena(*command).exit_code == 0
    (old,) = arena.json("results", "--json")
    scale.write_text("0.0")
    reused = arena(*command)
    assert reused.exit_code == 0 and "reus" in reused.stdout  # "reused", cut to the terminal width
    assert arena.json("results", "--json") == [old]

    forced = arena(*command, "--force")
    assert forced.exit_code == 0, forced.output + forced.stderr
    assert "reus" not in forced.stdout
    (new,) = arena.json("results", "--json")
    assert new["run_id"] != old["run_id"] and new["key"] == old["key"] and new["superseded_by"] is None
    assert new["robust_accuracy"] == new["clean_accuracy"] > old["robust_accuracy"]  # eps * 0: nothing fooled

    # The old run is history: kept with its numbers, listed only when asked, never ranked.
    history = {row["run_id"]: row for row in arena.json("results", "--json", "--history")}
    assert history[old["run_id"]]["superseded_by"] == new["run_id"]
    assert history[old["run_id"]]["robust_accuracy"] == old["robust_accuracy"]

    def listed(*flags):
        return [line.split()[0] for line in arena("results", *flags).stdout.splitlines() if line[:4].strip().isdigit()]

    assert listed() == [str(new["run_id"])]
    assert listed("--history") == listed("--all") == [str(old["run_id"]), str(new["run_id"])]
    boards = arena.json("leaderboard", "--format", "json")
    (runs,) = [board for board in boards if board["table"] == "runs"]
    assert [entry["run_id"] for entry in runs["entries"]] == [new["run_id"]]
    (defenses,) = [board for board in boards if board["table"] == "defenses"]
    assert defenses["entries"][0]["worst_case"] == pytest.approx(new["robust_accuracy"])
    assert f"Superseded by run {new['run_id']}" in arena("show", str(old["run_id"])).stdout
    assert f"Supersedes run {old['run_id']}" in arena("show", str(new["run_id"])).stdout

    store = open_store(db)
    assert store.find_run(old["key"]).id == new["run_id"]
    assert len(store.get_run(old["run_id"]).samples) == 120
    again = arena(*command)  # the current run is what a plain run reuses now
    assert "reus" in again.stdout and arena.json("results", "--json") == [new]


def test_force_supersedes_on_the_generative_track_too(arena, db, tmp_path):
    brightness = tmp_path / "brightness"

    class FileNoise(arena_api.Generator):
        """Uniform noise scaled by a number read from a file when it samples."""

        name = "file-noise"
        path = str(brightness)

        def build(self, dataset, ctx):
            return torch.nn.Linear(1, 1)

        def train(self, model, ctx):
            return None

        def sample(self, model, n, generator):
            with open(self.path) as handle:
                level = float(handle.read())
            return level * torch.rand(n, 1, 8, 8, generator=generator)

    _register("generator", FileNoise)
    command = ("run", "-g", "file-noise", "--samples", "40")
    brightness.write_text("1.0")
    assert arena(*command).exit_code == 0
    (old,) = arena.json("results", "--json")
    brightness.write_text("0.1")
    assert "reus" in arena(*command).stdout
    forced = arena(*command, "--force")
    assert forced.exit_code == 0 and "reus" not in forced.stdout
    (new,) = arena.json("results", "--json")
    assert new["run_id"] != old["run_id"] and new["key"] == old["key"] and new["fid"] != old["fid"]
    assert new["artifacts"]["samples"] != old["artifacts"]["samples"]  # the old run's image is kept
    history = {row["run_id"]: row for row in arena.json("results", "--json", "--history")}
    assert history[old["run_id"]]["superseded_by"] == new["run_id"]
    (board,) = [b for b in arena.json("leaderboard", "--format", "json") if b["table"] == "generators"]
    assert [entry["run_id"] for entry in board["entries"]] == [new["run_id"]]
    assert f"Superseded by run {new['run_id']}" in arena("show", str(old["run_id"])).stdout


def test_an_edited_plugin_is_recomputed_without_a_version_bump(tmp_path):
    """The code of a plugin is part of its results' identity: an edit in the installed package
    (same version) computes a new result, which supersedes the old one in the rankings."""
    site = tmp_path / "site"
    pip_install_target(FIXTURES / "arena-hello", site)
    shutil.rmtree(site / "arena_hello" / "__pycache__", ignore_errors=True)
    db = f"sqlite:///{tmp_path / 'r.db'}"
    command = ("run", "-a", "corner-noise", "-d", "standard", "--n", "60", "--db", db)
    env = {"ARENA_LOAD_PLUGINS": "arena-hello"}

    def results(*flags):
        listed = run_arena("results", "--json", *flags, "--db", db, pythonpath=site, env=env)
        assert listed.returncode == 0, listed.stderr
        return json.loads(listed.stdout)

    first = run_arena(*command, pythonpath=site, env=env)
    assert first.returncode == 0, first.stderr
    (old,) = results()
    assert "reus" in run_arena(*command, pythonpath=site, env=env).stdout

    source = site / "arena_hello" / "__init__.py"
    text = source.read_text()
    marker = tmp_path / "edited code ran"
    perturb = "    def perturb(self, access, x, y, threat, target=None):\n"
    assert perturb in text
    source.write_text(text.replace(perturb, f"{perturb}        open({str(marker)!r}, 'w').close()\n"))  # still 1.2.3
    second = run_arena(*command, pythonpath=site, env=env)
    assert second.returncode == 0, second.stderr
    assert "reus" not in second.stdout
    (new,) = results()
    assert new["attack_version"] == old["attack_version"] == "1.2.3"
    assert new["key"] != old["key"] and new["run_id"] != old["run_id"]
    old_code = old["provenance"]["plugins"]["attack"]["code_sha256"]
    new_code = new["provenance"]["plugins"]["attack"]["code_sha256"]
    assert len(old_code) == len(new_code) == 64 and old_code != new_code
    assert marker.exists()  # the edited code ran
    history = {row["run_id"]: row for row in results("--history")}
    assert history[old["run_id"]]["superseded_by"] == new["run_id"]
    board = json.loads(run_arena("leaderboard", "--format", "json", "--db", db, pythonpath=site, env=env).stdout)
    (runs,) = [b for b in board if b["table"] == "runs"]
    assert [entry["run_id"] for entry in runs["entries"]] == [new["run_id"]]
