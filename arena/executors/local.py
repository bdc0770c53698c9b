"""The ``local`` executor (the default): this machine.

With one GPU or none, every job runs in this process, in plan order. On a machine with several
GPUs (``--device auto`` or ``cuda``), one worker process per GPU (each sees only its own, through
``CUDA_VISIBLE_DEVICES``) runs jobs as soon as the jobs they need are done, and this process
stores what each sends back (one writer), as the Ray executor does. ``ARENA_LOCAL_WORKERS=N``
sets the number of worker processes (on the CPU too; 1 runs everything in this process);
``--max-parallel`` caps it; more workers than GPUs share them round robin. Worker processes share
this machine's home, model cache and artifact store, so a model one of them trained is loaded,
not trained again, by the others. A worker process that dies takes its pool down with it: the
jobs that were running there run again in fresh workers (up to :data:`MAX_RETRIES` times), and
since nothing was stored for them, nothing is lost or stored twice. The workers are spawned
interpreters: a script that calls :meth:`arena.Arena.run` needs the usual ``if __name__ ==
"__main__":`` guard.
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
    """How many worker processes, and the GPUs they share out round robin (none on the CPU)."""
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
    return count, gpus[:count]


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
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        context = JobContext.of(arena)
        position = {job.key: i for i, job in enumerate(plan) if job.key is not None}
        pending = set(range(len(plan)))
        done_keys: set[str] = set()
        running: dict[Any, int] = {}
        attempts = dict.fromkeys(range(len(plan)), 0)
        results: dict[int, list[Outcome]] = {}
        failures: list[str] = []
        where = f"{workers} local worker processes" + (f" (GPUs {', '.join(gpus)})" if gpus else "")
        if arena.reporter is not None:
            arena.reporter.log(f"running on {where}")
        pool = _Pool(workers, gpus)
        try:
            with progress(arena, "jobs on local workers", len(plan)) as advance:

                def failed(i: int, why: str) -> None:
                    failures.append(f"{plan[i].label}: {why}")
                    advance(1, plan[i].label)

                def lost(i: int, why: str) -> None:
                    """A job whose worker process died: run again in fresh workers, a few times."""
                    attempts[i] += 1
                    if attempts[i] > MAX_RETRIES:
                        failed(i, f"{why} ({attempts[i]} times)")
                    else:
                        pending.add(i)

                while pending or running:
                    if pool.broken and not running:
                        pool = pool.restart(arena)
                    # A job starts once every job it needs (in this plan) is done; a failed
                    # training counts as done: what needs its model asks for it again. Nothing
                    # starts on a pool that broke: it is restarted once its jobs are collected.
                    ready = [] if pool.broken else [
                        i for i in sorted(pending) if all(key in done_keys or key not in position for key in plan[i].needs)]
                    for i in ready:
                        pending.discard(i)
                        try:
                            running[pool.submit(run_job_elsewhere, context, plan[i].as_dict())] = i
                        except BrokenProcessPool:
                            lost(i, "its worker process died")
                    if not running:
                        if pending and pool.broken:
                            continue  # restarted at the top of the loop
                        for i in sorted(pending):
                            failed(i, "not run (a job it needs was not run)")
                        break
                    finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    for future in finished:
                        i = running.pop(future)
                        try:
                            finished_job = future.result()
                        except BrokenProcessPool:  # a worker died: every job of this pool runs again
                            lost(i, "its worker process died")
                            continue
                        except Exception as exc:  # a job that could not run
                            failure = error_line(exc, last=True)
                            finished_job = None
                        if plan[i].key is not None:
                            done_keys.add(plan[i].key)
                        if finished_job is None:
                            failed(i, failure)
                        else:
                            results[i] = store_results(arena, finished_job)
                            advance(1, plan[i].label)
                    if pool.broken:  # the jobs still running there are lost with it
                        for future, i in list(running.items()):
                            if future.done() and future.exception() is None:
                                continue  # finished before the pool broke: collected next round
                            running.pop(future)
                            lost(i, "its worker process died")
        except BaseException:  # interrupted: stop the workers rather than wait for their jobs
            pool.stop()
            raise
        pool.close()
        outcomes = [outcome for i in sorted(results) for outcome in results[i]]
        if failures:
            raise failed_jobs(failures, where, outcomes)
        return outcomes


#: Times a job whose worker process died is run again in fresh worker processes.
MAX_RETRIES = 2


class _Pool:
    """Worker processes, one per GPU slot (round robin where there are more workers than GPUs),
    started fresh after one of them dies."""

    def __init__(self, workers: int, gpus: list[str]) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.workers, self.gpus = workers, gpus
        spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: CUDA not started before the pin
        slots = spawn.Queue()
        for index in range(workers):
            slots.put(gpus[index % len(gpus)] if gpus else None)
        # On the CPU, the cores shared out (unless OMP_NUM_THREADS says how many each uses).
        threads = None if gpus or os.environ.get("OMP_NUM_THREADS") else max(1, (os.cpu_count() or 1) // workers)
        self.executor = ProcessPoolExecutor(max_workers=workers, mp_context=spawn, initializer=_start_worker,
                                            initargs=(slots, threads))

    @property
    def broken(self) -> bool:
        return bool(getattr(self.executor, "_broken", False))

    def submit(self, *args: Any) -> Any:
        return self.executor.submit(*args)

    def restart(self, arena: Arena) -> _Pool:
        if arena.reporter is not None:
            arena.reporter.warn("a local worker process died; its jobs run again in fresh worker processes")
        self.stop()
        return _Pool(self.workers, self.gpus)

    def stop(self) -> None:
        for process in list((getattr(self.executor, "_processes", None) or {}).values()):
            process.terminate()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self.executor.shutdown(wait=True)


@hookimpl
def register_executors(register):
    register(InProcessExecutor)
