"""The ``slurm`` executor: the plan as Slurm job arrays through submitit
(``pip install 'arena-bench[slurm]'``).

One job array per level of the plan (the trainings, then the evaluations that need them), each
array's parallelism ``--max-parallel`` (Slurm's ``%N``). Every array task runs one job with
:func:`arena.executors.run_job_elsewhere` and writes nothing to the results database; this
process, the driver, stores what each returns as it completes (one writer). Logs of every job
are kept under ``$ARENA_HOME/slurm/``; a job that fails (killed, out of time, out of memory) is
named with its log, after the rest of its level is stored. A plugin's own failure is a failed
run, stored once.

``ARENA_SLURM_CLUSTER`` picks submitit's cluster: unset, Slurm when ``sbatch`` is on the path
and submitit's ``local`` executor otherwise (the same pickled jobs as processes on this
machine; ``--max-parallel`` then bounds how many run at once). ``ARENA_SLURM_PARTITION``,
``ARENA_SLURM_TIMEOUT_MIN`` (default 60), ``ARENA_SLURM_GPUS`` (per job, default 0) and
``ARENA_SLURM_CPUS`` (default 1) set the resources each job asks for. Every node must reach the
database and the artifact store (``ARENA_ARTIFACTS``); the logs are in the driver's home, which
the nodes must share (as a Slurm cluster's home usually is).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from ..hookspecs import hookimpl
from . import BaseExecutor, JobContext, engine, error_line, failed_jobs, progress, run_job_elsewhere, store_results

if TYPE_CHECKING:
    from ..app import Arena
    from ..track import Job, Outcome


def levels(plan: list[Job]) -> list[list[int]]:
    """The plan's job positions by level: a job's level is one more than that of the deepest job
    it needs (jobs it needs that the plan does not hold are stored already)."""
    level_of: dict[str, int] = {}
    depth: list[int] = []
    for job in plan:  # plan order: every job comes after the jobs it needs
        level = 1 + max((level_of[key] for key in job.needs if key in level_of), default=-1)
        depth.append(level)
        if job.key is not None:
            level_of[job.key] = level
    return [[i for i, d in enumerate(depth) if d == level] for level in range(max(depth, default=-1) + 1)]


class SlurmExecutor(BaseExecutor):
    name = "slurm"
    summary = "each plan level a Slurm job array through submitit (--max-parallel), or local processes"
    extra = "slurm"

    def run(self, plan: list[Job], arena: Arena) -> list[Outcome]:
        submitit = engine("submitit", "slurm")
        cluster = os.environ.get("ARENA_SLURM_CLUSTER") or None
        folder = arena.home / "slurm" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=cluster)
        max_parallel = self.settings.get("max_parallel")
        parameters: dict[str, Any] = {
            "timeout_min": int(os.environ.get("ARENA_SLURM_TIMEOUT_MIN", "60")),
            "gpus_per_node": int(os.environ.get("ARENA_SLURM_GPUS", "0")),
            "cpus_per_task": int(os.environ.get("ARENA_SLURM_CPUS", "1")),
            "name": "arena",
        }
        if executor.cluster == "slurm":
            if max_parallel:
                parameters["slurm_array_parallelism"] = int(max_parallel)
            if os.environ.get("ARENA_SLURM_PARTITION"):
                parameters["slurm_partition"] = os.environ["ARENA_SLURM_PARTITION"]
        executor.update_parameters(**parameters)
        if arena.reporter is not None:
            arena.reporter.log(f"jobs and their logs: {folder} ({executor.cluster})")
        context = JobContext.of(arena)
        results: dict[int, list[Outcome]] = {}
        failures: list[str] = []
        with progress(arena, f"jobs on {executor.cluster}", len(plan)) as advance:
            for level in levels(plan):
                # Off Slurm, waves of --max-parallel jobs stand in for the array's parallelism.
                size = len(level) if executor.cluster == "slurm" or not max_parallel else int(max_parallel)
                for start in range(0, len(level), size):
                    wave = level[start : start + size]
                    jobs = executor.map_array(run_job_elsewhere, [context] * len(wave),
                                              [plan[i].as_dict() for i in wave])
                    position = {job.job_id: i for job, i in zip(jobs, wave)}
                    try:
                        for job in submitit.helpers.as_completed(jobs):
                            label = plan[position[job.job_id]].label
                            try:
                                results[position[job.job_id]] = store_results(arena, job.result())
                            except Exception as exc:  # killed, out of time or memory: named with its log
                                failures.append(f"{label}: {error_line(exc, last=True)} (log: {job.paths.stderr})")
                            advance(1, label)
                    except BaseException:  # interrupted: the wave's jobs must not run on without a driver
                        for job in jobs:
                            if not job.done():
                                job.cancel(check=False)
                        raise
        outcomes = [outcome for position in sorted(results) for outcome in results[position]]
        if failures:
            raise failed_jobs(failures, executor.cluster, outcomes)
        return outcomes


@hookimpl
def register_executors(register):
    register(SlurmExecutor)
