"""One artifact store shared by every worker: trained weights by SHA-256, behind any fsspec URL.

``ARENA_ARTIFACTS`` names it (a folder on a shared filesystem, ``s3://bucket/arena``, any URL
fsspec opens). A checkpoint goes in once, under its content's SHA-256
(``sha256/AB/ABCDEF...``), with its record (what produced it, its hash, its training history and
probe) under the model's key (``models/KEY.json``). Every path inside the store is relative to
its root, never one machine's absolute path.

The model cache (:mod:`arena.cache`) stays the local working copy in ``$ARENA_HOME/models``:
after training it puts the checkpoint and its record here; when a model is missing locally it
looks here first, downloads the checkpoint, checks it against the recorded SHA-256 (a mismatch
is refused with a warning, and the model is trained again) and loads it. So a model trained on
one worker is fetched and reused by all the others, and never trained twice. Unset, there is no
shared store: each machine's cache is its own.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any, Callable

from .errors import ArenaError
from .provenance import file_sha256


class ArtifactStore:
    """Checkpoints by content hash, and model records by key, under one fsspec URL."""

    def __init__(self, url: str) -> None:
        import fsspec

        self.url = url
        try:
            self.fs, self.root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:
            raise ArenaError(f"cannot use ARENA_ARTIFACTS={url!r}: {exc}") from None

    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    @staticmethod
    def blob(sha256: str) -> str:
        """Where a file of that content lives, relative to the store's root."""
        return f"sha256/{sha256[:2]}/{sha256}"

    def record(self, key: str) -> dict[str, Any] | None:
        try:
            with self.fs.open(self._path("models", f"{key}.json"), "r") as handle:
                record = json.load(handle)
        except (FileNotFoundError, ValueError):
            return None
        return record if isinstance(record, dict) and isinstance(record.get("sha256"), str) else None

    def put_record(self, key: str, record: dict[str, Any]) -> None:
        """The record of model ``key``, naming where its checkpoint lives in the store."""
        record = {**record, "blob": self.blob(record["sha256"])}
        self._put_text(self._path("models", f"{key}.json"), json.dumps(record, indent=2, default=str))

    def put_model(self, key: str, weights: Path, record: dict[str, Any], overwrite: bool = False) -> None:
        """Put a checkpoint (once per content, unless ``overwrite``) and then its record (which
        names its hash)."""
        target = self._path(self.blob(record["sha256"]))
        if overwrite or not self.fs.exists(target):
            self._put_file(str(weights), target)
        self.put_record(key, record)

    def fetch_model(self, key: str, target: Path, warn: Callable[[str], None]) -> dict[str, Any] | None:
        """Download the checkpoint of ``key`` to ``target`` if the store has it and its content
        matches the recorded SHA-256; its record (None when absent or refused)."""
        record = self.record(key)
        if record is None:
            return None
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.fetch")
        try:
            self.fs.get_file(self._path(self.blob(record["sha256"])), str(temporary))
            digest = file_sha256(temporary)
            if digest != record["sha256"]:
                warn(f"the artifact store's checkpoint of model {key[:12]} does not match its recorded SHA-256 "
                     f"({self.url}); training it here instead")
                return None
            os.replace(temporary, target)
        except FileNotFoundError:
            return None
        finally:
            temporary.unlink(missing_ok=True)
        return record

    def _put_file(self, source: str, target: str) -> None:
        # Under a temporary name, then moved: a reader never sees half a file (object stores
        # write whole objects anyway).
        temporary = f"{target}.{uuid.uuid4().hex}.tmp"
        self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        self.fs.put_file(source, temporary)
        self.fs.mv(temporary, target)

    def _put_text(self, target: str, text: str) -> None:
        temporary = f"{target}.{uuid.uuid4().hex}.tmp"
        self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        with self.fs.open(temporary, "w") as handle:
            handle.write(text)
        self.fs.mv(temporary, target)


def artifact_store() -> ArtifactStore | None:
    """The store ``ARENA_ARTIFACTS`` names, or None when it is unset."""
    url = os.environ.get("ARENA_ARTIFACTS")
    return ArtifactStore(url) if url else None
