"""The results database: SQLAlchemy over SQLite by default, any SQLAlchemy URL otherwise.

Every SQLite connection gets WAL, a busy timeout and foreign keys; every transaction starts
with ``BEGIN IMMEDIATE`` so that concurrent writers queue on the lock instead of failing with
"database is locked" when a read turns into a write. A file that is not an Arena database is
refused before anything is written to it, and an older schema is migrated forward (after a
backup copy) with Alembic.

A database that fails SQLite's ``PRAGMA quick_check`` is never written to: a command that means
to write refuses it at open, one that only reads reads what SQLite can still read. Rows are
decoded through the checked column types of :mod:`.values`; a run with a value that cannot be
decoded is left out of what the store returns, with a one-line warning naming it, and
``arena db check`` (:func:`integrity_check`, :meth:`Store.scan`) lists every such row.
Database URLs are shown with their password masked (:func:`shown_url`).

This module is longer than most on purpose: :class:`Store` is the one place that reads and
writes the database, and its transaction rules (supersession, refusing damaged files, skipping
undecodable rows) are easier to check together. URLs and SQLite files are in :mod:`.sqlite`,
schema revisions in :mod:`.migrate`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from sqlalchemy import create_engine, inspect, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import StoreError
from .schema import GenerativeResult, RobustnessResult, Run, Sample, TrackResult
from .migrate import HEAD_REVISION, _alembic_config, _current_revision, head_revision  # noqa: F401
from .sqlite import (  # noqa: F401  (part of the store's API)
    _check_sqlite_file,
    _configure_sqlite,
    _connect_read_only,
    _scrub,
    holds_data,
    integrity_check,
    quick_check,
    refuse_foreign,
    shown_url,
    sqlite_path,
)
from .values import Undecodable, undecodable

__all__ = [
    "GenerativeResult",
    "RobustnessResult",
    "Run",
    "Sample",
    "Scan",
    "Store",
    "TrackResult",
    "UnreadableRun",
    "integrity_check",
    "open_store",
    "shown_url",
    "sqlite_path",
]

#: What a warning about a skipped row tells the user to do.
CHECK_HINT = "arena db check lists such rows"


#: What every completed run records about how it was computed; ``None`` is allowed where a value
#: does not apply (no git checkout, no CUDA), a missing key is not.
REQUIRED_PROVENANCE = (
    "arena_version",
    "git_revision",
    "python",
    "torch",
    "cuda",
    "device",
    "deterministic_algorithms",
    "seed",
    "dataset_hash",
    "checkpoint_sha256",
    "plugins",
)
_NOT_NONE = ("arena_version", "python", "torch", "device", "dataset_hash", "checkpoint_sha256", "plugins")


def check_provenance(provenance: dict | None) -> None:
    """Refuse a result that does not say how it was computed."""
    provenance = provenance or {}
    missing = [k for k in REQUIRED_PROVENANCE if k not in provenance]
    missing += [k for k in _NOT_NONE if k in provenance and provenance[k] is None]
    plugins = provenance.get("plugins") or {}
    missing += [f"plugins.{role}.{field}" for role, source in plugins.items() for field in ("package", "version")
                if not (source or {}).get(field)]
    if missing:
        raise StoreError(f"refusing to store a result without provenance: missing {', '.join(missing)}")
class UnreadableRun(StoreError):
    """A stored run with a value that cannot be decoded, asked for by id or key."""


def _print_warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


@dataclass
class Scan:
    """What :meth:`Store.scan` found: rows read per table, the values that cannot be decoded
    (one line each), and the files that readable runs point to as ``(run_id, role, path)``."""

    rows: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    artifacts: list[tuple[int, str, Any]] = field(default_factory=list)
    #: Why the scan stopped before the end (a page SQLite cannot read), if it did.
    stopped: str | None = None


def _background(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` in a daemon thread; ``.result()`` of the returned object waits for it."""
    from concurrent.futures import Future
    import threading

    future: Future = Future()

    def run() -> None:
        try:
            future.set_result(function(*args))
        except BaseException as exc:  # handed to whoever asks for the result
            future.set_exception(exc)

    threading.Thread(target=run, name="arena-quick-check", daemon=True).start()
    return future


#: The PostgreSQL advisory lock that serialises migrations (an arbitrary 63-bit constant).
MIGRATION_LOCK = 0x4172656E61  # "Arena"


class Store:
    """Reads and writes results; the only part of Arena that touches the database.

    ``writes``: the caller means to write, so a damaged SQLite database is refused at once.
    Otherwise an existing SQLite file is opened read-only, and SQLite's quick_check runs in a
    thread beside the reading: :attr:`damage` waits for it and warns if it found damage.
    ``warn`` receives each one-line warning (a skipped row, a damaged file); by default they go
    to standard error. ``check=False`` is a job's worker reading its driver's database: no
    quick_check (the driver ran it), and it never creates or migrates the database.
    """

    def __init__(self, url: str, writes: bool = True, warn: Callable[[str], None] | None = None,
                 check: bool = True) -> None:
        self.url = url
        self.warn = warn or _print_warning
        self._warned: set[str] = set()
        self.path = path = sqlite_path(url)
        self._damage: list[str] = []
        self._checking: Any = None  # a reader's quick_check, running beside its reading
        #: A reader of an existing SQLite file reads through read-only connections: it never
        #: writes to the file nor takes the writers' lock.
        self.read_only = False
        if path is not None:
            if not writes and holds_data(path):
                refuse_foreign(path)
                self.read_only = True
                if check:  # a job's worker reads a file its driver checked: ``check=False``
                    self._checking = _background(quick_check, path)
            elif not check:
                raise StoreError(f"{path} does not exist on this machine: the workers of a run must reach its "
                                 "database (a shared file, or a PostgreSQL URL)")
            else:
                self._damage = _check_sqlite_file(path)  # a writer checks first
                if self._damage:
                    raise StoreError(self._refusal())
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreError(f"cannot create the folder for database {path}: {exc.strerror}") from None
        self._connect()
        if not check and not self._at_head():
            raise StoreError(f"{self._where()} is at another schema than this Arena's ({HEAD_REVISION}): a worker "
                             "never migrates its driver's database; install the driver's version of arena-bench")
        if self.read_only and not self._at_head():
            # Migrating writes: wait for the check, then migrate through a writable connection.
            if not self.damage:
                self.read_only = False
                self.engine.dispose()
                self._connect()
        try:
            self._migrate(path)
        except StoreError:
            raise
        except DBAPIError as exc:
            raise StoreError(f"cannot open database {self._where()}: {_scrub(str(exc.orig), url)}") from None

    def _connect(self) -> None:
        path, url = self.path, self.url
        try:
            if self.read_only:
                self.engine = create_engine("sqlite://", creator=lambda: _connect_read_only(path))
            else:
                self.engine = create_engine(url)
        except (SQLAlchemyError, ImportError, ValueError, TypeError) as exc:
            raise StoreError(f"cannot use database URL {self._where()!r}: {_scrub(str(exc), url)}") from None
        if self.engine.dialect.name == "sqlite":
            _configure_sqlite(self.engine, read_only=self.read_only)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def _at_head(self) -> bool:
        try:
            with self.engine.connect() as connection:
                return _current_revision(connection) == HEAD_REVISION
        except DBAPIError:
            return False

    @property
    def damage(self) -> list[str]:
        """What SQLite's quick_check found wrong with the file (empty: nothing). A reader's check
        runs beside its reading; asking waits for it, and warns once if it found damage."""
        if self._checking is not None:
            self._damage, self._checking = self._checking.result(), None
            if self._damage:
                self._warn_damage()
        return self._damage

    def _warn_damage(self) -> None:
        self._warn_once(f"{self.path} is damaged ({self._damage_summary()}); reading what SQLite can still "
                        f"read, writing nothing: see `arena db check --db {self.path}`")

    def _where(self) -> str:
        return shown_url(self.url)

    def _migrate(self, path: Path | None) -> None:
        with self.engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            raw = connection.connection.driver_connection if sqlite else None
            if raw is not None:
                # SQLite alters a table by copying it and dropping the original: with foreign keys
                # on, dropping ``runs`` would delete every row that refers to it (SQLite's own
                # procedure for altering tables turns them off, then checks them).
                raw.execute("PRAGMA foreign_keys = OFF")
            try:
                with connection.begin():  # BEGIN IMMEDIATE: one process migrates at a time
                    if connection.dialect.name == "postgresql" and _current_revision(connection) != HEAD_REVISION:
                        # PostgreSQL's equivalent: a lock held until this transaction ends, so
                        # that processes opening a new database at once migrate it one by one.
                        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
                    self._upgrade(connection, path)
            finally:
                if raw is not None:
                    raw.execute("PRAGMA foreign_keys = ON")

    def _upgrade(self, connection: Any, path: Path | None) -> None:
        """Migrate to the newest schema, in the caller's transaction."""
        current = _current_revision(connection)
        if current == HEAD_REVISION:
            return
        from alembic import command
        from alembic.script import ScriptDirectory

        head = head_revision()
        tables = set(inspect(connection).get_table_names())
        if current is None and tables - {"alembic_version"}:
            raise StoreError(
                f"{self._where()} holds tables that are not Arena's ({', '.join(sorted(tables)[:5])}); "
                "it was left untouched: pass another --db"
            )
        known = {rev.revision for rev in ScriptDirectory.from_config(_alembic_config()).walk_revisions()}
        if current is not None and current not in known:
            raise StoreError(
                f"{self._where()} was written by a newer Arena (schema {current}); upgrade arena-bench"
            )
        if self.damage:
            raise StoreError(f"{self._refusal()} (it needs migrating to schema {head} before it can be read)")
        if current is not None and path is not None:
            backup = path.with_name(f"{path.name}.schema-{current}.bak")
            if not backup.exists():
                with contextlib.closing(sqlite3.connect(path)) as src, contextlib.closing(
                    sqlite3.connect(backup)
                ) as dst:
                    src.backup(dst)
        config = _alembic_config()
        config.attributes["connection"] = connection
        sqlite = connection.dialect.name == "sqlite"
        before = set(connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()) if sqlite else set()
        command.upgrade(config, "head")
        broken = set(connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()) - before if sqlite else set()
        if broken:  # rolled back with the transaction
            table, row, parent, _ = sorted(broken, key=str)[0]
            raise StoreError(f"migrating {self._where()} to schema {head} would leave {table} row {row} without "
                             f"its {parent} row; it was left as it was: please report this")

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose work is committed as one transaction, or rolled back entirely."""
        session = self._sessions()
        try:
            with session.begin():
                yield session
        except DBAPIError as exc:
            message = _scrub(str(exc.orig), self.url)
            if "malformed" in message:
                message += ": part of the file cannot be read, see `arena db check`"
            raise StoreError(f"database {self._where()} failed: {message}") from None
        finally:
            session.close()

    # -- damage -----------------------------------------------------------------------------

    def _damage_summary(self) -> str:
        first = self._damage[0]
        more = len(self._damage) - 1
        return f"SQLite's quick_check: {first}" + (f", and {more} more problem{'s' * (more > 1)}" if more else "")

    def _refusal(self) -> str:
        path = self.path
        backups = sorted(path.parent.glob(f"{path.name}.schema-*.bak"), key=lambda p: p.stat().st_mtime)
        restore = (f"restore {backups[-1]} (the copy made before the last migration) or a backup of your own"
                   if backups else "restore it from a backup")
        return (f"{path} is damaged ({self._damage_summary()}); refusing to write to it: {restore}, "
                f"and see `arena db check --db {path}`")

    def _check_writable(self) -> None:
        if self.damage:
            raise StoreError(self._refusal())

    # -- reading rows -----------------------------------------------------------------------

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            self.warn(message)

    @staticmethod
    def describe(run_id: Any, bad: list[tuple[str, Undecodable]], where: str = "") -> str:
        """``run 17: flags is not valid JSON ('{oops'), eps holds text 'x', not a number``."""
        return f"run {run_id}{where}: " + ", ".join(f"{name} {value.reason}" for name, value in bad)

    def readable(self, run_id: Any, values: Mapping[str, Any]) -> bool:
        """Whether every value of a row could be decoded; if not, warn once that the run is skipped."""
        if not any(value.__class__ is Undecodable for value in values.values()):
            return True
        bad = undecodable(values)
        if bad:
            self._warn_once(f"{self.describe(run_id, bad)}; skipped ({CHECK_HINT})")
        return not bad

    @staticmethod
    def _values(run: Run) -> dict[str, Any]:
        """The column values of a loaded run and of the results (and samples) loaded with it."""
        values = {column.key: getattr(run, column.key) for column in Run.__mapper__.column_attrs}
        state = inspect(run)
        for name in ("robustness", "generative", "result"):
            child = None if name in state.unloaded else getattr(run, name)
            if child is not None:
                values.update({column.key: getattr(child, column.key) for column in child.__mapper__.column_attrs})
        if "samples" not in state.unloaded:
            for sample in run.samples:
                for column in Sample.__mapper__.column_attrs:
                    value = getattr(sample, column.key)
                    if isinstance(value, Undecodable):
                        values[f"sample {sample.index} {column.key}"] = value
        return values

    def _admit(self, run: Run) -> bool:
        return self.readable(run.id, self._values(run))

    def _require(self, run: Run, consequence: str = "this run cannot be read") -> Run:
        bad = undecodable(self._values(run))
        if bad:
            raise UnreadableRun(f"{self.describe(run.id, bad)}; {consequence} ({CHECK_HINT})")
        return run

    # -- runs -----------------------------------------------------------------------------

    def find_run(self, key: str) -> Run | None:
        """The current completed run with this key, if any (errored and superseded runs do not
        count).

        Raises :class:`UnreadableRun` if that run is stored but cannot be read: it is neither
        reused nor replaced.
        """
        with self.session() as session:
            run = session.scalars(
                select(Run).where(Run.key == key, Run.status == "ok", Run.superseded_by.is_(None))
            ).first()
        return None if run is None else self._require(run, "a stored result with this key cannot be read, so it "
                                                           "is neither reused nor replaced: fix or delete the row")

    def save_run(self, run: Run, replace: bool = False) -> Run:
        """Store a run with its result and samples in one transaction, as the current run of its
        key and of its lineage.

        The current run it replaces (a failed one with the same key, a completed one with the
        same key when ``replace`` is set, as by ``arena run --force``, and any run of the same
        lineage with another key: a result of other code) is kept, marked superseded by the new
        run. Without ``replace``, a completed run with the same key (written meanwhile by another
        process) is kept current and returned instead. A completed run must carry its full
        provenance (:data:`REQUIRED_PROVENANCE`), or it is not stored.
        """
        self._check_writable()
        if run.status == "ok":
            check_provenance(run.provenance)
        if run.robustness is not None and run.samples:
            run.robustness.robust_bits = pack_robust(run.samples)
        run.superseded_by = None
        try:
            with self.session() as session:
                current = Run.superseded_by.is_(None)
                same = session.scalars(select(Run).where(Run.key == run.key, current)).first()
                if same is not None and same.status == "ok" and not replace:
                    return self._require(same)
                replaced = Run.key == run.key
                if run.lineage is not None:
                    replaced = replaced | (Run.lineage == run.lineage)
                older = list(session.scalars(select(Run.id).where(current, replaced)))
                # Out of the current runs first (the key is unique among them), then pointed at
                # the new run once it has an id.
                if older:
                    session.execute(update(Run).where(Run.id.in_(older)).values(superseded_by=0))
                session.add(run)
                session.flush()
                if older:
                    session.execute(update(Run).where(Run.id.in_(older)).values(superseded_by=run.id))
        except StoreError as exc:
            if isinstance(exc.__context__, IntegrityError):
                existing = self.find_run(run.key)
                if existing is not None:
                    return existing
            raise
        return run

    def superseding(self, run_id: int) -> list[int]:
        """The ids of the runs that ``run_id`` superseded, oldest first."""
        with self.session() as session:
            return list(session.scalars(select(Run.id).where(Run.superseded_by == run_id).order_by(Run.id)))

    def update_run(self, run_id: int, **fields: object) -> None:
        """Change stored fields of a run (its flags, say) in one transaction; nothing else of
        the row is read or written."""
        self._check_writable()
        with self.session() as session:
            changed = session.execute(update(Run).where(Run.id == run_id).values(**fields)).rowcount
            if not changed:
                raise StoreError(f"no run {run_id} in the database")

    def get_run(self, run_id: int) -> Run | None:
        """The run with its results and samples; raises :class:`UnreadableRun` if it is stored
        but cannot be read."""
        with self.session() as session:
            run = session.get(Run, run_id)
            if run is not None:
                _ = run.samples  # load while the session is open
        return None if run is None else self._require(run)

    def runs(self, track: str | None = None, dataset: str | None = None, status: str | None = None,
             history: bool = False) -> list[Run]:
        """Current runs (with their results, without samples), oldest first; with ``history``,
        superseded runs too. A run that cannot be read is left out with a warning."""
        query = select(Run).order_by(Run.id)
        if not history:
            query = query.where(Run.superseded_by.is_(None))
        if track:
            query = query.where(Run.track == track)
        if dataset:
            query = query.where(Run.dataset == dataset)
        if status:
            query = query.where(Run.status == status)
        with self.session() as session:
            loaded = list(session.scalars(query).unique())
        return [run for run in loaded if self._admit(run)]

    def tracks(self) -> list[str]:
        """The names of the tracks the stored runs belong to."""
        with self.session() as session:
            return sorted(name for (name,) in session.execute(select(Run.track).distinct()) if isinstance(name, str))

    def sample_outcomes(self, run_ids: list[int]) -> dict[int, tuple[Any, Any]]:
        """``{run_id: (test-point indices, robust)}`` for the given runs, as arrays.

        Read from each result's packed ``robust_bits``, or from its sample rows where it has none
        (or where they cannot be read). A run whose outcomes cannot be read is left out, with a
        warning.
        """
        import numpy as np

        outcomes: dict[int, tuple[Any, Any]] = {}
        with self.session() as session:
            for chunk in range(0, len(run_ids), 500):
                ids = run_ids[chunk : chunk + 500]
                packed = session.execute(
                    select(RobustnessResult.run_id, RobustnessResult.robust_bits, Run.n)
                    .join(Run, Run.id == RobustnessResult.run_id)
                    .where(RobustnessResult.run_id.in_(ids), RobustnessResult.robust_bits.is_not(None))
                )
                for run_id, bits, n in packed:
                    if isinstance(bits, bytes) and isinstance(n, int) and len(bits) == -(-n // 8):
                        robust = np.unpackbits(np.frombuffer(bits, dtype=np.uint8), count=n, bitorder="little")
                        outcomes[run_id] = (np.arange(n), robust.astype(bool))
                unpacked = [run_id for run_id in ids if run_id not in outcomes]
                if unpacked:
                    rows = session.execute(
                        select(Sample.run_id, Sample.index, Sample.robust)
                        .where(Sample.run_id.in_(unpacked))
                        .order_by(Sample.run_id, Sample.index)
                    )
                    gathered: dict[int, tuple[list[int], list[bool]]] = {run_id: ([], []) for run_id in unpacked}
                    broken: set[int] = set()
                    for run_id, index, robust in rows:
                        if run_id in broken:
                            continue
                        if not self.readable(run_id, {f"sample {index} robust": robust, "sample index": index}):
                            broken.add(run_id)
                            continue
                        gathered[run_id][0].append(index)
                        gathered[run_id][1].append(bool(robust))
                    for run_id, (indices, values) in gathered.items():
                        if run_id not in broken:
                            outcomes[run_id] = (np.array(indices, dtype=np.int64), np.array(values, dtype=bool))
        return outcomes

    # -- checking -----------------------------------------------------------------------------

    def scan(self) -> Scan:
        """Read every stored row through the checked types, without skipping any: each value
        that cannot be decoded, and the files that runs point to."""
        found = Scan()
        tables = [(Run.__table__, "id"), (RobustnessResult.__table__, "run_id"),
                  (GenerativeResult.__table__, "run_id"), (TrackResult.__table__, "run_id"),
                  (Sample.__table__, "run_id")]
        reading = ""
        try:
            with self.session() as session:
                for table, key in tables:
                    reading = table.name
                    found.rows[table.name] = 0
                    order = [table.c[key], *([table.c["index"]] if table is Sample.__table__ else [])]
                    names = [column.name for column in table.columns]
                    what = (" ({})" if table is Sample.__table__ else
                            "" if table is Run.__table__ else f" ({table.name.replace('_', ' ').removesuffix('s')})")
                    rows = session.execute(select(table).order_by(*order), execution_options={"yield_per": 5000})
                    for values in rows:
                        found.rows[table.name] += 1
                        if any(value.__class__ is Undecodable for value in values):
                            row = dict(zip(names, values))
                            where = what.format(f"sample {row['index']}") if table is Sample.__table__ else what
                            found.problems.append(self.describe(row[key], undecodable(row), where))
                        if table is Run.__table__ and isinstance(artifacts := values[names.index("artifacts")], dict):
                            found.artifacts += [(values[0], role, path) for role, path in artifacts.items()]
        except StoreError as exc:
            found.stopped = f"reading {reading}: {_scrub(str(getattr(exc.__context__, 'orig', exc)), self.url)}"
        return found


def pack_robust(samples: list[Sample]) -> bytes | None:
    """The samples' robust outcomes as bits (test point ``i`` at bit ``i``), or ``None`` unless
    the samples are the test points 0..n-1."""
    import numpy as np

    ordered = sorted(samples, key=lambda sample: sample.index)
    if [sample.index for sample in ordered] != list(range(len(ordered))):
        return None
    return np.packbits(np.array([bool(s.robust) for s in ordered], dtype=bool), bitorder="little").tobytes()


def open_store(url: str, writes: bool = True, warn: Callable[[str], None] | None = None,
               check: bool = True) -> Store:
    """Open (creating or migrating as needed) the database at ``url`` (see :class:`Store`)."""
    return Store(url, writes=writes, warn=warn, check=check)

