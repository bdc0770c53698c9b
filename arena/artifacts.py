"""The files a run keeps beside its result (``Run.artifacts``): read them, or say why not.

`arena run` keeps each run's adversarial examples (a safetensors file) and the generative track
its PNG grids in the artifact store (:mod:`arena.artifact_store`: ``ARENA_ARTIFACTS``, else
``$ARENA_HOME/artifacts``), and the run records each file's path relative to that store,
``sha256/AB/HASH.SUFFIX``; runs stored before the store recorded absolute paths, which are read
as they are. A file can go missing or be damaged later. Whatever reads one goes through here, so
that one unreadable file costs its own picture (with a warning), never a whole command.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ArenaError

#: The arrays of an examples file: test-point indices, clean and adversarial images, labels and
#: the defense's predictions on the adversarial images.
EXAMPLE_ARRAYS = ("index", "x", "x_adv", "label", "adv_pred")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class UnreadableArtifact(ArenaError):
    """A file a run points to that is missing or cannot be read; the message says which and why."""


def local_path(stored: Any, home: Path | None = None) -> Path:
    """The file on this machine that a run's stored path names: the path itself for an absolute
    one (runs stored before the artifact store), else the file in the artifact store
    (downloaded to ``$ARENA_HOME/cache/artifacts`` when the store is on another machine)."""
    if not isinstance(stored, (str, Path)) or not str(stored):
        raise UnreadableArtifact(f"the stored path {stored!r} is not a file name")
    stored = str(stored)
    if os.path.isabs(stored):
        return Path(stored)
    if home is None:
        from .config import home as arena_home

        home = arena_home()
    from .artifact_store import ArtifactStore, local_root, run_files_url

    url = run_files_url(home)
    missing = UnreadableArtifact(f"the file {stored} is not in the artifact store {url} (ARENA_ARTIFACTS must name "
                                 "the store its run wrote to)")
    root = local_root(url)
    if root is not None:  # a folder of this machine: read in place
        path = root / stored
        if not path.exists():
            raise missing
        return path

    try:
        return ArtifactStore(url).local_file(stored, home / "cache" / "artifacts")
    except FileNotFoundError:
        raise missing from None
    except (OSError, ValueError) as exc:
        raise UnreadableArtifact(f"the file {stored} of the artifact store {url} cannot be read "
                                 f"({_first_line(exc)})") from None


def _where(stored: Any, path: Path) -> str:
    return str(path) if str(stored) == str(path) else f"{stored} ({path})"


def read_examples(stored: str | Path) -> dict[str, np.ndarray]:
    """The arrays of an examples file (its stored path), checked for the shapes the pictures
    need."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = local_path(stored)
    where = f"the examples file {_where(stored, path)}"
    try:
        examples = load_file(str(path))
    except FileNotFoundError:
        raise UnreadableArtifact(f"{where} is missing") from None
    except (OSError, SafetensorError, ValueError, TypeError) as exc:
        raise UnreadableArtifact(f"{where} cannot be read ({_first_line(exc)})") from None
    missing = [name for name in EXAMPLE_ARRAYS if name not in examples]
    if missing:
        raise UnreadableArtifact(f"{where} lacks {', '.join(missing)}")
    x, x_adv = examples["x"], examples["x_adv"]
    count = len(x) if x.ndim == 4 else -1
    if x.ndim != 4 or x_adv.shape != x.shape or any(examples[k].shape != (count,) for k in ("index", "label", "adv_pred")):
        raise UnreadableArtifact(f"{where} holds arrays of unexpected shapes")
    return examples


def check_artifact(stored: Any) -> None:
    """Raise :class:`UnreadableArtifact` unless ``stored`` names a file Arena can read back: an
    examples file, a PNG, or (of any other kind) a file that exists; one in the artifact store
    must also hold the content its SHA-256 name says."""
    from .artifact_store import content_hash
    from .provenance import file_sha256

    file = local_path(stored)
    if file.suffix == ".safetensors":
        read_examples(stored)
    elif not file.is_file():
        raise UnreadableArtifact(f"the file {_where(stored, file)} is missing")
    elif file.suffix == ".png":
        try:
            from PIL import Image

            with Image.open(file) as image:
                image.verify()
        except Exception as exc:  # PIL raises many kinds for damaged images
            raise UnreadableArtifact(f"the picture {_where(stored, file)} cannot be read ({_first_line(exc)})") from None
    digest = content_hash(str(stored))
    if digest is not None and file_sha256(file) != digest:
        raise UnreadableArtifact(f"the file {_where(stored, file)} does not hold the content its SHA-256 name says "
                                 "(changed after it was stored)")


def read_png(stored: str | Path) -> bytes:
    """A PNG file's bytes (by its stored path), if it is one."""
    path = local_path(stored)
    where = _where(stored, path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UnreadableArtifact(f"the picture {where} is missing") from None
    except OSError as exc:
        raise UnreadableArtifact(f"the picture {where} cannot be read ({exc.strerror or exc})") from None
    if not data.startswith(PNG_SIGNATURE):
        raise UnreadableArtifact(f"the picture {where} is not a PNG file")
    return data


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
