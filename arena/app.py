"""The one entry object of Arena for the CLI, scripts, benchmarks and tests::

    import arena

    with arena.Arena(home="~/arena", db="sqlite:///results.db", device="auto") as bench:
        request = arena.Request(dataset="digits", options={"attacks": ["fgsm"], "defenses": ["standard"]})
        outcomes = bench.run(request)

It owns the home folder, the results store, the plugin registry and (once something runs) the
model host on the chosen device; nothing else re-creates them by hand. Reading results needs
neither torch nor any plugin: the host and the full registry are made on first use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .errors import InvalidInputError

if TYPE_CHECKING:
    from .executors import Executor
    from .host import Host
    from .plugins import Registry
    from .progress import Reporter
    from .store import Store
    from .track import Job, Outcome, Request, Track


class Arena:
    """Home, store, registry and model host of one session."""

    def __init__(self, home: str | Path | None = None, db: str | None = None, device: str = "auto",
                 reporter: Reporter | None = None, force: bool = False, deterministic: bool = False,
                 warn: Callable[[str], None] | None = None) -> None:
        from .config import database_url, home as default_home

        self._home = Path(home).expanduser() if home is not None else None
        if db is None and self._home is not None and not os.environ.get("ARENA_DB"):
            db = str(self._home / "arena.db")
        self.db_url = database_url(db)
        self.device_name = device
        self.reporter = reporter
        #: Whether the request being planned or run recomputes stored results (``force`` for
        #: every request of this session, or the request's own ``force``).
        self.force = force
        self._force = force
        self.deterministic = deterministic
        self._warn = warn
        self._default_home = default_home
        self._store: Store | None = None
        self._host: Host | None = None
        self._registry: Registry | None = None
        self._cached: dict[str, Any] = {}
        self._seed_applied: tuple[str, int] | None = None

    # -- what the session holds ---------------------------------------------------------------

    @property
    def home(self) -> Path:
        if self._home is None:
            self._home = self._default_home()
        return self._home

    @property
    def store(self) -> Store:
        """The results database, opened for writing on first use."""
        if self._store is None:
            from .store import open_store

            self._store = open_store(self.db_url, writes=True, warn=self._warn)
        return self._store

    @property
    def registry(self) -> Registry:
        """Every installed plugin and track (imports every plugin module)."""
        if self._registry is None:
            from .plugins import get_registry

            self._registry = get_registry()
        return self._registry

    @property
    def host(self) -> Host:
        """The model host on this session's device (imports torch)."""
        if self._host is None:
            from .host import Host, resolve_device
            from .progress import quiet

            self._host = Host(self.registry, self.home, resolve_device(self.device_name), self.reporter or quiet())
        return self._host

    @property
    def device(self) -> Any:
        return self.host.device

    def cached(self, name: str, value: Any = None) -> Any:
        """A per-session object a track keeps between jobs (set it by passing ``value``)."""
        if value is not None:
            self._cached[name] = value
        return self._cached.get(name)

    def tracks(self, request: Request | None = None) -> list[Track]:
        """Every registered track in order; with ``request``, those it asks for."""
        tracks = self.registry.ordered_tracks()
        return [t for t in tracks if request is None or t.requested(request)]

    # -- plan and run -------------------------------------------------------------------------

    def plan(self, request: Request) -> list[Job]:
        """The jobs of ``request`` over every track it asks for, after refusing a request that
        cannot run (nothing asked for, a ``-p`` naming no plugin of the run, a track's own
        checks); nothing is trained or run."""
        from .options import check_params

        tracks = self.tracks(request)
        if not tracks or any(track.incomplete(request) for track in self.tracks()):
            raise InvalidInputError(self.nothing_to_run())
        named: dict[str, list[str]] = {}
        for track in tracks:
            track.check(request)
            for kind, names in track.plugins(request).items():
                named.setdefault(kind, []).extend(names)
        check_params(self.registry, {name: dict(values) for name, values in request.params.items()}, named)
        self.force = self._force or request.force  # per request: never carried to the next one
        return [job for track in tracks for job in track.plan(request, self)]

    def run(self, request: Request, executor: Executor | str | None = None, **settings: Any) -> dict[str, list[Outcome]]:
        """Plan ``request``, run the plan, finish each track; the outcomes by track. Raises
        :class:`arena.executors.JobsFailed` (its ``by_track`` the finished outcomes of the rest)
        after the tracks are finished when the executor lost jobs.

        ``executor`` is an executor, or the name of a registered one (default: ``ARENA_EXECUTOR``,
        else ``local``, in this process) built with ``settings`` (e.g. ``address=`` for Ray)."""
        from .executors import JobsFailed, executor_name

        if executor is None or isinstance(executor, str):
            executor = self.registry.executor(executor_name(executor), **settings)
        jobs = self.plan(request)
        failed = None
        try:
            outcomes = executor.run(jobs, self)
        except JobsFailed as exc:  # the others are stored: finish the tracks over them
            failed, outcomes = exc, exc.outcomes
        finally:
            self.close()
        by_track: dict[str, list[Outcome]] = {}
        for track in self.tracks(request):
            mine = [o for o in outcomes if o.run.track == track.name]
            by_track[track.name] = track.finish(request, mine, self)
        if failed is not None:
            failed.by_track = by_track
            raise failed
        return by_track

    def prepare(self, job: Job) -> None:
        """Before a job: ``--deterministic`` seeds every generator for the job's seed, whenever
        the seed or the track changes (as a run of each track and seed starts from it)."""
        seed = (job.spec.get("settings") or {}).get("seed", job.spec.get("seed"))
        if self.deterministic and seed is not None and (job.track, seed) != self._seed_applied:
            from .host import make_deterministic

            make_deterministic(seed)
            self._seed_applied = (job.track, seed)

    def nothing_to_run(self) -> str:
        hints = [track.hint or f"the options of the {track.name} track" for track in self.tracks()]
        return "nothing to run: pass " + ", or ".join(hints)

    def close(self) -> None:
        """Stop the attack workers this session started (they are reused between its runs)."""
        if self._host is not None:
            from .isolation import release_workers

            release_workers()

    def __enter__(self) -> Arena:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
