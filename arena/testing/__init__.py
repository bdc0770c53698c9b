"""A kit for plugin authors' tests (and a pytest plugin, :mod:`arena.testing.plugin`).

Importing this module needs neither pytest nor torch. In a plugin package's tests::

    from arena.testing import check_attack

    def test_my_attack_keeps_the_contract():
        check_attack(MyAttack)

and, through the ``pytest11`` entry point (loaded wherever Arena is installed), the fixtures
``arena_env`` (an isolated Arena home and results database) and ``arena_cli`` (runs ``arena``
in-process and returns what it stored). :data:`TINY_DATASET` names a built-in dataset small
enough for fast end-to-end tests (``arena run ... --dataset digits-tiny``).

The checks are :mod:`arena.conformance`'s, the same ``arena plugins check NAME`` runs; each
raises :class:`ContractError` naming every failed check, what the contract is and how to fix
the plugin, and returns the list of :class:`CheckResult` otherwise.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..conformance import CheckResult, ContractError, checker, conformance

#: A built-in dataset of 200 training and 100 test 8x8 digits: for fast tests.
TINY_DATASET = "digits-tiny"

check_attack = checker("attack")
check_defense = checker("defense")
check_generator = checker("generator")
check_dataset = checker("dataset")

__all__ = ["TINY_DATASET", "ArenaEnv", "CheckResult", "CliResult", "ContractError", "check_attack", "check_dataset",
           "check_defense", "check_generator", "conformance", "run_cli"]

#: Commands that read or write the results database, given ``--db`` by :func:`run_cli`.
_DB_COMMANDS = {"run", "leaderboard", "results", "show", "compare", "export", "import"}


@dataclass
class CliResult:
    """What one in-process ``arena`` command did: its exit code and output, and the results
    stored in the database afterwards (``arena results --json --all``, one dict per run)."""

    exit_code: int
    stdout: str
    stderr: str
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class ArenaEnv:
    """An isolated Arena home and results database (``ARENA_HOME``, ``ARENA_DB`` point here)."""

    home: Path
    db: str

    def run(self, *args: str) -> CliResult:
        """``arena ARGS...`` in this process against this home and database."""
        return run_cli(*args, db=self.db)


def run_cli(*args: str, db: str | None = None) -> CliResult:
    """Run ``arena ARGS...`` in this process (``--db db`` added to the commands that take one);
    its exit code, output and the stored results."""
    from click.testing import CliRunner

    from ..cli import cli

    argv = [str(a) for a in args]
    if db is not None and argv and argv[0] in _DB_COMMANDS and not any(a == "--db" or a.startswith("--db=")
                                                                        for a in argv):
        argv += ["--db", db]
    done = CliRunner().invoke(cli, argv)
    if done.exception is not None and not isinstance(done.exception, SystemExit):
        raise done.exception
    stored = CliRunner().invoke(cli, ["results", "--json", "--all", *(["--db", db] if db else [])])
    results = json.loads(stored.stdout) if stored.exit_code == 0 and stored.stdout.strip().startswith("[") else []
    return CliResult(done.exit_code, done.stdout, done.stderr, results)


def isolated(root: Path) -> ArenaEnv:
    """An :class:`ArenaEnv` under ``root`` (the environment variables are the caller's to set)."""
    home = root / "arena-home"
    home.mkdir(parents=True, exist_ok=True)
    return ArenaEnv(home, f"sqlite:///{root / 'arena.db'}")


def environment(env: ArenaEnv) -> dict[str, str | None]:
    """The environment an :class:`ArenaEnv` runs in (None: unset)."""
    return {"ARENA_HOME": str(env.home), "ARENA_DB": env.db, "ARENA_ARTIFACTS": None, "ARENA_EXECUTOR": None,
            "ARENA_LOCAL_WORKERS": None, "ARENA_LOAD_PLUGINS": None, "ARENA_MAX_PARALLEL": None,
            "ARENA_RAY_ADDRESS": None, "COLUMNS": os.environ.get("COLUMNS")}
