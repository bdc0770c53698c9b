"""One artifact store shared by machines that do not share a home: a model trained by one is
fetched, verified and reused by another, never trained twice; a tampered checkpoint is refused;
a run's kept examples live there by content and any machine reads them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from arena.provenance import file_sha256

from .conftest import run_arena

CHEAP = ["-d", "standard", "-p", "standard.epochs=2", "--n", "30"]


def _run(tmp_path: Path, machine: str, attack: str, store: Path, **extra_env: str):
    env = {"ARENA_HOME": str(tmp_path / machine), "ARENA_ARTIFACTS": str(store), **extra_env}
    done = run_arena("run", "-a", attack, *CHEAP, "--db", str(tmp_path / f"{machine}.db"), env=env)
    assert done.returncode == 0, done.stderr
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / machine / "models").glob("*.json")]
    with sqlite3.connect(tmp_path / f"{machine}.db") as conn:
        (provenance,) = conn.execute("SELECT provenance FROM runs").fetchone()
    return done, record, json.loads(provenance)["checkpoint_sha256"]


def test_a_model_trained_on_one_machine_is_fetched_verified_and_reused_by_another(tmp_path):
    store = tmp_path / "shared-artifacts"
    _, first, sha_a = _run(tmp_path, "machine-a", "fgsm", store)
    (stored,) = [json.loads(p.read_text()) for p in (store / "models").glob("*.json")]
    assert stored["sha256"] == first["sha256"] == sha_a
    assert stored["blob"] == f"sha256/{sha_a[:2]}/{sha_a}"  # relative to the store, no machine's path
    assert (store / stored["blob"]).stat().st_size == first["size"]

    _, second, sha_b = _run(tmp_path, "machine-b", "pgd", store)
    assert sha_b == sha_a and second["train_seconds"] == first["train_seconds"]  # fetched, not trained again
    assert second["history"] == first["history"]


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _tampered_store(tmp_path: Path) -> tuple[Path, dict]:
    """A store holding machine a's checkpoint, changed after it was put there."""
    store = tmp_path / "shared-artifacts"
    _, first, sha_a = _run(tmp_path, "machine-a", "fgsm", store)
    _flip_last_byte(store / f"sha256/{sha_a[:2]}/{sha_a}")
    return store, first


def test_a_tampered_checkpoint_in_the_store_is_refused_and_the_model_trained_again(tmp_path):
    store, first = _tampered_store(tmp_path)
    done, second, _ = _run(tmp_path, "machine-c", "fgsm", store)
    assert "does not match its recorded SHA-256" in done.stderr and "training it here instead" in done.stderr
    assert second["train_seconds"] != first["train_seconds"]  # trained on machine c


def test_a_workers_warning_reaches_the_driver(tmp_path):
    """A job run in a worker process (here: two local workers, as on a machine with two GPUs)
    warns in its own process; the driver shows the warning, naming the job and where it ran."""
    store, _ = _tampered_store(tmp_path)
    done, _, _ = _run(tmp_path, "machine-d", "fgsm", store, ARENA_LOCAL_WORKERS="2")
    assert "running on 2 local worker processes" in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if "does not match its recorded SHA-256" in line]
    assert line.startswith("warning: ") and "training it here instead (job " in line and " on " in line


def _examples_of(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        (artifacts,) = conn.execute("SELECT artifacts FROM runs").fetchone()
    return json.loads(artifacts)["examples"]


def test_a_runs_kept_examples_live_in_the_store_and_any_machine_draws_them(tmp_path):
    store = tmp_path / "shared-artifacts"
    _run(tmp_path, "machine-a", "fgsm", store)
    stored = _examples_of(tmp_path / "machine-a.db")
    digest = stored.split("/")[2].removesuffix(".safetensors")
    assert stored == f"sha256/{digest[:2]}/{digest}.safetensors"  # relative to the store, by content
    assert file_sha256(store / stored) == digest
    assert not (tmp_path / "machine-a" / "runs").exists()  # nothing of the run's in one machine's home

    # Another machine (its own home) reads machine a's results: the pictures come from the store.
    env = {"ARENA_HOME": str(tmp_path / "machine-b"), "ARENA_ARTIFACTS": str(store)}
    db = ["--db", str(tmp_path / "machine-a.db")]
    page = run_arena("leaderboard", "--format", "html", "-o", str(tmp_path / "site"), *db, env=env)
    assert page.returncode == 0 and "warning" not in page.stderr, page.stderr
    assert "data:image/svg+xml" in (tmp_path / "site" / "index.html").read_text()
    shown = run_arena("show", "1", *db, env=env)
    assert shown.returncode == 0 and "warning" not in shown.stderr, shown.stderr
    assert "Examples: " + str(tmp_path / "machine-b" / "pictures") in shown.stdout
    assert run_arena("db", "check", *db, env=env).returncode == 0

    # Without the store, the same reader says where the file should be; a changed file is caught.
    lost = run_arena("show", "1", *db, env={**env, "ARENA_ARTIFACTS": str(tmp_path / "elsewhere")})
    assert lost.returncode == 0 and "Examples:" not in lost.stdout
    assert (f"the file {stored} is not in the artifact store {tmp_path / 'elsewhere'} (ARENA_ARTIFACTS must name "
            "the store its run wrote to)") in lost.stderr
    _flip_last_byte(store / stored)
    checked = run_arena("db", "check", *db, env=env)
    assert checked.returncode == 1 and "does not hold the content its SHA-256 name says" in checked.stdout


def test_a_store_on_another_machine_is_read_through_a_verified_local_copy(tmp_path, monkeypatch):
    """Any fsspec URL: here fsspec's in-memory filesystem stands for a bucket (one process)."""
    import fsspec
    from click.testing import CliRunner

    from arena.artifacts import UnreadableArtifact, check_artifact, local_path
    from arena.cli import cli

    url = f"memory://arena-store-{tmp_path.name}"
    db = ["--db", str(tmp_path / "a.db")]
    monkeypatch.setenv("ARENA_ARTIFACTS", url)
    monkeypatch.setenv("ARENA_HOME", str(tmp_path / "machine-a"))
    done = CliRunner().invoke(cli, ["run", "-a", "fgsm", *CHEAP, *db])
    assert done.exit_code == 0, done.output
    stored = _examples_of(tmp_path / "a.db")
    memory = fsspec.filesystem("memory")
    assert memory.exists(f"{url.removeprefix('memory://')}/{stored}")

    monkeypatch.setenv("ARENA_HOME", str(tmp_path / "machine-b"))
    copy = local_path(stored)
    assert copy == tmp_path / "machine-b" / "cache" / "artifacts" / stored
    assert file_sha256(copy) == stored.split("/")[2].removesuffix(".safetensors")
    check_artifact(stored)

    # A store whose file no longer matches its name is refused, not drawn.
    copy.unlink()
    remote = f"{url.removeprefix('memory://')}/{stored}"
    memory.pipe_file(remote, memory.cat_file(remote)[:-1] + b"\x00")
    with pytest.raises(UnreadableArtifact, match="does not match its SHA-256 name"):
        local_path(stored)
    assert not copy.exists()
