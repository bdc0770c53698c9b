"""The commands that only read start without torch or any plugin module, and the store opens a
current database without alembic."""

from __future__ import annotations

import os
import subprocess
import sys

from arena.store import HEAD_REVISION, head_revision

#: Runs the CLI, then prints which heavy modules the command imported.
PROBE = (
    "import sys\n"
    "from arena.cli import main\n"
    "try:\n"
    "    main(sys.argv[1:])\n"
    "except SystemExit:\n"
    "    pass\n"
    "heavy = ('torch', 'arena_plugins', 'alembic', 'scipy', 'sklearn')\n"
    "print('IMPORTED', sorted({n.split('.')[0] for n in sys.modules if n.split('.')[0] in heavy}), file=sys.stderr)\n"
)


def _imported(*args: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=dict(os.environ),
                          timeout=120)
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("IMPORTED")]
    return eval(line.removeprefix("IMPORTED "))  # a list literal printed above


def test_reading_commands_import_neither_torch_nor_plugins(arena, db):
    ran = arena("run", "-a", "fgsm", "-d", "standard", "--n", "20")
    assert ran.exit_code == 0, ran.output + ran.stderr
    run_id = arena.json("results", "--json")[0]["run_id"]
    arena("show", str(run_id))  # draws the examples picture once
    for command in (["--help"], ["leaderboard", "--db", db], ["leaderboard", "--format", "json", "--db", db],
                    ["results", "--db", db], ["results", "--json", "--db", db], ["show", str(run_id), "--db", db]):
        assert _imported(*command) == [], command
    # Running does import them: the probe sees what it should.
    assert "torch" in _imported("run", "--help")


def test_head_revision_is_the_newest_migration():
    assert HEAD_REVISION == head_revision()


def test_runs_without_recorded_defaults_are_labelled_after_one_full_load(arena, db, arena_home):
    """Runs stored before runs recorded their plugins' defaults: the first reading command
    loads every plugin to label them (and keeps the defaults in ARENA_HOME); later ones do not."""
    import json
    import sqlite3

    ran = arena("run", "-a", "pgd", "-d", "standard", "--n", "20", "-p", "pgd.steps=3")
    assert ran.exit_code == 0, ran.output + ran.stderr
    labelled = arena.json("results", "--json")
    path = db.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        for run_id, provenance in conn.execute("SELECT id, provenance FROM runs").fetchall():
            stored = json.loads(provenance)
            del stored["plugin_defaults"]
            conn.execute("UPDATE runs SET provenance = ? WHERE id = ?", (json.dumps(stored), run_id))
    (arena_home / "plugin-defaults.json").unlink(missing_ok=True)
    assert "torch" in _imported("results", "--db", db)  # labels them from the installed plugins
    assert _imported("results", "--db", db) == []  # and remembers their defaults
    again = arena.json("results", "--json")
    assert [row["attack_label"] for row in again] == [row["attack_label"] for row in labelled] == ["pgd(steps=3)"]
