"""Executors run plans. The interface is one method: ``run(plan, arena) -> outcomes``.

:class:`InProcessExecutor` runs every job in this process, in plan order (each job comes
after the jobs it needs). Another executor (a cluster engine) runs the same jobs elsewhere:
every job carries its key, its track, its kind, the keys of the jobs it needs and a JSON-able
spec. For each job, in an order that respects ``needs``, it calls ``arena.prepare(job)`` and
``arena.registry.track(job.track).execute(job, arena)`` with an :class:`arena.Arena` of its
own (same store, same model cache); :meth:`arena.Arena.run` calls ``Track.finish`` once all
outcomes are back. A training job records no failure: the evaluations that need the model ask
for it again and record why it failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .app import Arena
    from .track import Job, Outcome


class Executor(Protocol):
    def run(self, plan: list[Job], arena: Arena) -> list[Outcome]:
        """Run every job of ``plan``; the outcomes of the results stored, in plan order."""


class InProcessExecutor:
    """Runs each job in this process, one after the other."""

    def run(self, plan: list[Job], arena: Arena) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for job in plan:
            arena.prepare(job)
            outcomes += arena.registry.track(job.track).execute(job, arena)
        return outcomes
