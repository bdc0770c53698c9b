"""The ``local`` executor (the default): this machine.

With one GPU or none, every job runs in this process, in plan order. On a machine with several
GPUs (``--device auto`` or ``cuda``), one worker process per GPU (each sees only its own, through
``CUDA_VISIBLE_DEVICES``) runs jobs as soon as the jobs they need are done, and this process
stores what each sends back (one writer), as the Ray executor does. ``ARENA_LOCAL_WORKERS=N``
sets the number of worker processes (on the CPU too; 1 runs everything in this process);
``--max-parallel`` caps it. Worker processes share this machine's home, model cache and
artifact store, so a model one of them trained is loaded, not trained again, by the others.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError
from ..hookspecs import hookimpl
from . import BaseExecutor, JobContext, error_line, failed_jobs, progress, run_job, run_job_elsewhere, store_results

if TYPE_CHECKING:
    from ..app import Arena
    from ..track import Job, Outcome


def visible_gpus(device: str) -> list[str]:
    """The GPUs one worker process each would get: those CUDA shows this process when the device
    is ``auto`` or ``cuda`` (an explicit ``cuda:N`` or ``cpu`` runs in this process)."""
    if device not in ("auto", "cuda"):
        return []
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    shown = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return shown[:count] if shown else [str(i) for i in range(count)]


def worker_count(device: str, max_parallel: int | None = None) -> tuple[int, list[str]]:
    """How many worker processes, and the GPU each gets (none on the CPU)."""
    gpus = visible_gpus(device)
    asked = os.environ.get("ARENA_LOCAL_WORKERS")
    if asked:
        try:
            count = int(asked)
            if count < 1:
                raise ValueError
        except ValueError:
            raise InvalidInputError(f"ARENA_LOCAL_WORKERS={asked!r} is not a number of worker processes: "
                                    "use 1 or more") from None
    else:
        count = max(len(gpus), 1)
    if max_parallel:
        count = min(count, int(max_parallel))
    return count, gpus[:count] if len(gpus) >= count else []


def _start_worker(slots: Any, threads: int | None) -> None:
    """A worker process's first step, before torch starts CUDA: take one GPU; on the CPU, a
    share of the cores."""
    gpu = slots.get()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


class InProcessExecutor(BaseExecutor):
    """This process, in plan order; one worker process per GPU where there are several."""

    name = "local"
    summary = "this machine: every job in this process, or one worker process per GPU where there are several"

    def run(self, plan: list[Job], arena: Arena) -> list[Outcome]:
        workers, gpus = worker_count(arena.device_name, self.settings.get("max_parallel"))
        if workers <= 1 or len(plan) <= 1:
            outcomes: list[Outcome] = []
            for job in plan:
                outcomes += run_job(job, arena)
            return outcomes
        return self._in_processes(plan, arena, workers, gpus)

    def _in_processes(self, plan: list[Job], arena: Arena, workers: int, gpus: list[str]) -> list[Outcome]:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        context = JobContext.of(arena)
        spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: CUDA not started before the pin
        slots = spawn.Queue()
        for index in range(workers):
            slots.put(gpus[index] if gpus else None)
        position = {job.key: i for i, job in enumerate(plan) if job.key is not None}
        pending = set(range(len(plan)))
        done_keys: set[str] = set()
        running: dict[Any, int] = {}
        results: dict[int, list[Outcome]] = {}
        failures: list[str] = []
        where = f"{workers} local worker processes" + (f" (GPUs {', '.join(gpus)})" if gpus else "")
        if arena.reporter is not None:
            arena.reporter.log(f"running on {where}")
        # On the CPU, the cores shared out (unless OMP_NUM_THREADS says how many each uses).
        threads = None if gpus or os.environ.get("OMP_NUM_THREADS") else max(1, (os.cpu_count() or 1) // workers)
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=spawn, initializer=_start_worker,
                                   initargs=(slots, threads))
        try:
            with progress(arena, "jobs on local workers", len(plan)) as advance:

                def failed(i: int, why: str) -> None:
                    failures.append(f"{plan[i].label}: {why}")
                    advance(1, plan[i].label)

                while pending or running:
                    # A job starts once every job it needs (in this plan) is done; a failed
                    # training counts as done: what needs its model asks for it again.
                    ready = [i for i in sorted(pending)
                             if all(key in done_keys or key not in position for key in plan[i].needs)]
                    for i in ready:
                        pending.discard(i)
                        try:
                            running[pool.submit(run_job_elsewhere, context, plan[i].as_dict())] = i
                        except BrokenProcessPool as exc:  # a worker process died: nothing more runs
                            failed(i, f"not run ({error_line(exc)})")
                    if not running:
                        for i in sorted(pending):
                            failed(i, "not run (a job it needs was not run)")
                        break
                    finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    for future in finished:
                        i = running.pop(future)
                        if plan[i].key is not None:
                            done_keys.add(plan[i].key)
                        try:
                            results[i] = store_results(arena, future.result())
                        except Exception as exc:  # a worker process that died, or a job that could not run
                            failed(i, error_line(exc, last=True))
                        else:
                            advance(1, plan[i].label)
        except BaseException:  # interrupted: stop the workers rather than wait for their jobs
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        outcomes = [outcome for i in sorted(results) for outcome in results[i]]
        if failures:
            raise failed_jobs(failures, where, outcomes)
        return outcomes


@hookimpl
def register_executors(register):
    register(InProcessExecutor)
