"""One artifact store shared by every worker: files by SHA-256, behind any fsspec URL.

``ARENA_ARTIFACTS`` names it (a folder on a shared filesystem, ``s3://bucket/arena``, any URL
fsspec opens). A checkpoint goes in once, under its content's SHA-256
(``sha256/AB/ABCDEF...``), with its record (what produced it, its hash, its training history and
probe) under the model's key (``models/KEY.json``). The files a run keeps (its adversarial
examples, its sample grids) go in the same way, under their hash and their kind's suffix
(``sha256/AB/ABCDEF....safetensors``), and the run records that path. Every path inside the
store is relative to its root, never one machine's absolute path; a store on another machine
is read through a local copy under ``$ARENA_HOME/cache/artifacts``, checked against its hash.

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
import shutil
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

    @property
    def local(self) -> bool:
        """Whether the store is a folder of this machine (its files are read in place)."""
        return "file" in _protocols(self.fs)

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

    def put_file(self, source: Path) -> str:
        """Keep a run's file (once per content); its path relative to the store,
        ``sha256/AB/HASH.SUFFIX``."""
        relative = f"{self.blob(file_sha256(source))}{source.suffix}"
        target = self._path(relative)
        if not self.fs.exists(target):
            self._put_file(str(source), target)
        return relative

    def local_file(self, relative: str, cache: Path) -> Path:
        """A path on this machine holding the store's file ``relative``: the file itself in a
        local store, else a copy under ``cache``, downloaded once and checked against the hash
        in its name. Raises FileNotFoundError when the store does not have it and ValueError
        when its content does not match its name."""
        if self.local:
            return Path(self._path(relative))
        target = cache / relative
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.fetch")
        try:
            self.fs.get_file(self._path(relative), str(temporary))
            if file_sha256(temporary) != content_hash(relative):
                raise ValueError(f"its content does not match its SHA-256 name in the artifact store {self.url}")
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        return target

    def _put_file(self, source: str, target: str) -> None:
        # Under a temporary name, then moved: a reader never sees half a file (object stores
        # write whole objects anyway).
        temporary = f"{target}.{uuid.uuid4().hex}.tmp"
        self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        self.fs.put_file(source, temporary)
        if self.local:  # on disk before it has its name, as the local model cache writes
            with open(temporary, "rb") as written:
                os.fsync(written.fileno())
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


def run_files_url(home: Path) -> str:
    """Where runs keep their files: the store ``ARENA_ARTIFACTS`` names, else the folder
    ``artifacts`` of the Arena home ``home``."""
    return os.environ.get("ARENA_ARTIFACTS") or str(home / "artifacts")


def local_root(url: str) -> Path | None:
    """The folder a store URL names on this machine (a path or ``file://``), else None."""
    if "://" not in url:
        return Path(url)
    return Path(url.removeprefix("file://")) if url.startswith("file://") else None


def keep_file(home: Path, suffix: str, write: Callable[[str], None]) -> str:
    """Write one of a run's files through ``write(path)`` and keep it in the store of :func:`run_files_url`; the
    path the run records (relative to the store). A store in a folder of this machine (the
    default) is written directly, without fsspec."""
    import tempfile

    home.mkdir(parents=True, exist_ok=True)
    url = run_files_url(home)
    root = local_root(url)
    with tempfile.TemporaryDirectory(dir=home, prefix=".keep-") as folder:
        written = Path(folder) / f"file{suffix}"
        write(str(written))
        if root is None:
            return ArtifactStore(url).put_file(written)
        relative = f"{ArtifactStore.blob(file_sha256(written))}{suffix}"
        target = root / relative
        if not target.exists():  # once per content; on disk before it has its name
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(written, "rb") as handle:
                os.fsync(handle.fileno())
            temporary = target.with_name(f"{target.name}.{uuid.uuid4().hex}.tmp")
            shutil.copyfile(written, temporary)
            os.replace(temporary, target)
        return relative


def content_hash(relative: str) -> str | None:
    """The SHA-256 a store path ``sha256/AB/HASH[.SUFFIX]`` names, or None for another path."""
    parts = relative.split("/")
    if len(parts) != 3 or parts[0] != "sha256":
        return None
    digest = parts[2].split(".", 1)[0]
    if len(digest) != 64 or parts[1] != digest[:2] or any(c not in "0123456789abcdef" for c in digest):
        return None
    return digest


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)
