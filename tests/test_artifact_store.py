"""One artifact store shared by machines that do not share a home: a model trained by one is
fetched, verified and reused by another, never trained twice; a tampered checkpoint is refused."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from .conftest import run_arena

CHEAP = ["-d", "standard", "-p", "standard.epochs=2", "--n", "30"]


def _run(tmp_path: Path, machine: str, attack: str, store: Path):
    env = {"ARENA_HOME": str(tmp_path / machine), "ARENA_ARTIFACTS": str(store)}
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


def test_a_tampered_checkpoint_in_the_store_is_refused_and_the_model_trained_again(tmp_path):
    store = tmp_path / "shared-artifacts"
    _, first, sha_a = _run(tmp_path, "machine-a", "fgsm", store)
    blob = store / f"sha256/{sha_a[:2]}/{sha_a}"
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    done, second, _ = _run(tmp_path, "machine-c", "fgsm", store)
    assert "does not match its recorded SHA-256" in done.stderr and "training it here instead" in done.stderr
    assert second["train_seconds"] != first["train_seconds"]  # trained on machine c
