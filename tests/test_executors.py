"""Executors: the same plan run in this process and as tasks on a real local Ray instance stores
the same results; a Ray worker killed mid-job loses and duplicates nothing."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from arena.errors import ArenaError
from arena.plugins import get_registry

from .conftest import run_arena

MATRIX = ["-a", "fgsm,pgd", "-d", "standard,advtrain", "--n", "60"]


def _stored(path: Path) -> tuple[list[str], list[tuple]]:
    """Every stored key (with how often it is stored) and every per-sample outcome, by key."""
    with sqlite3.connect(path) as conn:
        keys = sorted(row[0] for row in conn.execute("SELECT key FROM runs WHERE status = 'ok'"))
        samples = sorted(conn.execute(
            'SELECT r.key, s."index", s.robust, s.adv_pred FROM samples s JOIN runs r ON r.id = s.run_id').fetchall())
    return keys, samples


def _run(tmp_path: Path, name: str, *extra: str, env: dict[str, str] | None = None):
    # One intra-op thread in both: a Ray task asks for one CPU and gets OMP_NUM_THREADS=1, and
    # the thread count changes training's floating-point sums.
    environment = {"ARENA_HOME": str(tmp_path / f"home-{name}"), "OMP_NUM_THREADS": "1", **(env or {})}
    return run_arena("run", *MATRIX, "--db", str(tmp_path / f"{name}.db"), *extra, env=environment, timeout=600)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[list[str], list[tuple]]:
    folder = tmp_path_factory.mktemp("in-process")
    done = _run(folder, "local")
    assert done.returncode == 0, done.stderr
    return _stored(folder / "local.db")


def test_ray_stores_exactly_what_the_in_process_executor_stores(tmp_path, reference):
    done = _run(tmp_path, "ray", "--executor", "ray")
    assert done.returncode == 0, done.stderr
    assert "ran on Ray: 6 jobs on" in done.stderr  # 2 trainings + 4 evaluations, each a task
    keys, samples = _stored(tmp_path / "ray.db")
    assert keys == reference[0] and len(keys) == len(set(keys)) == 4
    assert samples == reference[1] and len(samples) == 4 * 60
    # Each worker trained in its own process: the models are in the Ray run's own home.
    assert len(list((tmp_path / "home-ray" / "models").rglob("*.safetensors"))) >= 2
    # The workers kept each run's examples in the artifact store the driver reads, by content.
    with sqlite3.connect(tmp_path / "ray.db") as conn:
        kept = [json.loads(row[0])["examples"] for row in conn.execute("SELECT artifacts FROM runs")]
    assert len(kept) == 4 and all((tmp_path / "home-ray" / "artifacts" / path).is_file() for path in kept)


def _processes(part: bytes) -> list[int]:
    """PIDs of the processes whose command line holds ``part``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if part in command:
                found.append(int(entry.name))
    return found


def _killing_one(part: bytes, run):
    """``run()`` while the first process matching ``part`` seen for half a second is killed
    (once); the PIDs killed and what ``run`` returned."""
    killed: list[int] = []
    stop = threading.Event()

    def killer() -> None:
        seen: dict[int, float] = {}
        while not stop.is_set() and not killed:
            now = time.monotonic()
            for pid in _processes(part):
                if now - seen.setdefault(pid, now) > 0.5:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    break
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        return killed, run()
    finally:
        stop.set()
        thread.join()


def test_a_ray_worker_killed_mid_job_loses_and_duplicates_nothing(tmp_path, reference):
    # Ray titles a worker running one of Arena's tasks ``ray::_run``.
    killed, done = _killing_one(b"ray::_run", lambda: _run(tmp_path, "ray", "--executor", "ray"))
    assert killed, "no Ray task was seen running"
    assert done.returncode == 0, done.stderr
    keys, samples = _stored(tmp_path / "ray.db")
    assert keys == reference[0] and samples == reference[1]  # retried, stored once, same numbers


def test_an_unknown_executor_and_a_missing_engine_are_one_line_errors(tmp_path, monkeypatch):
    done = run_arena("run", "-a", "fgsm", "-d", "standard", "--n", "10", "--db", str(tmp_path / "x.db"),
                     env={"ARENA_EXECUTOR": "nope"})
    assert done.returncode == 1
    assert done.stderr.strip() == "Error: unknown executor 'nope' (registered: local, ray, slurm): choose one with " \
                                  "--executor or ARENA_EXECUTOR"
    assert not (tmp_path / "x.db").exists() or _stored(tmp_path / "x.db")[0] == []

    import sys

    for engine, extra in (("ray", "ray"), ("submitit", "slurm")):
        monkeypatch.setitem(sys.modules, engine, None)  # as if it were not installed
        with pytest.raises(ArenaError, match=rf"pip install 'arena-bench\[{extra}\]'"):
            get_registry().executor(extra).run([], None)


def test_the_driver_killed_then_rerun_stores_every_job_once(tmp_path, reference):
    """The driver (and the Ray instance it started) killed after its first stored result; the
    same command again reuses what was stored and runs the rest."""
    import subprocess
    import sys

    db = tmp_path / "ray.db"
    env = {**os.environ, "ARENA_HOME": str(tmp_path / "home-ray"), "OMP_NUM_THREADS": "1"}
    arena = str(Path(sys.executable).with_name("arena"))
    driver = subprocess.Popen([arena, "run", *MATRIX, "--db", str(db), "--executor", "ray"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    try:
        while driver.poll() is None and time.monotonic() < deadline:
            try:
                if db.exists() and _stored(db)[0]:
                    break
            except sqlite3.OperationalError:  # the schema is being created
                pass
            time.sleep(0.1)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and every Ray process it started
        driver.wait()
    first = _stored(db)[0]
    assert 1 <= len(first) < 4, first  # killed mid-matrix
    done = _run(tmp_path, "ray", "--executor", "ray")
    assert done.returncode == 0, done.stderr
    keys, samples = _stored(db)
    assert keys == reference[0] and samples == reference[1]


SUBMITIT_LOCAL = {"ARENA_SLURM_CLUSTER": "local"}  # submitit runs the same pickled jobs as processes here


def test_slurm_arrays_through_submitits_local_executor_store_what_in_process_stores(tmp_path, reference):
    done = _run(tmp_path, "slurm", "--executor", "slurm", "--max-parallel", "2", env=SUBMITIT_LOCAL)
    assert done.returncode == 0, done.stderr
    keys, samples = _stored(tmp_path / "slurm.db")
    assert keys == reference[0] and samples == reference[1]
    logs = list((tmp_path / "home-slurm" / "slurm").rglob("*_log.err"))
    assert len(logs) == 6  # one per job: 2 trainings, then 4 evaluations


def test_a_killed_slurm_job_is_named_with_its_log_and_a_rerun_completes(tmp_path, reference):
    # submitit's local executor runs each job as ``python -u -m submitit.core._submit FOLDER``.
    killed, done = _killing_one(b" -u -m submitit.core._submit ",
                                lambda: _run(tmp_path, "slurm", "--executor", "slurm", env=SUBMITIT_LOCAL))
    assert killed and done.returncode == 1
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert "1 job failed on local, the rest are stored" in line and "(log: " in line
    assert "fgsm" in done.stdout or "pgd" in done.stdout  # the stored results' table, before the error
    again = _run(tmp_path, "slurm", "--executor", "slurm", env=SUBMITIT_LOCAL)
    assert again.returncode == 0, again.stderr
    keys, samples = _stored(tmp_path / "slurm.db")
    assert keys == reference[0] and samples == reference[1]


def test_local_worker_processes_store_what_in_process_stores(tmp_path, reference):
    """One worker process per GPU on a machine with several; ARENA_LOCAL_WORKERS sets the count
    on the CPU too, which runs the same worker code here."""
    done = _run(tmp_path, "workers", env={"ARENA_LOCAL_WORKERS": "2"})
    assert done.returncode == 0, done.stderr
    assert "running on 2 local worker processes" in done.stderr
    keys, samples = _stored(tmp_path / "workers.db")
    assert keys == reference[0] and samples == reference[1]


def test_a_killed_local_worker_loses_and_duplicates_nothing(tmp_path, reference):
    # The worker processes are spawned interpreters (``... spawn_main(...) --multiprocessing-fork``).
    killed, done = _killing_one(b"spawn_main", lambda: _run(tmp_path, "workers", env={"ARENA_LOCAL_WORKERS": "2"}))
    assert killed and done.returncode == 0, done.stderr
    assert "a local worker process died; its jobs run again in fresh worker processes" in done.stderr
    keys, samples = _stored(tmp_path / "workers.db")
    assert keys == reference[0] and samples == reference[1]  # run again, stored once, same numbers


def test_local_worker_count():
    from arena.executors.local import worker_count

    assert worker_count("cpu") == (1, [])  # no GPUs: this process
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARENA_LOCAL_WORKERS", "3")
        assert worker_count("cpu") == (3, []) and worker_count("cpu", max_parallel=2) == (2, [])
        patch.setattr("arena.executors.local.visible_gpus", lambda device: ["0", "1"])
        assert worker_count("auto") == (3, ["0", "1"])  # three workers share two GPUs round robin
        patch.setenv("ARENA_LOCAL_WORKERS", "none")
        with pytest.raises(ArenaError, match="ARENA_LOCAL_WORKERS='none' is not a number of worker processes"):
            worker_count("cpu")


def test_plan_levels():
    from arena.executors.slurm import levels
    from arena.track import Job

    plan = [Job("t", "train", "m1", "a"), Job("t", "train", "m2", "b"),
            Job("t", "evaluate", "r1", "c", needs=("m1",)), Job("t", "evaluate", "r2", "d", needs=("m1", "m2")),
            Job("t", "evaluate", "r3", "e", needs=("stored-model",)), Job("t", "report", "r4", "f", needs=("r2",))]
    assert levels(plan) == [[0, 1, 4], [2, 3], [5]]


def test_the_generative_track_on_ray_stores_what_in_process_stores(tmp_path):
    """Its jobs (the reference classifier, then a score per generator) through Ray workers,
    whose cached scorer writes to the worker's store across jobs."""
    command = ["run", "-g", "uniform,memorizer", "--samples", "64"]
    env = {"OMP_NUM_THREADS": "1"}
    stored = {}
    for name, extra in (("local", []), ("ray", ["--executor", "ray"])):
        done = run_arena(*command, "--db", str(tmp_path / f"{name}.db"), *extra,
                         env={**env, "ARENA_HOME": str(tmp_path / f"home-{name}")}, timeout=600)
        assert done.returncode == 0, done.stderr
        with sqlite3.connect(tmp_path / f"{name}.db") as conn:
            stored[name] = sorted(conn.execute(
                "SELECT r.key, g.generator, g.fid, g.fid_test, g.memorised FROM runs r "
                "JOIN generative_results g ON g.run_id = r.id").fetchall())
    assert sorted(row[1] for row in stored["ray"]) == ["memorizer", "uniform"]
    assert stored["ray"] == stored["local"]
