"""Database URLs as they may be shown, and SQLite files: refusing a foreign or damaged file
before anything is written to it, SQLite's own checks, and the pragmas of every connection."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from ..errors import StoreError

#: How long a writer waits for another's lock before giving up (SQLite's busy timeout).
BUSY_TIMEOUT_MS = 60_000


def shown_url(url: str) -> str:
    """``url`` as it may be printed: any password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: mask what looks like user:password@
        return re.sub(r"^([^:/]*://[^:/@]*:)[^/]*@", r"\1***@", url)


def _password(url: str) -> str | None:
    try:
        password = make_url(url).password
    except Exception:
        match = re.match(r"^[^:/]*://[^:/@]*:([^/]*)@", url)
        password = match.group(1) if match else None
    return str(password) if password else None


def _scrub(text: str, url: str) -> str:
    """``text`` (an error message) on one line, without the URL's password in any form."""
    text = (text.strip().splitlines() or [""])[0]
    password = _password(url)
    if password:
        from urllib.parse import quote, quote_plus

        for form in {password, quote(password, safe=""), quote_plus(password)}:
            text = text.replace(form, "***")
    return text


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL (``None`` for other databases and in-memory SQLite)."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise StoreError(f"cannot use database URL {shown_url(url)!r}: {_scrub(str(exc), url)}") from None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _connect_read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)


def _check_result(rows: list[tuple[Any, ...]]) -> list[str]:
    """The problems an ``integrity_check``/``quick_check`` reported (none when it says ok)."""
    lines = [str(row[0]) for row in rows]
    if lines == ["ok"]:
        return []
    return [line for text in lines for line in text.splitlines() if line and not line.startswith("*** in database")]


def _check_sqlite_file(path: Path) -> list[str]:
    """Refuse a foreign or unreadable file before any connection could write to it; return
    what SQLite's ``quick_check`` finds wrong with an Arena database (nothing when healthy)."""
    if not holds_data(path):
        return []
    refuse_foreign(path)
    return quick_check(path)


def holds_data(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


def refuse_foreign(path: Path) -> None:
    """Raise :class:`StoreError` for a file that is not an SQLite database, or one that holds
    another program's tables (cheap: reads the schema only)."""
    try:
        with contextlib.closing(_connect_read_only(path)) as conn:
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


def quick_check(path: Path) -> list[str]:
    """What SQLite's ``quick_check`` finds wrong with the file (empty: nothing), read through a
    read-only connection. SQLite releases the GIL while it checks, so a reader can run this in
    a thread beside its own reading."""
    try:
        with contextlib.closing(_connect_read_only(path)) as conn:
            return _check_result(conn.execute("PRAGMA quick_check(20)").fetchall())
    except sqlite3.DatabaseError as exc:
        return [str(exc)]


def integrity_check(path: Path, limit: int = 100) -> list[str]:
    """What SQLite's full ``PRAGMA integrity_check`` finds wrong with the file (empty: nothing),
    read through a read-only connection."""
    try:
        with contextlib.closing(_connect_read_only(path)) as conn:
            return _check_result(conn.execute(f"PRAGMA integrity_check({int(limit)})").fetchall())
    except sqlite3.DatabaseError as exc:
        return [str(exc)]


def _configure_sqlite(engine: Engine, read_only: bool = False) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # the "begin" hook below issues BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if not read_only:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
