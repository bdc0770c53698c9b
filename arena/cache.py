"""The model cache: trained weights as safetensors files, checked against a SHA-256 record.

Each checkpoint ``KEY.safetensors`` has a record ``KEY.json`` beside it (its SHA-256, size,
what produced it, the per-epoch training history and the training time). Both are written to a
temporary name and renamed, so a crash never leaves a half-written file under a real name. Loading goes through
safetensors only (no pickle), and a file whose hash differs from its record is rejected and
rebuilt with a warning. A lock per key makes concurrent processes build a model once.

The cache lives in ``$ARENA_HOME/models``, apart from the results database: a results URL may
point at a shared server while weights stay on the machine that uses them.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from .progress import Reporter
from .provenance import file_sha256


@dataclass
class CachedModel:
    model: nn.Module
    key: str
    sha256: str
    cached: bool
    history: list[dict[str, Any]] | None
    #: Seconds spent in training when the checkpoint was made (None for older records).
    train_seconds: float | None = None


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Write through ``write(temporary_path)``, fsync, then rename onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class ModelCache:
    """Trained models by key (a hash of everything that determines the weights)."""

    def __init__(self, root: Path, reporter: Reporter, artifacts: Any = None) -> None:
        self.root = root
        self.reporter = reporter
        #: The shared artifact store (:mod:`arena.artifact_store`), if ``ARENA_ARTIFACTS`` names one.
        self.artifacts = artifacts

    def weights_path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def record_path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def record(self, key: str) -> dict[str, Any] | None:
        """The checkpoint's record, here or (when this machine has not fetched it yet) in the
        shared artifact store."""
        try:
            return json.loads(self.record_path(key).read_text())
        except (OSError, ValueError):
            return self.artifacts.record(key) if self.artifacts is not None else None

    def annotate(self, key: str, **fields: Any) -> None:
        """Add fields to a checkpoint's record (what the host learned of the model, e.g. its
        probe), so that plans can read them without loading the model."""
        record = self.record(key)
        if record is None or all(record.get(name) == value for name, value in fields.items()):
            return
        text = json.dumps({**record, **fields}, indent=2, default=str)
        atomic_write(self.record_path(key), lambda temporary: Path(temporary).write_text(text))
        self._publish(key, {**record, **fields}, overwrite=False)

    def get(
        self,
        key: str,
        kind: str,
        name: str,
        build: Callable[[], nn.Module],
        train: Callable[[nn.Module], list[dict[str, Any]] | None],
        meta: dict[str, Any],
    ) -> CachedModel:
        """Load the model ``key`` if a verified checkpoint exists, else build, train and save it."""
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / f".{key}.lock")):
            model = build()
            loaded = self._load(key, kind, name, model)
            if loaded is None and self.artifacts is not None and self._fetch(key):
                loaded = self._load(key, kind, name, model)
            if loaded is not None:
                return loaded
            started = time.perf_counter()
            history = train(model)
            train_seconds = time.perf_counter() - started
            path = self.weights_path(key)
            atomic_write(path, lambda temporary: save_model(model, temporary))
            digest = file_sha256(path)
            record = {
                "key": key,
                "kind": kind,
                "name": name,
                "sha256": digest,
                "size": path.stat().st_size,
                "created_at": datetime.now(timezone.utc).isoformat(),
                "meta": meta,
                "history": history,
                "train_seconds": train_seconds,
            }
            text = json.dumps(record, indent=2, default=str)
            atomic_write(self.record_path(key), lambda temporary: Path(temporary).write_text(text))
            self._publish(key, record, overwrite=True)
            return CachedModel(model, key, digest, False, history, train_seconds)

    def _publish(self, key: str, record: dict[str, Any], overwrite: bool) -> None:
        """Put the checkpoint and its record in the shared artifact store (``overwrite``: the
        content was just trained here, so it replaces whatever a damaged store holds under its
        hash). An unreachable store costs a warning, never the model."""
        if self.artifacts is None:
            return
        try:
            self.artifacts.put_model(key, self.weights_path(key), record, overwrite=overwrite)
        except Exception as exc:  # noqa: BLE001 - fsspec backends raise many kinds
            self.reporter.warn(f"could not put model {key[:12]} in the artifact store {self.artifacts.url}: {exc}")

    def _fetch(self, key: str) -> bool:
        """Copy the checkpoint of ``key`` and its record from the shared artifact store into this
        cache (verified against the recorded SHA-256); whether it did."""
        record = self.artifacts.fetch_model(key, self.weights_path(key), self.reporter.warn)
        if record is None:
            return False
        text = json.dumps(record, indent=2, default=str)
        atomic_write(self.record_path(key), lambda temporary: Path(temporary).write_text(text))
        return True

    def _load(self, key: str, kind: str, name: str, model: nn.Module) -> CachedModel | None:
        path, record = self.weights_path(key), self.record(key)
        if record is None or not path.exists():
            return None
        digest = file_sha256(path)
        if digest != record.get("sha256"):
            self.reporter.warn(
                f"checkpoint {path.name} ({kind} {name}) does not match its recorded "
                "SHA-256; rebuilding it"
            )
            return None
        try:
            load_model(model, str(path), strict=True)
        except (SafetensorError, RuntimeError, OSError) as exc:
            self.reporter.warn(
                f"checkpoint {path.name} ({kind} {name}) cannot be loaded ({exc}); rebuilding it"
            )
            return None
        return CachedModel(model, key, digest, True, record.get("history"), record.get("train_seconds"))
