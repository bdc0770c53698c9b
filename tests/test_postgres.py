"""PostgreSQL as a first-class store: the CLI end to end against a real server, storing what it
stores in SQLite."""

from __future__ import annotations

import json

from arena.store import open_store

from .conftest import run_arena

COMMAND = ["run", "-a", "fgsm,pgd", "-d", "standard", "--n", "60", "-p", "standard.epochs=2"]


def _outcomes(url: str) -> dict[str, list[tuple]]:
    store = open_store(url)
    return {run.key: sorted((s.index, s.robust, s.adv_pred) for s in store.get_run(run.id).samples)
            for run in store.runs()}


def test_the_cli_end_to_end_on_postgresql(postgres_server, tmp_path):
    url = postgres_server.database()
    sqlite = f"sqlite:///{tmp_path / 'same.db'}"
    for db in (sqlite, url):
        done = run_arena(*COMMAND, "--db", db)
        assert done.returncode == 0, done.stderr
    assert _outcomes(url) == _outcomes(sqlite) and len(_outcomes(url)) == 2  # the same results, run by run

    rows = json.loads(run_arena("results", "--json", "--db", url).stdout)
    assert sorted(row["attack"] for row in rows) == ["fgsm", "pgd"] and all(row["status"] == "ok" for row in rows)
    board = json.loads(run_arena("leaderboard", "--format", "json", "--db", url).stdout)
    (defenses,) = [view for view in board if view["table"] == "defenses"]
    (entry,) = defenses["entries"]
    pgd = next(row for row in rows if row["attack"] == "pgd")
    assert entry["defense"] == "standard(epochs=2)" and entry["worst_case"] <= pgd["robust_accuracy"]

    again = run_arena("run", "-a", "fgsm", "-d", "standard", "--n", "60", "-p", "standard.epochs=2", "--force",
                      "--db", url)
    assert again.returncode == 0, again.stderr
    history = json.loads(run_arena("results", "--json", "--history", "--db", url).stdout)
    fgsm = sorted((row for row in history if row["attack"] == "fgsm"), key=lambda row: row["run_id"])
    assert len(fgsm) == 2 and fgsm[0]["superseded_by"] == fgsm[1]["run_id"] and fgsm[1]["superseded_by"] is None
    shown = run_arena("show", str(fgsm[1]["run_id"]), "--db", url)
    assert shown.returncode == 0 and "fgsm" in shown.stdout
