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


def test_a_reader_neither_writes_nor_waits_for_a_writer(db, tmp_path):
    """A reading command opens an existing file read-only: it reads while a writer holds the
    write lock (a writer's transaction is BEGIN IMMEDIATE), and its quick_check runs beside it."""
    import time

    open_store(db).save_run(_run("k1"))
    path = tmp_path / "results.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # held for the whole read below
    try:
        start = time.perf_counter()
        reader = open_store(db, writes=False)
        (run,) = reader.runs()
        assert run.key == "k1" and reader.read_only and reader.damage == []
        assert time.perf_counter() - start < 10  # the busy timeout is 60 s
        with pytest.raises(StoreError, match="readonly|read-only"):
            reader.save_run(_run("k2"))
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert [r.key for r in open_store(db).runs()] == ["k1"]


def test_reopening_is_a_no_op_and_rows_survive(any_db):
    store = open_store(any_db)
    store.save_run(_run("k1"))
    again = open_store(any_db)
    (run,) = again.runs()
    assert run.key == "k1" and run.robustness.robust_accuracy == 0.5
    ((indices, robust),) = again.sample_outcomes([run.id]).values()
    assert indices.tolist() == [0] and robust.tolist() == [True]


def test_a_completed_result_is_never_replaced_but_a_failed_one_is(any_db):
    store = open_store(any_db)
    failed = store.save_run(_run("k", status="error"))
    done = store.save_run(_run("k"))
    assert done.id != failed.id and [r.status for r in store.runs()] == ["ok"]
    assert store.save_run(_run("k")).id == done.id
    assert len(store.runs()) == 1


def test_deleting_a_run_deletes_its_samples(any_db):
    store = open_store(any_db)
    run = store.save_run(_run("k"))
    with store.session() as session:
        session.delete(session.get(Run, run.id))
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM samples").scalar() == 0


def test_a_database_from_a_newer_arena_is_refused(any_db):
    store = open_store(any_db)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    store.engine.dispose()
    with pytest.raises(StoreError, match="written by a newer Arena"):
        open_store(any_db)


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


def test_a_replacing_run_supersedes_the_current_one_and_keeps_it_as_history(any_db):
    store = open_store(any_db)
    first = store.save_run(_run("k"))
    again = _run("k")
    again.robustness.robust_accuracy = 0.25
    second = store.save_run(again, replace=True)
    assert second.id != first.id
    assert store.find_run("k").id == second.id  # only the current run is found, and reused
    assert [r.id for r in store.runs()] == [second.id]
    history = {r.id: r for r in store.runs(history=True)}
    assert history[first.id].superseded_by == second.id and history[second.id].superseded_by is None
    assert history[first.id].robustness.robust_accuracy == 0.5  # kept as it was, samples too
    assert len(store.get_run(first.id).samples) == 1
    assert store.superseding(second.id) == [first.id]
    # Without replace, a completed current run is kept and returned, as before.
    assert store.save_run(_run("k")).id == second.id


def test_a_failed_run_is_superseded_by_its_retry(any_db):
    store = open_store(any_db)
    failed = store.save_run(_run("k", status="error"))
    done = store.save_run(_run("k"))
    assert [r.id for r in store.runs()] == [done.id]
    assert store.get_run(failed.id).superseded_by == done.id


def test_a_result_of_other_code_supersedes_the_current_one_of_its_lineage(any_db):
    store = open_store(any_db)
    old, other = _run("old-code"), _run("elsewhere")
    old.lineage, other.lineage = "lineage", "another"
    old, other = store.save_run(old), store.save_run(other)
    new = _run("new-code")
    new.lineage = "lineage"
    new = store.save_run(new)  # no replace: a different key is a different result
    assert {r.key for r in store.runs()} == {"elsewhere", "new-code"}
    assert store.get_run(old.id).superseded_by == new.id and store.find_run("old-code") is None
    # Back to the old code: computed again, and current again under its old key.
    back = _run("old-code")
    back.lineage = "lineage"
    back = store.save_run(back)
    assert {r.key for r in store.runs()} == {"elsewhere", "old-code"} and store.find_run("old-code").id == back.id
    assert store.get_run(new.id).superseded_by == back.id


def test_schema_0004_results_become_the_lineage_of_code_keyed_results(tmp_path):
    """Migrating to schema 0005 keeps every row and its samples (the runs table is copied with
    foreign keys off), makes each run current with its key as its lineage, keeps AUTOINCREMENT."""
    import shutil
    from pathlib import Path

    path = tmp_path / "results.db"
    shutil.copyfile(Path(__file__).parent / "fixtures" / "schema-0004.db", path)
    with sqlite3.connect(path) as conn:
        samples = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
        results = conn.execute("SELECT count(*) FROM robustness_results").fetchone()[0]
    store = open_store(f"sqlite:///{path}")
    runs = store.runs(history=True)
    assert len(runs) == 3 and all(r.lineage == r.key and r.superseded_by is None for r in runs)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM samples").fetchone()[0] == samples > 0
        assert conn.execute("SELECT count(*) FROM robustness_results").fetchone()[0] == results == 2
        assert conn.execute("SELECT count(*) FROM generative_results").fetchone()[0] == 1
        assert "AUTOINCREMENT" in conn.execute("SELECT sql FROM sqlite_master WHERE name = 'runs'").fetchone()[0]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # back on after the migration
    # A result of the same identity computed by code-keyed Arena supersedes the old one.
    old = runs[0]
    new = _run("code-keyed")
    new.lineage = old.key
    new = store.save_run(new)
    assert store.get_run(old.id).superseded_by == new.id and new.id == 4
