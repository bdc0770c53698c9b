"""Tracks as plugins, and plans: a third track from a pip-installed package goes through
``arena run``, the store, ``arena results`` and the leaderboard with no file of Arena naming it;
``arena run --plan`` lists every job with the keys the run then stores, and runs nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from .conftest import FIXTURES, pip_install_target, run_arena

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def calibration_site(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    pip_install_target(FIXTURES / "arena-calibration", site)
    return site


def test_a_third_track_from_a_package_runs_is_stored_and_ranked(calibration_site, tmp_path):
    db = f"sqlite:///{tmp_path / 'r.db'}"

    def arena(*args):
        done = run_arena(*args, pythonpath=calibration_site)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "--calibrate" in arena("run", "--help") and "--bins" in arena("run", "--help")
    ran = arena("run", "--calibrate", "standard,dropout", "--db", db)
    assert "standard" in ran and "dropout" in ran
    rows = json.loads(arena("results", "--json", "--db", db))
    mine = {row["subject"]["defense"]: row for row in rows if row["track"] == "calibration"}
    assert set(mine) == {"standard", "dropout"}
    for row in mine.values():
        metrics = row["metrics"]
        assert row["status"] == "ok" and 0 <= metrics["ece"] <= 1 and 0.5 < metrics["accuracy"] <= 1
        # ECE is at most the gap between mean confidence and accuracy summed over bins, and at
        # least that gap over all points (the triangle inequality over the bins).
        assert metrics["ece"] >= abs(metrics["confidence"] - metrics["accuracy"]) - 1e-9
    # The same command again reuses the stored results.
    assert arena("run", "--calibrate", "standard", "--calibrate", "dropout", "--db", db).count("reused") == 2
    again = json.loads(arena("results", "--json", "--db", db))
    assert [r["run_id"] for r in again] == [r["run_id"] for r in rows]

    board = arena("leaderboard", "--db", db)
    assert "Calibration of defenses on clean data" in board and "standard" in board
    views = json.loads(arena("leaderboard", "--format", "json", "--db", db))
    (view,) = [v for v in views if v["table"] == "calibration"]
    ranked = [row["subject"] for row in view["entries"]]
    by_ece = sorted(mine, key=lambda name: mine[name]["metrics"]["ece"])
    assert ranked == by_ece
    only = json.loads(arena("leaderboard", "--format", "json", "--track", "calibration", "--db", db))
    assert {v["table"] for v in only} == {"calibration"}

    # Nothing in Arena's own code names the track.
    for folder in ("arena", "leaderboard"):
        for path in (ROOT / folder).rglob("*.py"):
            assert "calibration" not in path.read_text(encoding="utf-8").lower(), path


def test_plan_of_the_whole_matrix_runs_nothing(tmp_path, monkeypatch):
    home = tmp_path / "home"
    db = f"sqlite:///{tmp_path / 'r.db'}"
    started = time.perf_counter()
    done = run_arena("run", "-a", "all", "-d", "all", "--plan", "--json", "--db", db,
                     env={"ARENA_HOME": str(home)})
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    jobs = plan["jobs"]
    pairings = [job for job in jobs if job["kind"] == "evaluate"]
    trained = {job["key"] for job in jobs if job["kind"].startswith("train")}
    assert len({job["spec"]["defense"] for job in pairings}) >= 10 and len({job["spec"]["attack"] for job in pairings}) >= 10
    assert all(job["key"] and job["keys"][0] == job["key"] and not job["stored"] for job in pairings)
    assert all(set(job["needs"]) <= trained for job in pairings)
    assert plan["stored"] == 0 and plan["total"] == len(jobs)
    # Nothing trained, nothing stored (the plan loads the dataset and reads the cache only).
    assert not (home / "models").exists() or not any((home / "models").glob("*.safetensors"))
    results = run_arena("results", "--json", "--db", db, env={"ARENA_HOME": str(home)})
    assert json.loads(results.stdout) == []
    assert elapsed < 60, elapsed


def test_plan_keys_are_the_keys_the_run_stores(arena):
    command = ["run", "-a", "fgsm,square,transfer", "-d", "standard,bit-depth", "--n", "32", "--queries", "100",
               "--seeds", "0,1"]
    before = arena.json(*command, "--plan", "--json")["jobs"]
    result = arena(*command)
    assert result.exit_code == 0, result.output + result.stderr
    stored = {row["key"] for row in arena.json("results", "--json")}
    after = arena.json(*command, "--plan", "--json")["jobs"]
    planned = {key for job in after if job["kind"] == "evaluate" for key in job["keys"]}
    assert planned == stored
    assert all(job["stored"] and job["keys_final"] for job in after)
    # Before the run: every key the plan gave is stored now (where a model was not trained yet,
    # the plan knew its plain evaluation, which --evaluation both always stores).
    assert {key for job in before if job["kind"] == "evaluate" for key in job["keys"]} <= stored


def test_the_python_entry_object_plans_and_runs(tmp_path):
    import arena

    home = tmp_path / "home"
    request = arena.Request(dataset="digits", options={"attacks": ["fgsm"], "defenses": ["standard"], "n": 16})
    with arena.Arena(home=home, device="cpu") as bench:
        jobs = bench.plan(request)
        assert [job.kind for job in jobs] == ["train-defense", "evaluate"] and not any(job.stored for job in jobs)
        (outcome,) = bench.run(request)["robustness"]
        assert outcome.ok and not outcome.reused and outcome.run.key == jobs[1].key
        assert bench.store.find_run(jobs[1].key).id == outcome.run.id
        assert (home / "arena.db").exists() and (home / "models" / f"{jobs[0].key}.safetensors").exists()
    with arena.Arena(home=home, device="cpu") as again:
        assert all(job.stored for job in again.plan(request))
        (reused,) = again.run(request)["robustness"]
        assert reused.reused and reused.run.id == outcome.run.id


def test_force_applies_to_its_own_request_only(tmp_path):
    import arena

    request = arena.Request(dataset="digits", options={"attacks": ["fgsm"], "defenses": ["standard"], "n": 8})
    with arena.Arena(home=tmp_path / "home", device="cpu") as bench:
        (first,) = bench.run(request)["robustness"]
        forced = arena.Request(dataset="digits", force=True, options=dict(request.options))
        (recomputed,) = bench.run(forced)["robustness"]
        assert not recomputed.reused and recomputed.run.id != first.run.id
        (again,) = bench.run(request)["robustness"]
        assert again.reused and again.run.id == recomputed.run.id


def test_jobs_an_executor_lost_still_leave_the_rest_stored_and_finished(tmp_path, monkeypatch):
    """An executor that stores every job but one and then names the one it lost: the tracks are
    finished over what was stored (cross-run flags refreshed) before the error reaches the caller."""
    import arena
    from arena import pairings
    from arena.executors import BaseExecutor, JobsFailed, failed_jobs, run_job

    class LosesTheLastJob(BaseExecutor):
        def run(self, plan, bench):
            outcomes = [o for job in plan[:-1] for o in run_job(job, bench)]
            raise failed_jobs([f"{plan[-1].label}: worker lost"], "test", outcomes)

    refreshed = []
    real = pairings.refresh_cross_run_flags
    monkeypatch.setattr(pairings, "refresh_cross_run_flags", lambda *a: refreshed.append(a[2]) or real(*a))
    request = arena.Request(dataset="digits", options={"attacks": ["fgsm", "pgd"], "defenses": ["standard"], "n": 8})
    with arena.Arena(home=tmp_path / "home", device="cpu") as bench:
        plan = bench.plan(request)
        with pytest.raises(JobsFailed, match=r"^1 job failed on test, the rest are stored") as lost:
            bench.run(request, LosesTheLastJob())
        (stored,) = lost.value.by_track["robustness"]
        assert stored.ok and stored.run.id is not None and stored.run.key == plan[1].key
        assert refreshed == ["digits"]
        assert bench.store.find_run(plan[2].key) is None  # the lost job: nothing stored
        (again, rerun) = bench.run(request)["robustness"]  # the same request runs only what is missing
        assert again.reused and again.run.id == stored.run.id and not rerun.reused
