"""Where Arena keeps its data: ``ARENA_HOME`` (default: the per-user data folder)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import platformdirs

from .errors import ArenaError


def home() -> Path:
    """The data folder (database, model cache, images), created on first use."""
    path = Path(os.environ.get("ARENA_HOME") or platformdirs.user_data_dir("arena", appauthor=False))
    try:
        path.mkdir(parents=True, exist_ok=True)
        # A file of this process's own: several processes may share the folder.
        handle, probe = tempfile.mkstemp(dir=path, prefix=".write-test-")
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise ArenaError(
            f"cannot write to the Arena data folder {path} ({exc.strerror or exc}): set ARENA_HOME "
            "to a writable folder"
        ) from None
    return path


def model_record(key: str) -> dict | None:
    """The record the model cache keeps beside checkpoint ``key`` (history, training time,
    probe), read without loading the model (or torch); None when there is none."""
    import json

    try:
        return json.loads((home() / "models" / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None


def database_url(explicit: str | None = None) -> str:
    """``--db``, else ``ARENA_DB``, else SQLite in the data folder."""
    url = explicit or os.environ.get("ARENA_DB")
    if url:
        return url if "://" in url else f"sqlite:///{Path(url).expanduser().resolve()}"
    return f"sqlite:///{home() / 'arena.db'}"
