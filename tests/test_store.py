"""The results database: connection settings, migrations, idempotent writes."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

import pytest
from sqlalchemy import text

from arena.errors import StoreError
from arena.store import RobustnessResult, Run, Sample, head_revision, open_store


def _run(key: str, status: str = "ok") -> Run:
    run = Run(key=key, track="robustness", status=status, created_at=datetime.now(timezone.utc),
              dataset="digits", dataset_hash="h", seed=0, n=1, device="cpu", duration_s=0.1, flags=[],
              provenance={"arena_version": "0", "git_revision": None, "python": "3", "torch": "2", "cuda": None,
                          "device": "cpu", "deterministic_algorithms": False, "seed": 0, "dataset_hash": "h",
                          "checkpoint_sha256": "c", "plugins": {}})
    run.robustness = RobustnessResult(
        attack="a", attack_package="p", attack_version="1", attack_access="white-box", attack_params={},
        defense="d", defense_package="p", defense_version="1", defense_params={}, defense_key="k",
        norm="linf", eps=0.1, targeted=False, robust_accuracy=0.5 if status == "ok" else None,
    )
    if status == "ok":
        run.samples = [Sample(index=0, label=1, clean_pred=1, adv_pred=1, clean_correct=True, success=False,
                              robust=True, linf=0.1, l2=0.3)]
    return run


def test_every_sqlite_connection_is_configured(db):
    store = open_store(db)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60000
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head_revision()


def test_reopening_is_a_no_op_and_rows_survive(db):
    store = open_store(db)
    store.save_run(_run("k1"))
    again = open_store(db)
    (run,) = again.runs()
    assert run.key == "k1" and run.robustness.robust_accuracy == 0.5
    ((indices, robust),) = again.sample_outcomes([run.id]).values()
    assert indices.tolist() == [0] and robust.tolist() == [True]


def test_a_completed_result_is_never_replaced_but_a_failed_one_is(db):
    store = open_store(db)
    failed = store.save_run(_run("k", status="error"))
    done = store.save_run(_run("k"))
    assert done.id != failed.id and [r.status for r in store.runs()] == ["ok"]
    assert store.save_run(_run("k")).id == done.id
    assert len(store.runs()) == 1


def test_deleting_a_run_deletes_its_samples(db):
    store = open_store(db)
    run = store.save_run(_run("k"))
    with store.session() as session:
        session.delete(session.get(Run, run.id))
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM samples").scalar() == 0


def test_a_database_from_a_newer_arena_is_refused(db, tmp_path):
    open_store(db)
    path = tmp_path / "results.db"
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StoreError, match="written by a newer Arena"):
        open_store(db)


def test_bad_url_is_a_clear_error():
    with pytest.raises(StoreError, match="cannot use database URL"):
        open_store("nosuchdialect://x")


def test_released_schema_fixtures_migrate_forward_with_rows_kept(tmp_path):
    """Every released schema has a fixture database; opening a copy migrates it to head."""
    import shutil
    from pathlib import Path

    fixtures = sorted((Path(__file__).parent / "fixtures").glob("schema-*.db"))
    assert fixtures, "keep a fixture database of each released schema in tests/fixtures"
    for fixture in fixtures:
        path = tmp_path / fixture.name
        shutil.copyfile(fixture, path)
        with sqlite3.connect(path) as conn:
            before = conn.execute("SELECT id, key, status FROM runs ORDER BY id").fetchall()
            samples = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
            robust = conn.execute("SELECT run_id, robust FROM samples ORDER BY run_id, \"index\"").fetchall()
        store = open_store(f"sqlite:///{path}")
        after = [(r.id, r.key, r.status) for r in store.runs()]
        assert after == before and len(before) >= 2
        assert sum(len(store.get_run(r.id).samples) for r in store.runs()) == samples
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head_revision()
            packed = conn.execute(text("SELECT count(*) FROM robustness_results WHERE robust_bits IS NOT NULL"))
            assert packed.scalar() >= 1  # the leaderboard's packed outcomes, filled in from the samples
        outcomes = store.sample_outcomes([r.id for r in store.runs()])
        assert [(run_id, int(v)) for run_id, (_, values) in sorted(outcomes.items()) for v in values] == robust
