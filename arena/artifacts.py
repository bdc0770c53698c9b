"""The files a run keeps beside its result (``Run.artifacts``): read them, or say why not.

`arena run` writes each run's adversarial examples to ``runs/KEY.safetensors`` and the generative
track writes PNG grids; a file can go missing or be damaged later. Whatever reads one goes through
here, so that one unreadable file costs its own picture (with a warning), never a whole command.
"""

from __future__ import annotations

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


def read_examples(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of an examples file, checked for the shapes the pictures need."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    where = f"the examples file {path}"
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


def check_artifact(path: Any) -> None:
    """Raise :class:`UnreadableArtifact` unless ``path`` is a file Arena can read back: an
    examples file, a PNG, or (of any other kind) a file that exists."""
    if not isinstance(path, str) or not path:
        raise UnreadableArtifact(f"the stored path {path!r} is not a file name")
    file = Path(path)
    if file.suffix == ".safetensors":
        read_examples(file)
        return
    if not file.is_file():
        raise UnreadableArtifact(f"the file {file} is missing")
    if file.suffix == ".png":
        try:
            from PIL import Image

            with Image.open(file) as image:
                image.verify()
        except Exception as exc:  # PIL raises many kinds for damaged images
            raise UnreadableArtifact(f"the picture {file} cannot be read ({_first_line(exc)})") from None


def read_png(path: str | Path) -> bytes:
    """A PNG file's bytes, if it is one."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise UnreadableArtifact(f"the picture {path} is missing") from None
    except OSError as exc:
        raise UnreadableArtifact(f"the picture {path} cannot be read ({exc.strerror or exc})") from None
    if not data.startswith(PNG_SIGNATURE):
        raise UnreadableArtifact(f"the picture {path} is not a PNG file")
    return data


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
