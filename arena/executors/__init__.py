"""Executors run plans. The contract is one method: ``run(plan, arena) -> outcomes``.

An executor is registered through the ``register_executors`` hook like any plugin
(``register(ExecutorClass)``; built in: ``local`` and ``ray``) and chosen with ``arena run
--executor NAME`` or ``ARENA_EXECUTOR``. Its class has a ``name``, a one-line ``summary``, the
pip ``extra`` that installs what it needs (if anything), and takes the run's executor settings
as keyword arguments (``address`` from ``--ray-address``, ``max_parallel`` from
``--max-parallel``; each executor reads those it knows).

Every job of a plan carries its key, its track, its kind, the keys of the jobs it needs and a
JSON-able spec. An executor runs each job, in an order that respects ``needs``, as
:func:`run_job` does: an :class:`arena.Arena` of its own (same home, store and model cache)
calls ``arena.prepare(job)`` and ``Track.execute(job, arena)``. An executor that runs jobs in
other processes passes :class:`JobContext` and the job's dict to :func:`run_job_elsewhere`
there, which writes nothing to the results database: it returns the runs to store, and the
driver stores them with :func:`store_results` (one writer). :meth:`arena.Arena.run` calls
``Track.finish`` once all outcomes are back; where the engine lost jobs, the executor stores
every other job's results first and then raises :class:`JobsFailed` with their outcomes, so the
tracks are finished over what was stored. A training job records no failure: the evaluations
that need the model ask for it again and record why it failed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ..errors import ArenaError

if TYPE_CHECKING:
    from ..app import Arena
    from ..store import Run
    from ..track import Job, Outcome


class Executor(Protocol):
    def run(self, plan: list[Job], arena: Arena) -> list[Outcome]:
        """Run every job of ``plan``; the outcomes of the results stored, in plan order."""


class BaseExecutor:
    """What every registered executor declares."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    #: The ``pip install arena-bench[EXTRA]`` that brings what this executor needs.
    extra: ClassVar[str | None] = None

    def __init__(self, **settings: Any) -> None:
        self.settings = settings

    def run(self, plan: list[Job], arena: Arena) -> list[Outcome]:  # pragma: no cover - contract
        raise NotImplementedError


class JobsFailed(ArenaError):
    """Jobs the executor's engine could not run (a worker lost for good, a Slurm job out of time):
    raised after the outcomes of every other job are stored. :meth:`arena.Arena.run` finishes
    the tracks over those outcomes and raises it again with ``by_track`` set."""

    def __init__(self, message: str, outcomes: list[Outcome]) -> None:
        super().__init__(message)
        self.outcomes = outcomes
        self.by_track: dict[str, list[Outcome]] = {}


def failed_jobs(failures: list[str], where: str, outcomes: list[Outcome]) -> JobsFailed:
    """The error naming every job that failed on ``where`` (the rest are stored)."""
    return JobsFailed(f"{len(failures)} job{'s' * (len(failures) > 1)} failed on {where}, the rest are stored "
                      f"(the same command again runs only what is missing): " + "; ".join(failures), outcomes)


def engine(module: str, executor: str) -> Any:
    """The engine an executor drives (``import module``), or a one-line error saying what to
    install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ArenaError(f"--executor {executor} needs {module}: pip install 'arena-bench[{executor}]'") from None


def executor_name(name: str | None) -> str:
    """The executor asked for: ``name``, else ``ARENA_EXECUTOR``, else ``local``."""
    return name or os.environ.get("ARENA_EXECUTOR") or "local"


@dataclass(frozen=True)
class JobContext:
    """What a job run in another process needs to build its :class:`arena.Arena`."""

    home: str
    db: str
    device: str
    force: bool
    deterministic: bool
    #: The shared artifact store (``ARENA_ARTIFACTS``) the driver names, if any.
    artifacts: str | None = None

    @classmethod
    def of(cls, arena: Arena) -> JobContext:
        return cls(str(arena.home), arena.db_url, arena.device_name, arena.force, arena.deterministic,
                   os.environ.get("ARENA_ARTIFACTS") or None)


@dataclass
class Finished:
    """What one job run elsewhere sends back: the runs to store (with whether each supersedes
    the current run of its key, and the label of the outcome reporting it, None for none), the
    outcomes it reused (by run id), and where it ran."""

    job: str
    writes: list[tuple[Run, bool, str | None, dict[str, Any]]]
    reused: list[tuple[int, str, dict[str, Any]]]
    where: str = ""
    seconds: float = 0.0
    #: The warnings the job gave (a refused checkpoint, an unreachable artifact store, ...): the
    #: driver shows them, since a worker's own output goes to its log.
    warnings: list[str] = field(default_factory=list)


class _PendingWrites:
    """The store a job run elsewhere sees: it reads the results database as usual and keeps
    every run it would save, for the driver to store."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.saved: list[tuple[Run, bool]] = []

    def save_run(self, run: Run, replace: bool = False) -> Run:
        self.saved.append((run, replace))
        return run

    def find_run(self, key: str) -> Run | None:
        """As the store's, counting the runs this job saved: a job that starts over (a pairing
        found random late) reuses what its first attempt saved, as it does in-process."""
        for run, _ in reversed(self.saved):
            if run.key == key and run.status == "ok":
                return run
        return self._store.find_run(key)

    def update_run(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a job run elsewhere does not update stored runs: the driver does (Track.finish)")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def run_job(job: Job, arena: Arena) -> list[Outcome]:
    """One job, in this process."""
    arena.prepare(job)
    return arena.registry.track(job.track).execute(job, arena)


def run_job_elsewhere(context: JobContext, job: dict[str, Any]) -> Finished:
    """One job in a worker process: its results come back to be stored by the driver.

    A worker process keeps one :class:`arena.Arena` per context across the jobs it runs (its
    plugins, datasets, models and attack workers loaded once), as the ``local`` executor keeps
    one for the whole plan; its store keeps the runs each job would save, to send back.
    """
    import socket
    import time

    from ..track import Job

    started = time.perf_counter()
    plan_job = Job(**{**job, "needs": tuple(job["needs"]), "keys": tuple(job["keys"])})
    arena, pending = _worker_arena(context)
    pending.saved.clear()  # a worker runs one job at a time
    warnings = arena.reporter.warnings  # type: ignore[union-attr]
    warnings.clear()
    try:
        outcomes = run_job(plan_job, arena)
        saved = list(pending.saved)
    finally:
        pending.saved.clear()
    kept = {id(run) for run, _ in saved}
    lost = [o.label for o in outcomes if id(o.run) not in kept and o.run.id is None]
    if lost:  # a result saved past the job's store would be lost: never silently
        raise RuntimeError(f"{', '.join(lost)}: the result was neither stored nor kept for the driver")
    # Every run the job saved is stored, as in-process: also one that no outcome reports (a
    # first attempt's, when the job started over).
    labels = {id(o.run): (o.label, o.details) for o in outcomes}
    writes = [(run, replace, *labels.get(id(run), (None, {}))) for run, replace in saved]
    reused = [(o.run.id, o.label, o.details) for o in outcomes if id(o.run) not in kept]
    where = f"{socket.gethostname()}:{os.getpid()}"
    return Finished(plan_job.key or plan_job.label, writes, reused, where, time.perf_counter() - started,
                    list(warnings))


_WORKER_ARENAS: dict[JobContext, tuple[Arena, _PendingWrites]] = {}


def _worker_arena(context: JobContext) -> tuple[Arena, _PendingWrites]:
    """This worker process's Arena for ``context``, whose store reads the database (the driver
    checked its file when it opened it) and keeps the runs each job would save. The same store
    serves every job, so that whatever the tracks cache between jobs writes to it too."""
    found = _WORKER_ARENAS.get(context)
    if found is None:
        from ..app import Arena
        from ..store import open_store

        if context.artifacts:  # the worker's models go to, and come from, the driver's store
            os.environ["ARENA_ARTIFACTS"] = context.artifacts
        arena = Arena(home=context.home, db=context.db, device=context.device, force=context.force,
                      deterministic=context.deterministic, reporter=_worker_reporter())
        pending = _PendingWrites(open_store(arena.db_url, writes=False, check=False))
        arena._store = pending  # type: ignore[assignment]  # reads as usual, writes come back
        found = _WORKER_ARENAS[context] = (arena, pending)
    return found


def _worker_reporter() -> Any:
    """A reporter that shows nothing and keeps the warnings, for the driver to show."""
    from rich.console import Console

    from ..progress import Reporter

    class Collecting(Reporter):
        def __init__(self) -> None:
            super().__init__(Console(stderr=True, quiet=True), enabled=False, plain=False)
            self.warnings: list[str] = []

        def warn(self, message: str) -> None:
            self.warnings.append(message)

    return Collecting()


def progress(arena: Arena, description: str, total: int) -> Any:
    """The session's progress bar over ``total`` jobs (nothing shown without a reporter)."""
    import contextlib

    if arena.reporter is None:
        return contextlib.nullcontext(lambda steps=1, status="": None)
    return arena.reporter.task(description, total)


def error_line(exc: BaseException, last: bool = False) -> str:
    """One line of an engine's error: its first (or, for a remote traceback, its last)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return (lines[-1] if last else lines[0])[:300]


def store_results(arena: Arena, finished: Finished) -> list[Outcome]:
    """Store what a job run elsewhere sent back (the driver is the one writer); its outcomes."""
    from ..track import Outcome

    if arena.reporter is not None:
        for warning in finished.warnings:
            arena.reporter.warn(f"{warning} (job {finished.job} on {finished.where})")
    outcomes = []
    for run, replace, label, details in finished.writes:
        stored = arena.store.save_run(run, replace=replace)
        if label is not None:  # None: stored, but no outcome of the job reports it
            outcomes.append(Outcome(stored, stored is not run, label, details))
    for run_id, label, details in finished.reused:
        run = arena.store.get_run(run_id)
        if run is not None:
            outcomes.append(Outcome(run, True, label, details))
    return outcomes
