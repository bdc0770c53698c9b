"""Run records for every track: a new run with its identity and provenance, a failure
recorded on it, and the stored run as an :class:`arena.track.Outcome`."""

from __future__ import annotations

import traceback
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .errors import ArenaError, RefusedResult
from .host import defaults, source
from .provenance import environment
from .track import Outcome

if TYPE_CHECKING:
    import torch

    from .host import LoadedDataset
    from .plugins import PluginInfo
    from .store import Run, Store


def new_run(key: str, track: str, data: LoadedDataset, seed: int, n: int, device: torch.device) -> Run:
    """A run record of ``track`` with its identity filled in, before any result."""
    from .store import Run

    return Run(key=key, track=track, created_at=datetime.now(timezone.utc), dataset=data.info.name,
               dataset_hash=data.content_hash, seed=seed, n=n, device=str(device), flags=[], artifacts={})


def provenance(device: torch.device, data: LoadedDataset, plugins: dict[str, PluginInfo],
               **settings: Any) -> dict[str, Any]:
    """What a run records of how it was obtained: the environment, its settings, the dataset's
    hash and where each plugin came from (the checkpoint's SHA-256 is added once known)."""
    return {
        **environment(device),
        **settings,
        "dataset_hash": data.content_hash,
        "checkpoint_sha256": None,
        "plugins": {"dataset": source(data.info), **{role: source(info) for role, info in plugins.items()}},
        "plugin_defaults": {role: defaults(info) for role, info in plugins.items()},
    }


def record_failure(run: Run, exc: BaseException, failing: PluginInfo) -> None:
    """Mark a run refused (the host refused the plugin's output) or errored (a plugin raised)."""
    from .isolation import WorkerError

    if isinstance(exc, RefusedResult):
        run.status, run.error = "refused", f"{failing.name}: {exc}"
    elif isinstance(exc, ArenaError):
        run.status, run.error = "error", f"{failing.kind} {failing.name}: {exc}"
    elif isinstance(exc, WorkerError):  # an attack raised in its worker process
        run.status = "error"
        run.error = f"{failing.kind} {failing.name} ({failing.source}) raised {exc.type_name}: {exc}\n{exc.traceback_text}"
    else:  # a plugin that raises marks only its own result as failed
        run.status = "error"
        run.error = (
            f"{failing.kind} {failing.name} ({failing.source}) raised {type(exc).__name__}: {exc}\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        )


def reused(store: Store, key: str, force: bool, label: str, **details: Any) -> Outcome | None:
    """The stored current run of ``key`` as an outcome, unless ``force`` recomputes it."""
    if force:
        return None
    existing = store.find_run(key)
    return None if existing is None else Outcome(existing, True, label, details)


def save(store: Store, run: Run, force: bool, label: str, **details: Any) -> Outcome:
    """Store ``run`` in one transaction (with ``force`` it supersedes the current run of its key)."""
    stored = store.save_run(run, replace=force)
    return Outcome(stored, stored is not run, label, details)
