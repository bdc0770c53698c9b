"""Tracks, plans and jobs: the contract every kind of evaluation follows.

A :class:`Track` is a kind of evaluation (robustness of defenses against attacks, generative
quality and likelihood, ...). It is registered through the ``register_tracks`` hook, as plugins
are, and owns everything particular to it: the ``arena run`` options it adds, how a request
becomes a plan of :class:`Job`, how one job executes, its stored result rows, and its
leaderboard views. Nothing else in Arena lists the tracks.

The flow of ``arena run``::

    options -> Request --Track.plan--> [Job, ...] --Executor--> Track.execute(job) --> Track.finish
        --> Host (datasets, trained models) --> Store (one Run per result) --> Track.rows / views

A track module is imported by every command, those that only read results too, so it must not
import torch or any plugin module at import time: import them inside the methods that run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

if TYPE_CHECKING:
    import click

    from .app import Arena
    from .store import Run, Store


@dataclass(frozen=True)
class Job:
    """One unit of work of a plan, with everything needed to run it later or elsewhere.

    ``key`` is the deterministic key of what the job produces: a model key for training jobs,
    the run key of the result for evaluation jobs (``keys`` lists every run it stores when it
    stores several, e.g. the adaptive and the plain evaluation of one pairing). ``keys_final``
    is false where the stored keys are decided by a job this one needs (e.g. whether a defense
    model calls for an adaptive evaluation is known once it is trained and probed; a model found
    random only while it is judged adds its adaptive evaluation even to a final job, and the
    model cache keeps that finding for later plans). ``needs``
    are the keys of the jobs that must run first; ``stored`` says the result (or model) exists
    already, so running the job reuses it. ``spec`` is a JSON-able description that the track's
    :meth:`Track.execute` reads.
    """

    track: str
    kind: str
    key: str | None
    label: str
    spec: Mapping[str, Any] = field(default_factory=dict)
    needs: tuple[str, ...] = ()
    stored: bool = False
    keys: tuple[str, ...] = ()
    keys_final: bool = True

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["needs"], record["keys"], record["spec"] = list(self.needs), list(self.keys), dict(self.spec)
        return record


@dataclass
class Outcome:
    """What one evaluation stored: the run, whether it was reused from an earlier identical
    command, and the track's own details for its terminal summary."""

    run: Run
    reused: bool
    label: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.run.status == "ok"

    def __getattr__(self, name: str) -> Any:
        # A track's details read as attributes (outcome.attack, outcome.threat, ...).
        details = self.__dict__.get("details") or {}
        if name in details:
            return details[name]
        raise AttributeError(name)


@dataclass(frozen=True)
class Request:
    """What ``arena run`` asked of every track: the common settings, and ``options``, the
    values of every track's own options (each track reads its own)."""

    dataset: str = "digits"
    seeds: tuple[int, ...] = (0,)
    batch_size: int = 256
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    force: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)

    def option(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)


@dataclass(frozen=True)
class RowQuery:
    """Which stored runs a track lists as rows."""

    dataset: str | None = None
    include_failed: bool = False
    history: bool = False
    norm: str | None = None
    eps: tuple[float, ...] = ()


class Track:
    """Base class of a track. Subclasses set ``name`` (stored in each run's ``track`` column)
    and ``summary``, and implement the methods below; ``boards`` are the names ``arena
    leaderboard --track`` accepts for this track's views (default: its name); ``hint`` says
    which ``arena run`` options ask for the track; ``order`` places it among the tracks.

    A track that stores its results as :class:`arena.store.TrackResult` rows (a subject and
    metrics) gets rows, ``arena results`` and ``arena run`` tables and a ranked leaderboard view
    from the defaults below: it lists its ``metrics`` and the one it ranks by (``rank_by``,
    ``higher_is_better``).
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    boards: ClassVar[tuple[str, ...]] = ()
    hint: ClassVar[str] = ""
    order: ClassVar[int] = 100
    #: The ``arena run`` option that names plugins of each kind this track runs (``-p`` errors
    #: point to it), e.g. ``{"attack": "-a"}``.
    plugin_options: ClassVar[dict[str, str]] = {}
    metrics: ClassVar[tuple[str, ...]] = ()
    rank_by: ClassVar[str | None] = None
    higher_is_better: ClassVar[bool] = True

    @classmethod
    def board_names(cls) -> tuple[str, ...]:
        return cls.boards or (cls.name,)

    # -- arena run --------------------------------------------------------------------------

    def options(self) -> list[click.Option]:
        """The options this track adds to ``arena run`` (their names must not clash with
        another track's)."""
        return []

    def requested(self, request: Request) -> bool:
        """Whether this ``arena run`` asks for this track (e.g. its plugins were named)."""
        raise NotImplementedError

    def incomplete(self, request: Request) -> bool:
        """Whether the request names part of what this track needs (e.g. attacks but no
        defenses): ``arena run`` then says what to pass."""
        return False

    def plugins(self, request: Request) -> dict[str, list[str]]:
        """The plugins this request names, by kind (``-p`` may set only their hyperparameters)."""
        return {}

    def check(self, request: Request) -> None:
        """Refuse a request that cannot run with a one-line :class:`arena.InvalidInputError`,
        before any work (the default accepts every request)."""

    def plan(self, request: Request, arena: Arena) -> list[Job]:
        """The jobs of the request, each after the jobs it needs. Planning trains and
        evaluates nothing; it may load datasets and read the model cache and the store."""
        raise NotImplementedError

    def execute(self, job: Job, arena: Arena) -> list[Outcome]:
        """Run one job; return the outcomes of the results it stored (none for a training job)."""
        raise NotImplementedError

    def finish(self, request: Request, outcomes: list[Outcome], arena: Arena) -> list[Outcome]:
        """After every job of the request ran: work across results (e.g. flags that compare
        them); returns the outcomes, re-read where that work changed them."""
        return outcomes

    def report(self, outcomes: list[Outcome]) -> Any:
        """The terminal summary of this track's outcomes (a rich renderable), or None."""
        from .tables import generic_summary

        return generic_summary(self.summary or self.name, outcomes, self.metrics)

    # -- stored results ---------------------------------------------------------------------

    def row(self, run: Run) -> dict[str, Any]:
        """The flat record of one stored run of this track (``arena results --json``)."""
        from .results import track_row

        return track_row(run)

    def rows(self, store: Store, query: RowQuery = RowQuery()) -> list[dict[str, Any]]:
        """The flat records of this track's stored runs."""
        runs = store.runs(track=self.name, dataset=query.dataset, status=None if query.include_failed else "ok",
                          history=query.history)
        return [self.row(run) for run in runs]

    def details(self, run: Run, store: Store) -> list[Any]:
        """What ``arena show`` prints of a run beyond its row and provenance (rich renderables;
        :func:`arena.config.model_record` reads a model's training record without torch)."""
        return []

    def command(self, row: Mapping[str, Any]) -> str | None:
        """The ``arena run`` command that reproduces a row, where there is one."""
        return None

    def table(self, rows: list[dict[str, Any]]) -> Any:
        """The ``arena results`` table of this track's rows (a rich renderable), or None."""
        from .tables import generic_results

        return generic_results(f"Stored {self.name} results", rows, self.metrics)

    def views(self, rows: list[dict[str, Any]], store: Store, *, fmt: str = "table") -> list[Any]:
        """The leaderboard views of these rows (:class:`arena_leaderboard.View`); ``fmt`` is
        the output format (``table``, ``md``, ``csv``, ``json`` or ``html``). The default: per
        dataset, one row per result ranked by ``rank_by``."""
        from arena_leaderboard import Column, View

        views = []
        for dataset in sorted({row["dataset"] for row in rows}):
            mine = [row for row in rows if row["dataset"] == dataset]
            def rank(row: Mapping[str, Any]) -> tuple[bool, float]:
                value = (row.get("metrics") or {}).get(self.rank_by) if self.rank_by else None
                if not isinstance(value, (int, float)):
                    return (True, 0.0)
                return (False, -value if self.higher_is_better else value)
            table = []
            for position, row in enumerate(sorted(mine, key=rank), 1):
                table.append({"rank": position, "subject": row.get("subject_label", ""), "seed": row.get("seed"),
                              **{f"metric:{name}": (row.get("metrics") or {}).get(name) for name in self.metrics}})
            columns = [Column("#", "rank", "int"), Column("subject", "subject"), Column("seed", "seed", "int")]
            columns += [Column(name, f"metric:{name}", "number") for name in self.metrics]
            notes = [f"Ranked by {self.rank_by} ({'higher' if self.higher_is_better else 'lower'} is better)."] \
                if self.rank_by else []
            views.append(View(f"{self.summary or self.name} — {dataset}", self.name, {"dataset": dataset}, columns,
                              table, tracks=self.board_names(), notes=notes))
        return views
