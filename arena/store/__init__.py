"""The results database: SQLAlchemy over SQLite by default, any SQLAlchemy URL otherwise.

Every SQLite connection gets WAL, a busy timeout and foreign keys; every transaction starts
with ``BEGIN IMMEDIATE`` so that concurrent writers queue on the lock instead of failing with
"database is locked" when a read turns into a write. A file that is not an Arena database is
refused before anything is written to it, and an older schema is migrated forward (after a
backup copy) with Alembic.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Iterator

import numpy as np
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, inspect, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import StoreError
from .schema import GenerativeResult, RobustnessResult, Run, Sample

__all__ = ["GenerativeResult", "RobustnessResult", "Run", "Sample", "Store", "open_store"]

BUSY_TIMEOUT_MS = 60_000

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
_MIGRATIONS = Path(__file__).with_name("migrations")


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def head_revision() -> str:
    """The newest schema revision this version of Arena writes."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _check_sqlite_file(path: Path) -> None:
    """Refuse a corrupt or foreign file before any connection could write to it."""
    if not path.exists() or path.stat().st_size == 0:
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{path} is not a readable SQLite database ({exc}); it was left untouched: move it "
            "aside or pass another --db"
        ) from None
    if tables and "alembic_version" not in tables:
        listed = ", ".join(sorted(tables)[:5])
        raise StoreError(
            f"{path} is a database of something else (tables: {listed}); it was left untouched: "
            "pass another --db"
        )


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # the "begin" hook below issues BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class Store:
    """Reads and writes results; the only part of Arena that touches the database."""

    def __init__(self, url: str) -> None:
        self.url = url
        path = _sqlite_path(url)
        if path is not None:
            _check_sqlite_file(path)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the folder for database {path}: {exc.strerror}") from None
        try:
            self.engine = create_engine(url)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise StoreError(f"cannot use database URL {url!r}: {exc}") from None
        if self.engine.dialect.name == "sqlite":
            _configure_sqlite(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        try:
            self._migrate(path)
        except StoreError:
            raise
        except DBAPIError as exc:
            raise StoreError(f"cannot open database {self._where()}: {exc.orig}") from None

    def _where(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    def _migrate(self, path: Path | None) -> None:
        head = head_revision()
        with self.engine.begin() as connection:  # BEGIN IMMEDIATE: one process migrates at a time
            current = MigrationContext.configure(connection).get_current_revision()
            if current == head:
                return
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
            if current is not None and path is not None:
                backup = path.with_name(f"{path.name}.schema-{current}.bak")
                if not backup.exists():
                    with contextlib.closing(sqlite3.connect(path)) as src, contextlib.closing(
                        sqlite3.connect(backup)
                    ) as dst:
                        src.backup(dst)
            config = _alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose work is committed as one transaction, or rolled back entirely."""
        session = self._sessions()
        try:
            with session.begin():
                yield session
        except DBAPIError as exc:
            raise StoreError(f"database {self._where()} failed: {exc.orig}") from None
        finally:
            session.close()

    # -- runs -----------------------------------------------------------------------------

    def find_run(self, key: str) -> Run | None:
        """The completed run with this key, if any (errored runs do not count)."""
        with self.session() as session:
            return session.scalars(select(Run).where(Run.key == key, Run.status == "ok")).first()

    def save_run(self, run: Run) -> Run:
        """Store a run with its result and samples in one transaction.

        A failed run with the same key is replaced; a completed one (written meanwhile by
        another process) is kept and returned instead. A completed run must carry its full
        provenance (:data:`REQUIRED_PROVENANCE`), or it is not stored.
        """
        if run.status == "ok":
            check_provenance(run.provenance)
        if run.robustness is not None and run.samples:
            run.robustness.robust_bits = pack_robust(run.samples)
        try:
            with self.session() as session:
                previous = session.scalars(select(Run).where(Run.key == run.key)).first()
                if previous is not None:
                    if previous.status == "ok":
                        return previous
                    session.delete(previous)
                    session.flush()
                session.add(run)
        except StoreError as exc:
            if isinstance(exc.__context__, IntegrityError):
                existing = self.find_run(run.key)
                if existing is not None:
                    return existing
            raise
        return run

    def update_run(self, run_id: int, **fields: object) -> None:
        """Change stored fields of a run (its flags, say) in one transaction."""
        with self.session() as session:
            run = session.get(Run, run_id)
            if run is None:
                raise StoreError(f"no run {run_id} in the database")
            for name, value in fields.items():
                setattr(run, name, value)

    def get_run(self, run_id: int) -> Run | None:
        with self.session() as session:
            run = session.get(Run, run_id)
            if run is not None:
                _ = run.samples  # load while the session is open
            return run

    def runs(self, track: str | None = None, dataset: str | None = None, status: str | None = None) -> list[Run]:
        """Runs (with their results, without samples), oldest first."""
        query = select(Run).order_by(Run.id)
        if track:
            query = query.where(Run.track == track)
        if dataset:
            query = query.where(Run.dataset == dataset)
        if status:
            query = query.where(Run.status == status)
        with self.session() as session:
            return list(session.scalars(query).unique())

    def sample_outcomes(self, run_ids: list[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """``{run_id: (test-point indices, robust)}`` for the given runs, as arrays.

        Read from each result's packed ``robust_bits``, or from its sample rows where it has none.
        """
        outcomes: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        with self.session() as session:
            for chunk in range(0, len(run_ids), 500):
                ids = run_ids[chunk : chunk + 500]
                packed = session.execute(
                    select(RobustnessResult.run_id, RobustnessResult.robust_bits, Run.n)
                    .join(Run, Run.id == RobustnessResult.run_id)
                    .where(RobustnessResult.run_id.in_(ids), RobustnessResult.robust_bits.is_not(None))
                )
                for run_id, bits, n in packed:
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
                    for run_id, index, robust in rows:
                        gathered[run_id][0].append(index)
                        gathered[run_id][1].append(bool(robust))
                    for run_id, (indices, values) in gathered.items():
                        outcomes[run_id] = (np.array(indices, dtype=np.int64), np.array(values, dtype=bool))
        return outcomes


def pack_robust(samples: list[Sample]) -> bytes | None:
    """The samples' robust outcomes as bits (test point ``i`` at bit ``i``), or ``None`` unless
    the samples are the test points 0..n-1."""
    ordered = sorted(samples, key=lambda sample: sample.index)
    if [sample.index for sample in ordered] != list(range(len(ordered))):
        return None
    return np.packbits(np.array([bool(s.robust) for s in ordered], dtype=bool), bitorder="little").tobytes()


def open_store(url: str) -> Store:
    """Open (creating or migrating as needed) the database at ``url``."""
    return Store(url)

