"""The ``ray`` executor: every job of the plan as a Ray task (``pip install 'arena-bench[ray]'``).

``arena run ... --executor ray`` starts a local Ray instance on this machine; ``--ray-address
auto`` (or ``HOST:PORT``, or ``ARENA_RAY_ADDRESS``) joins a running cluster instead. Training
jobs are submitted first; each evaluation task is given the object references of the training
tasks it needs, so Ray starts it once they are done (no polling). A task asks for one GPU where
the cluster has GPUs and one CPU otherwise (``ARENA_RAY_JOB_GPUS`` / ``ARENA_RAY_JOB_CPUS`` set
other amounts).

Workers write nothing to the results database: each task returns the runs it would store and
the driver stores them as tasks complete (one writer, :func:`arena.executors.store_results`),
under one progress bar. A worker that dies mid-task is retried by Ray (``max_retries``); since
nothing was stored, nothing is lost or stored twice. A plugin's own failure is a failed run,
returned and stored once like any result; it is not retried. A task lost past its retries (and
the tasks that needed its model) is named once every other task is stored; an interrupted driver
cancels the tasks still waiting.

Workers use the driver's Arena home path and artifact store: across machines, name one shared
artifact store (``ARENA_ARTIFACTS``, :mod:`arena.artifact_store`) so that a model trained on one
worker is fetched by the others and every run's kept examples are where the driver reads them.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import TYPE_CHECKING, Any

from ..errors import ArenaError
from ..hookspecs import hookimpl
from . import (BaseExecutor, Finished, JobContext, engine, error_line, failed_jobs, progress, run_job_elsewhere,
               store_results)

if TYPE_CHECKING:
    from ..app import Arena
    from ..track import Job, Outcome

#: Times Ray runs a task again after its worker process died (not after an exception).
MAX_RETRIES = 3


def _run(context: JobContext, job: dict[str, Any], *needed: Any) -> Finished:
    """A Ray task: ``needed`` are the results of the training tasks it waits for."""
    return run_job_elsewhere(context, job)


class RayExecutor(BaseExecutor):
    name = "ray"
    summary = "each job a Ray task, on a local Ray instance or a cluster (--ray-address)"
    extra = "ray"

    def run(self, plan: list[Job], arena: Arena) -> list[Outcome]:
        ray = engine("ray", "ray")
        address = self.settings.get("address") or os.environ.get("ARENA_RAY_ADDRESS") or None
        started = not ray.is_initialized()
        if started:
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
            except Exception as exc:  # no cluster at that address, a port in use, ...
                where = f"address {address}" if address else "a local instance"
                raise ArenaError(f"cannot start or join Ray ({where}): {error_line(exc)}") from None
        try:
            return self._run(ray, plan, arena)
        finally:
            if started:
                ray.shutdown()

    def _resources(self, ray: Any) -> dict[str, float]:
        gpus = os.environ.get("ARENA_RAY_JOB_GPUS")
        cpus = os.environ.get("ARENA_RAY_JOB_CPUS")
        if gpus is None and cpus is None:
            return {"num_gpus": 1} if ray.cluster_resources().get("GPU", 0) > 0 else {"num_cpus": 1}
        wanted_gpus = float(gpus or 0)
        return {"num_gpus": wanted_gpus, "num_cpus": float(cpus) if cpus else (0.0 if wanted_gpus > 0 else 1.0)}

    def _run(self, ray: Any, plan: list[Job], arena: Arena) -> list[Outcome]:
        task = ray.remote(_run).options(max_retries=MAX_RETRIES, retry_exceptions=False, **self._resources(ray))
        context = JobContext.of(arena)
        submitted: dict[str, Any] = {}  # job key -> its task's reference
        order: dict[Any, int] = {}  # reference -> the job's position in the plan
        for position, job in enumerate(plan):
            needed = [submitted[key] for key in job.needs if key in submitted]
            reference = task.remote(context, job.as_dict(), *needed)
            if job.key is not None:
                submitted[job.key] = reference
            order[reference] = position
        results: dict[int, list[Outcome]] = {}
        failures: list[str] = []
        places: Counter[str] = Counter()
        reporter = arena.reporter
        waiting = list(order)
        try:
            with progress(arena, "jobs on Ray", len(waiting)) as advance:
                while waiting:
                    done, waiting = ray.wait(waiting, num_returns=1)
                    for reference in done:
                        label = plan[order[reference]].label
                        try:
                            finished: Finished = ray.get(reference)
                        except Exception as exc:  # lost past its retries, or a job it needs was
                            failures.append(f"{label}: {error_line(exc, last=True)}")
                        else:
                            results[order[reference]] = store_results(arena, finished)
                            places[finished.where.split(":")[0]] += 1
                        advance(1, label)
        except BaseException:  # interrupted: what was submitted must not run on without a driver
            for reference in waiting:
                ray.cancel(reference, force=True)
            raise
        if reporter is not None and places:
            reporter.log("ran on Ray: " + ", ".join(f"{count} jobs on {host}" for host, count in places.most_common()))
        outcomes = [outcome for position in sorted(results) for outcome in results[position]]
        if failures:
            raise failed_jobs(failures, "Ray", outcomes)
        return outcomes


@hookimpl
def register_executors(register):
    register(RayExecutor)
