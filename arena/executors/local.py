"""The ``local`` executor: every job in this process, one after the other (the default)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..hookspecs import hookimpl
from . import BaseExecutor, run_job

if TYPE_CHECKING:
    from ..app import Arena
    from ..track import Job, Outcome


class InProcessExecutor(BaseExecutor):
    """Runs each job in this process, in plan order (each job comes after the jobs it needs)."""

    name = "local"
    summary = "every job in this process, in plan order (the default)"

    def run(self, plan: list[Job], arena: Arena) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for job in plan:
            outcomes += run_job(job, arena)
        return outcomes


@hookimpl
def register_executors(register):
    register(InProcessExecutor)
