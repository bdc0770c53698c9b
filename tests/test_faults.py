"""Faults: kills mid-run, concurrent writers, tampered caches, and reproducible reruns."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from arena.errors import StoreError
from arena.store import RobustnessResult, Run, Sample, open_store

from .conftest import run_arena

CHEAP = ["-p", "standard.epochs=2"]  # fault tests need a model, not a good one


def _outcomes(db: str) -> dict[str, list[tuple]]:
    store = open_store(db)
    return {
        run.key: [(s.index, s.clean_pred, s.adv_pred, s.success, round(s.linf, 6)) for s in store.get_run(run.id).samples]
        for run in store.runs(status="ok")
    }


def _consistent(url: str) -> None:
    """The database holds no half-written result (and an SQLite file passes its integrity
    check): every run has its result row, and an ok run all its samples."""
    import sqlalchemy as sa

    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            return  # killed before the file was created
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    engine = sa.create_engine(url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
        if not tables:
            return  # killed before the schema was created: an empty database
        assert {"alembic_version", "runs", "robustness_results", "samples"} <= tables
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT r.id, r.status, r.n, (SELECT count(*) FROM samples s WHERE s.run_id = r.id), "
                "(SELECT count(*) FROM robustness_results x WHERE x.run_id = r.id) FROM runs r"
            )).fetchall()
    finally:
        engine.dispose()
    for run_id, status, n, samples, results in rows:
        assert results == 1, f"run {run_id} has no result row"
        assert samples == (n if status == "ok" else 0), f"run {run_id} ({status}) has {samples}/{n} samples"


def _stored_runs(url: str) -> int:
    import sqlalchemy as sa

    if url.startswith("sqlite:///"):  # read-only: never create the file the run is about to
        path = url.removeprefix("sqlite:///")
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
                return conn.execute("SELECT count(*) FROM runs WHERE status = 'ok'").fetchone()[0]
        except sqlite3.Error:
            return 0
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM runs WHERE status = 'ok'")).scalar_one()
    except sa.exc.DBAPIError:  # the schema is not created yet
        return 0
    finally:
        engine.dispose()


def _wait_for(condition, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.02)


def test_sigkill_at_random_points_loses_nothing(tmp_path, any_db):
    """Kill `arena run` with SIGKILL during training, then at random points among its writes,
    on SQLite and PostgreSQL."""
    eps = ",".join(f"{e / 100:g}" for e in range(1, 31))
    command = ["run", "-a", "fgsm", "-d", "standard", "--eps", eps, "--n", "200", "--deterministic", *CHEAP]
    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    done = run_arena(*command, "--db", reference, env={"ARENA_HOME": str(tmp_path / "reference-home")})
    assert done.returncode == 0, done.stderr

    home = tmp_path / "home"
    executable = Path(sys.executable).with_name("arena")
    env = {**os.environ, "ARENA_HOME": str(home)}
    rng = random.Random(1234)
    progress = []
    for trial, target in enumerate([0, 4, 10, 16, 22]):
        process = subprocess.Popen([str(executable), *command, "--db", any_db], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if trial == 0:  # while the defense trains and its checkpoint is written
            _wait_for(lambda: any((home / "models").glob(".*.lock")) if (home / "models").exists() else False)
            time.sleep(rng.uniform(0.0, 0.8))
        else:  # among the pairings' transactions
            _wait_for(lambda: _stored_runs(any_db) >= target)
            time.sleep(rng.uniform(0.0, 0.3))
        process.send_signal(signal.SIGKILL)
        process.wait()
        _consistent(any_db)
        progress.append(_stored_runs(any_db))
    finished = run_arena(*command, "--db", any_db, env={"ARENA_HOME": str(home)})
    assert finished.returncode == 0, finished.stderr
    _consistent(any_db)
    assert _outcomes(any_db) == _outcomes(reference)
    assert len(_outcomes(reference)) == 30
    assert progress == sorted(progress) and 0 < progress[-1] < 30  # the kills did land mid-run


def test_concurrent_cli_writers_lose_no_rows(tmp_path, any_db):
    """Eight `arena run` processes writing to one database at once, on SQLite and PostgreSQL."""
    warm = run_arena("run", "-a", "fgsm", "-d", "standard", "--n", "20", "--db", str(tmp_path / "warm.db"), *CHEAP)
    assert warm.returncode == 0, warm.stderr
    executable = Path(sys.executable).with_name("arena")
    writers = [
        subprocess.Popen([str(executable), "run", "-a", "fgsm", "-d", "standard", "--eps", f"0.{i + 1}", "--n", "120",
                          "--db", any_db, *CHEAP], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(8)
    ]
    for writer in writers:
        out, err = writer.communicate(timeout=600)
        assert writer.returncode == 0, err
        assert "locked" not in err and "Error" not in err
    store = open_store(any_db)
    runs = store.runs()
    assert sorted(r.robustness.eps for r in runs) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    assert all(len(store.get_run(r.id).samples) == 120 for r in runs)


def _provenance() -> dict:
    return {"arena_version": "0", "git_revision": None, "python": "3", "torch": "2", "cuda": None, "device": "cpu",
            "deterministic_algorithms": False, "seed": 0, "dataset_hash": "h", "checkpoint_sha256": "c",
            "plugins": {"attack": {"package": "p", "version": "1"}}}


def _write_runs(db: str, writer: int, count: int) -> None:
    store = open_store(db)
    for i in range(count):
        run = Run(key=f"{writer}-{i}", track="robustness", status="ok", created_at=datetime.now(timezone.utc),
                  dataset="digits", dataset_hash="h", seed=0, n=3, device="cpu", duration_s=0.0, flags=[],
                  provenance=_provenance(), artifacts={})
        run.robustness = RobustnessResult(
            attack="a", attack_package="p", attack_version="1", attack_access="white-box", attack_params={},
            defense="d", defense_package="p", defense_version="1", defense_params={}, defense_key="k",
            norm="linf", eps=0.1, targeted=False, robust_accuracy=1.0)
        run.samples = [Sample(index=j, label=0, clean_pred=0, adv_pred=0, clean_correct=True, success=False,
                              robust=True, linf=0.1, l2=0.1) for j in range(3)]
        store.save_run(run)
        open_store(db).runs(status="ok")  # interleave reads with the writes


def test_eight_processes_writing_at_once(any_db):
    """Eight processes opening (and migrating) one new database at once, then writing and reading
    it together: on SQLite and on a real PostgreSQL server."""
    db = any_db
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_write_runs, args=(db, w, 25)) for w in range(8)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
        assert process.exitcode == 0
    store = open_store(db)
    assert len(store.runs()) == 200
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM samples").scalar() == 600


def test_results_without_provenance_are_not_stored(db):
    store = open_store(db)
    run = Run(key="k", track="robustness", status="ok", created_at=datetime.now(timezone.utc), dataset="digits",
              dataset_hash="h", seed=0, n=0, device="cpu", duration_s=0.0, flags=[], artifacts={},
              provenance={k: v for k, v in _provenance().items() if k != "torch"})
    with pytest.raises(StoreError, match="missing torch"):
        store.save_run(run)
    run.provenance = {**_provenance(), "plugins": {"attack": {"package": "p", "version": ""}}}
    with pytest.raises(StoreError, match="plugins.attack.version"):
        store.save_run(run)
    assert store.runs() == []


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_malicious_pickle_in_the_cache_never_runs(tmp_path):
    home = tmp_path / "home"
    env = {"ARENA_HOME": str(home)}
    first = run_arena("run", "-a", "fgsm", "-d", "standard", "--n", "20", "--db", str(tmp_path / "a.db"), *CHEAP, env=env)
    assert first.returncode == 0, first.stderr
    (weights,) = (home / "models").glob("*.safetensors")
    record_path = weights.with_suffix(".json")
    record = json.loads(record_path.read_text())
    marker = tmp_path / "pwned"
    weights.write_bytes(pickle.dumps(_Payload(marker)))
    import hashlib

    # Even with a record forged to match, the file is read only through safetensors.
    record["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    record_path.write_text(json.dumps(record))
    second = run_arena("run", "-a", "fgsm", "-d", "standard", "--n", "20", "--db", str(tmp_path / "b.db"), *CHEAP,
                       env=env)
    assert second.returncode == 0, second.stderr
    assert not marker.exists()
    assert "cannot be loaded" in second.stderr and "rebuilding it" in second.stderr
    assert json.loads(record_path.read_text())["sha256"] != record["sha256"]


def test_a_tampered_checkpoint_is_rebuilt_with_a_warning(tmp_path):
    home = tmp_path / "home"
    env = {"ARENA_HOME": str(home)}
    args = ["run", "-a", "fgsm", "-d", "standard", "--n", "50", *CHEAP]
    first = run_arena(*args, "--db", str(tmp_path / "a.db"), env=env)
    assert first.returncode == 0, first.stderr
    (weights,) = (home / "models").glob("*.safetensors")
    data = bytearray(weights.read_bytes())
    data[-4:] = b"\x00\x00\x80\x7f"  # one weight becomes +inf
    weights.write_bytes(bytes(data))
    second = run_arena(*args, "--db", str(tmp_path / "b.db"), env=env)
    assert second.returncode == 0, second.stderr
    assert "does not match its recorded SHA-256; rebuilding it" in second.stderr
    a = json.loads(run_arena("results", "--json", "--db", str(tmp_path / "a.db"), env=env).stdout)[0]
    b = json.loads(run_arena("results", "--json", "--db", str(tmp_path / "b.db"), env=env).stdout)[0]
    assert a["provenance"]["checkpoint_sha256"] == b["provenance"]["checkpoint_sha256"]  # rebuilt identically


def test_deterministic_reruns_give_identical_outcomes(tmp_path):
    results = []
    for name in ("first", "second"):
        env = {"ARENA_HOME": str(tmp_path / name)}
        db = str(tmp_path / f"{name}.db")
        ran = run_arena("run", "-a", "fgsm", "-d", "standard", "--n", "150", "--seed", "7", "--deterministic",
                        "--eps", "0.1,0.2", *CHEAP, "--db", db, env=env)
        assert ran.returncode == 0, ran.stderr
        rows = json.loads(run_arena("results", "--json", "--db", db, env=env).stdout)
        assert all(r["provenance"]["deterministic_algorithms"] is True and r["seed"] == 7 for r in rows)
        results.append((_outcomes(f"sqlite:///{db}"), {r["provenance"]["checkpoint_sha256"] for r in rows}))
    assert results[0] == results[1]
