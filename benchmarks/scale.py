"""The same matrix in this process and on Ray with 1 and 2 workers, side by side (not run in CI).

Runs ``arena run -a ATTACKS -d DEFENSES --n N`` three times, each with a fresh Arena home (so
every model trains) and a fresh database: in-process (``--executor local``), then on a local
Ray cluster started beforehand with ``ray start --head --num-cpus W`` for W = 1 and 2 (so the
cluster's start-up is not counted; ``--ray-address`` joins it). Every run uses one intra-op
thread per job (``OMP_NUM_THREADS=1``) so the three do the same arithmetic.

Prints each wall time and its ratio to in-process; Ray's overhead per job, (wall on 1 worker -
wall in-process) / jobs; the share of the in-process time spent training (the model records'
``train_seconds``) and attacking (the runs' ``attack_seconds``); and, from the measured mean
cost of a training job and of an evaluation job, the projected wall time of a 20 attacks x 50
defenses matrix on 1, 8 and 64 workers, under this model: trainings first, spread evenly over the
workers, then evaluations spread evenly, each job costing its measured mean plus the per-job
overhead (no stragglers, no data movement, workers as fast as this machine's cores).

    python benchmarks/scale.py                                  # -a all -d all --n 120 (long on 2 cores)
    python benchmarks/scale.py -a fgsm,pgd,square -d standard,advtrain,pgd-at --n 120
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ARENA = str(Path(sys.executable).with_name("arena"))
RAY = str(Path(sys.executable).with_name("ray"))


def run(args: list[str], home: Path, db: Path, extra: list[str]) -> float:
    env = {**os.environ, "ARENA_HOME": str(home), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    done = subprocess.run([ARENA, "run", *args, "--db", str(db), *extra], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"arena run failed: {done.stderr[-2000:]}")
    return wall


def costs(home: Path, db: Path) -> dict[str, float]:
    """Training and attacking seconds, and the job counts, of one finished run."""
    env = {**os.environ, "ARENA_HOME": str(home)}
    rows = json.loads(subprocess.run([ARENA, "results", "--json", "--db", str(db)], env=env, capture_output=True,
                                     text=True, check=True).stdout)
    records = [json.loads(path.read_text()) for path in (home / "models").rglob("*.json")]
    trained = [r for r in records if isinstance(r, dict) and isinstance(r.get("train_seconds"), (int, float))]
    return {
        "train": sum(r["train_seconds"] for r in trained),
        "trainings": len(trained),
        "attack": sum((row.get("provenance") or {}).get("attack_seconds") or 0.0 for row in rows),
        "evaluate": sum(row.get("duration_s") or 0.0 for row in rows),
        "evaluations": len(rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-a", "--attacks", default="all")
    parser.add_argument("-d", "--defenses", default="all")
    parser.add_argument("--n", type=int, default=120)
    args = parser.parse_args()
    matrix = ["-a", args.attacks, "-d", args.defenses, "--n", str(args.n)]
    base = Path(tempfile.mkdtemp(prefix="arena-scale-"))
    print(f"matrix: arena run {' '.join(matrix)}  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    walls: dict[str, float] = {}
    try:
        walls["in-process"] = run(matrix, base / "home-local", base / "local.db", ["--executor", "local"])
        measured = costs(base / "home-local", base / "local.db")
        for workers in (1, 2):
            port = 6400 + workers
            subprocess.run([RAY, "start", "--head", "--port", str(port), "--num-cpus", str(workers),
                            "--include-dashboard=false", "--disable-usage-stats"], check=True, capture_output=True,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
            try:
                name = f"ray, {workers} worker{'s' * (workers > 1)}"
                walls[name] = run(matrix, base / f"home-ray{workers}", base / f"ray{workers}.db",
                                  ["--executor", "ray", "--ray-address", "auto"])
            finally:
                subprocess.run([RAY, "stop", "--force"], capture_output=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    jobs = measured["trainings"] + measured["evaluations"]
    local = walls["in-process"]
    for name, wall in walls.items():
        print(f"{name:<16} {wall:8.1f} s   {wall / local:5.2f}x in-process")
    overhead = (walls["ray, 1 worker"] - local) / jobs
    print(f"jobs: {measured['trainings']} trainings + {measured['evaluations']} evaluations; Ray's overhead per job "
          f"{1000 * overhead:.0f} ms ((1-worker wall - in-process wall) / jobs)")
    print(f"in-process time training {measured['train'] / local:.0%}, attacking {measured['attack'] / local:.0%}, "
          f"evaluating in all (attack, judging, storing) {measured['evaluate'] / local:.0%}")
    train_job = measured["train"] / max(measured["trainings"], 1)
    eval_job = measured["evaluate"] / max(measured["evaluations"], 1)
    print(f"mean job: training {train_job:.2f} s, evaluation {eval_job:.2f} s; projected 20 x 50 matrix "
          "(50 trainings, then 1,000 evaluations, spread evenly, each job its mean plus the overhead):")
    for workers in (1, 8, 64):
        projected = (math.ceil(50 / workers) * (train_job + overhead)
                     + math.ceil(1000 / workers) * (eval_job + overhead))
        print(f"  {workers:>2} worker{'s' if workers > 1 else ' '}  {projected / 60:8.1f} min")


if __name__ == "__main__":
    main()
