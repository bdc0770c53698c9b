"""The pytest plugin of :mod:`arena.testing` (entry point ``pytest11``: ``arena``): fixtures for
plugin authors' tests."""

from __future__ import annotations

from typing import Callable, Iterator

import pytest

from . import ArenaEnv, CliResult, environment, isolated, run_cli


@pytest.fixture
def arena_env(tmp_path, monkeypatch) -> Iterator[ArenaEnv]:
    """An isolated Arena home and results database for one test (``ARENA_HOME`` and
    ``ARENA_DB`` point there while it runs; the plugin registry is loaded afresh)."""
    from ..plugins import set_registry

    env = isolated(tmp_path)
    for name, value in environment(env).items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    set_registry(None)
    yield env
    set_registry(None)


@pytest.fixture
def arena_cli(arena_env) -> Callable[..., CliResult]:
    """``arena_cli("run", "-a", "my-attack", "-d", "standard", "--dataset", "digits-tiny")``:
    runs the command in-process in :func:`arena_env` and returns a
    :class:`arena.testing.CliResult` (exit code, output, stored results)."""

    def invoke(*args: str) -> CliResult:
        return run_cli(*args, db=arena_env.db)

    return invoke
