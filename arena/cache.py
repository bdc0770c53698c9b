"""The model cache: trained weights as safetensors files, checked against a SHA-256 record.

Files are written to a temporary name and renamed, so a crash never leaves a half-written
checkpoint under a real name. Loading goes through safetensors only (no pickle), and a file
whose hash differs from its database record is rejected and rebuilt with a warning.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from .progress import Reporter
from .provenance import file_sha256
from .store import Store


@dataclass
class CachedModel:
    model: nn.Module
    key: str
    sha256: str
    cached: bool
    history: list[dict[str, Any]] | None


class ModelCache:
    def __init__(self, store: Store, root: Path, reporter: Reporter) -> None:
        self.store = store
        self.root = root
        self.reporter = reporter

    def path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

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
        model = build()
        path = self.path(key)
        record = self.store.checkpoint(key)
        if record is not None and path.exists():
            digest = file_sha256(path)
            if digest != record.sha256:
                self.reporter.log(
                    f"[yellow]warning:[/] checkpoint {path.name} ({kind} {name}) does not match its "
                    "recorded SHA-256; rebuilding it"
                )
            else:
                try:
                    load_model(model, str(path), strict=True)
                    return CachedModel(model, key, digest, True, record.meta.get("history"))
                except (SafetensorError, RuntimeError, OSError) as exc:
                    self.reporter.log(
                        f"[yellow]warning:[/] checkpoint {path.name} ({kind} {name}) cannot be loaded "
                        f"({exc}); rebuilding it"
                    )
        history = train(model)
        digest = self._save(model, path)
        self.store.save_checkpoint(
            key=key,
            kind=kind,
            name=name,
            path=str(path),
            sha256=digest,
            size=path.stat().st_size,
            meta={**meta, "history": history},
        )
        return CachedModel(model, key, digest, False, history)

    def _save(self, model: nn.Module, path: Path) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        os.close(handle)
        try:
            save_model(model, temporary)
            with open(temporary, "rb") as written:
                os.fsync(written.fileno())
            digest = file_sha256(Path(temporary))
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return digest
