"""Shared fixtures: one model cache for the session, a fresh results database per test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from arena.cli import cli
from arena.plugins import set_registry

FIXTURES = Path(__file__).parent / "fixtures"

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Several workers on a few cores: one intra-op thread each (subprocesses too), or torch's
    # OpenMP threads spin against each other and small models run many times slower.
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def arena_home(tmp_path_factory, worker_id) -> Path:
    """One ARENA_HOME for the whole session (shared by xdist workers), so models train once."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if worker_id != "master" else base
    home = root / "arena-home"
    home.mkdir(exist_ok=True)
    return home


@pytest.fixture(autouse=True)
def _environment(arena_home, monkeypatch):
    monkeypatch.setenv("ARENA_HOME", str(arena_home))
    monkeypatch.delenv("ARENA_DB", raising=False)
    monkeypatch.delenv("ARENA_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("COLUMNS", raising=False)  # output to a pipe is laid out whole unless COLUMNS is set
    set_registry(None)
    yield
    set_registry(None)


@pytest.fixture
def db(tmp_path) -> str:
    """A fresh SQLite results database for one test."""
    return f"sqlite:///{tmp_path / 'results.db'}"


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for this test session (see tests/postgres.py). CI installs
    PostgreSQL (.ci/run), so there it always runs; elsewhere, without PostgreSQL installed,
    the tests that need it are skipped and say how to install it."""
    from .postgres import Server, binaries

    if binaries() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed: .ci/run installs it (apt-get install postgresql)")
        pytest.skip("PostgreSQL is not installed: apt-get install postgresql (Debian) to run these tests")
    server = Server()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request, tmp_path) -> str:
    """A fresh results database on each backend Arena supports: an SQLite file, and a new
    database on a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'results.db'}"
    return request.getfixturevalue("postgres_server").database()


class Arena:
    """Runs the CLI in-process and returns (exit code, stdout, stderr)."""

    def __init__(self, db_url: str) -> None:
        self.db = db_url

    def __call__(self, *args: str, db: bool = True):
        argv = list(args)
        if db and argv and argv[0] in {"run", "leaderboard", "results", "show", "check", "compare"}:
            argv += ["--db", self.db]
        result = CliRunner().invoke(cli, argv, catch_exceptions=False)
        return result

    def json(self, *args: str):
        result = self(*args)
        assert result.exit_code == 0, result.output + result.stderr
        return json.loads(result.stdout)


@pytest.fixture
def arena(db) -> Arena:
    return Arena(db)


def pip_install_target(package: Path, target: Path) -> None:
    """Install a plugin package into ``target`` (a folder later put on PYTHONPATH)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-cache-dir", "--target", str(target), str(package)],
        check=True,
        capture_output=True,
    )


def run_arena(*args: str, pythonpath: Path | None = None, env: dict[str, str] | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed ``arena`` console script in a subprocess."""
    environment = dict(os.environ)
    if pythonpath is not None:
        environment["PYTHONPATH"] = str(pythonpath)
    environment.update(env or {})
    executable = Path(sys.executable).with_name("arena")
    return subprocess.run([str(executable), *args], capture_output=True, text=True, env=environment,
                          timeout=timeout)
