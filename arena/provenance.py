"""Provenance: the software and hardware a result was computed with."""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

import arena

if TYPE_CHECKING:
    import torch


def stable_hash(value: Any) -> str:
    """SHA-256 of a canonical JSON encoding: the identity of a run, model or checkpoint."""
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def code_files(module: str, builtin: bool = False) -> list[Path]:
    """The source files whose hash identifies the code of a plugin defined in ``module``.

    A third-party plugin: every ``.py`` file of its top-level package (or its module file, for
    a single-module distribution). A built-in plugin: every ``.py`` file of the package of its
    kind (``arena_plugins.attacks``, ``arena_plugins.defenses``, ...), which holds the helpers
    its plugins share and the defenses that wrap one another. The host's own modules are not
    included: they are identified by Arena's version.
    """
    parts = module.split(".")
    package = ".".join(parts[:-1]) if builtin and len(parts) > 1 else parts[0]
    loaded = sys.modules.get(package) or sys.modules.get(module)
    if loaded is None:
        return []
    folders = [Path(folder) for folder in getattr(loaded, "__path__", None) or []]
    if folders:
        return sorted({path for folder in folders for path in folder.rglob("*.py") if path.is_file()})
    file = getattr(loaded, "__file__", None)
    return [Path(file)] if file and Path(file).is_file() else []


def _files_sha256(files: list[Path]) -> str:
    """SHA-256 over the files' paths (relative to their common folder) and contents."""
    common = Path(os.path.commonpath([path.parent for path in files]))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(common).as_posix().encode() + b"\0" + file_sha256(path).encode() + b"\n")
    return digest.hexdigest()


@functools.cache
def code_sha256(cls: type, builtin: bool = False) -> str | None:
    """SHA-256 of the source code of a plugin class (see :func:`code_files`), computed once per
    process: the files' paths relative to their common folder and their contents. ``None`` when
    the class has no source files to read (defined interactively, say)."""
    try:
        files = code_files(cls.__module__, builtin)
        if files:
            return _files_sha256(files)
        return hashlib.sha256(inspect.getsource(cls).encode()).hexdigest()
    except (OSError, TypeError, ValueError):
        return None


@functools.cache
def git_revision() -> str | None:
    """The git commit Arena runs from, with ``+dirty`` for local changes; None outside a checkout."""
    root = Path(arena.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        revision = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return revision + ("+dirty" if dirty else "") if revision else None


def device_name(device: torch.device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and settings that can change a result."""
    import torch

    return {
        "arena_version": arena.__version__,
        "git_revision": git_revision(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "platform": platform.platform(),
        "device": str(device),
        "device_name": device_name(device),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "torch_threads": torch.get_num_threads(),
    }
