"""The standard datasets from their official files: where they live, how they are checked and
fetched, and how each format is read (without unpickling anything).

Files are looked for in ``ARENA_DATA`` (``--data-dir``; default ``$ARENA_HOME/data``), one
folder per dataset (``mnist/``, ``fashion-mnist/``, ``cifar10/``, ``svhn/``), under the names
the dataset's authors publish them with, and checked against the authors' MD5 sums before they
are read (once per file version: the result is remembered beside the files).
``ARENA_DATA_VERIFY=0`` skips that check, for files a user prepared in the same format; the
results then carry the flag ``unverified-data``.

Nothing downloads implicitly: ``arena data fetch NAME`` downloads a dataset's files from their
official addresses (``ARENA_DATA_MIRROR=URL`` names another server holding the same files),
resuming a partial download and refusing a file whose checksum is wrong. A missing file makes
``arena run`` say which file, where to put it and the fetch command.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import struct
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import InvalidInputError


@dataclass(frozen=True)
class OfficialFile:
    """One file of a dataset, as its authors publish it."""

    name: str
    md5: str
    #: Where the authors (or the mirror they point to) serve it; tried in order.
    urls: tuple[str, ...]


_MNIST = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FASHION = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)

#: Every dataset's official files: MD5 sums as published by the authors (and the mirrors that
#: torchvision and the Fashion-MNIST repository list).
FILES: dict[str, tuple[OfficialFile, ...]] = {
    "mnist": tuple(OfficialFile(name, md5, tuple(base + name for base in _MNIST)) for name, md5 in (
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    )),
    "fashion-mnist": tuple(OfficialFile(name, md5, tuple(base + name for base in _FASHION)) for name, md5 in (
        ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    )),
    "cifar10": (OfficialFile("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530",
                             ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",)),),
    "svhn": tuple(OfficialFile(name, md5, (f"http://ufldl.stanford.edu/housenumbers/{name}",)) for name, md5 in (
        ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
        ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
    )),
}


class DataFileError(InvalidInputError):
    """A dataset file that is missing, damaged or not the official one; the message says which
    and what to do."""


def data_dir() -> Path:
    """Where dataset files live: ``ARENA_DATA``, else ``$ARENA_HOME/data``."""
    from .config import home

    folder = os.environ.get("ARENA_DATA")
    return Path(folder).expanduser() if folder else home() / "data"


def verifying() -> bool:
    """Whether files are checked against the official sums (``ARENA_DATA_VERIFY`` is not 0)."""
    return os.environ.get("ARENA_DATA_VERIFY", "1").strip() != "0"


def md5sum(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def official_paths(dataset: str) -> tuple[dict[str, Path], bool]:
    """The dataset's files on this machine, by name, each checked against its official MD5
    (unless ``ARENA_DATA_VERIFY=0``); and whether they were checked. Raises
    :class:`DataFileError` naming a missing or wrong file and what to do."""
    folder = data_dir() / dataset
    paths = {}
    for file in FILES[dataset]:
        path = folder / file.name
        if not path.is_file():
            raise DataFileError(f"dataset {dataset}: {file.name} is missing from {folder}: run `arena data fetch "
                                f"{dataset}`, or put the official file there (from {file.urls[0]})")
        paths[file.name] = path
    verify = verifying()
    if verify:
        known = _verified(folder)
        for file in FILES[dataset]:
            path = paths[file.name]
            stat = path.stat()
            version = [stat.st_size, stat.st_mtime_ns, file.md5]
            if known.get(file.name) == version:
                continue
            if md5sum(path) != file.md5:
                raise DataFileError(f"dataset {dataset}: {path} is not the official {file.name} (its MD5 differs): "
                                    f"fetch it again with `arena data fetch {dataset} --force`, or set "
                                    "ARENA_DATA_VERIFY=0 to use a file you prepared in the same format")
            known[file.name] = version
            _remember(folder, known)
    return paths, verify


def _verified(folder: Path) -> dict[str, Any]:
    try:
        known = json.loads((folder / ".verified.json").read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def _remember(folder: Path, known: dict[str, Any]) -> None:
    from .cache import atomic_write

    try:
        atomic_write(folder / ".verified.json", lambda temporary: Path(temporary).write_text(json.dumps(known)))
    except OSError:  # a read-only data folder: checked again next time
        pass


# -- fetching --------------------------------------------------------------------------------


def fetch(dataset: str, force: bool = False, progress: Callable[[str, int, int | None], Any] | None = None,
          timeout: float = 60.0) -> list[Path]:
    """Download the dataset's official files into its folder (``ARENA_DATA_MIRROR`` replaces
    the official addresses with ``MIRROR/FILE``): a partial download resumes, a wrong checksum
    is refused and the download discarded. ``progress(name, done_bytes, total_bytes)`` is
    called as bytes arrive. Files already there with the right checksum are kept."""
    if dataset not in FILES:
        raise InvalidInputError(f"no official files are known for {dataset!r}: fetch one of {', '.join(FILES)}")
    folder = data_dir() / dataset
    folder.mkdir(parents=True, exist_ok=True)
    mirror = os.environ.get("ARENA_DATA_MIRROR", "").rstrip("/")
    written = []
    for file in FILES[dataset]:
        target = folder / file.name
        if target.is_file() and not force and md5sum(target) == file.md5:
            written.append(target)
            continue
        urls = (f"{mirror}/{file.name}",) if mirror else file.urls
        errors = []
        for url in urls:
            try:
                _download(url, target, file, progress, timeout)
                break
            except DataFileError:
                raise
            except (OSError, http.client.HTTPException) as exc:  # unreachable, or cut off: the part is kept
                errors.append(f"{url}: {getattr(exc, 'reason', None) or exc or type(exc).__name__}")
        else:
            raise DataFileError(f"dataset {dataset}: could not download {file.name} ({'; '.join(errors)}); run the "
                                "same command again to resume, or put the file in " + str(folder))
        written.append(target)
    return written


def _download(url: str, target: Path, file: OfficialFile, progress: Callable[..., Any] | None,
              timeout: float) -> None:
    import urllib.error
    import urllib.request

    partial = target.with_name(target.name + ".part")
    start = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # the partial file is whole already
            response = None
        else:
            raise OSError(f"HTTP {exc.code}") from None
    if response is not None:
        with response:
            resumed = start and response.status == 206
            total = response.headers.get("Content-Length")
            total = (int(total) + (start if resumed else 0)) if total else None
            done = start if resumed else 0
            with open(partial, "ab" if resumed else "wb") as out:
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    done += len(block)
                    if progress is not None:
                        progress(file.name, done, total)
        if total is not None and done < total:  # cut off: what arrived is kept, to resume from
            raise OSError(f"the connection closed after {done:,} of {total:,} bytes")
    if md5sum(partial) != file.md5:
        partial.unlink()
        raise DataFileError(f"{file.name} from {url} does not match its official MD5: the download was discarded; "
                            "run the command again (or check the mirror)")
    os.replace(partial, target)


# -- the formats -----------------------------------------------------------------------------


def _corrupt(path: Path, why: str) -> DataFileError:
    return DataFileError(f"{path} is truncated or corrupt ({why}): fetch it again with `arena data fetch ... --force`")


def read_idx(path: Path, images: bool) -> np.ndarray:
    """An IDX file (gzip-compressed, as MNIST and Fashion-MNIST publish them): ``uint8`` images
    (N, rows, cols) or labels (N,)."""
    try:
        with gzip.open(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:
        raise _corrupt(path, str(exc)) from None
    magic = 0x00000803 if images else 0x00000801
    dims = 3 if images else 1
    header = 4 + 4 * dims
    if len(data) < header or struct.unpack(">I", data[:4])[0] != magic:
        raise _corrupt(path, f"not an IDX {'image' if images else 'label'} file")
    shape = struct.unpack(f">{dims}I", data[4:header])
    size = int(np.prod(shape))
    if len(data) != header + size:
        raise _corrupt(path, f"{len(data) - header} bytes of data for shape {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


#: CIFAR-10's binary version: records of one label byte and 3,072 pixel bytes (R, G, B planes).
CIFAR_RECORD = 1 + 3 * 32 * 32
CIFAR_TRAIN = tuple(f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6))
CIFAR_TEST = ("cifar-10-batches-bin/test_batch.bin",)


def read_cifar_binary(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The training and test images (N, 3, 32, 32) ``uint8`` and labels of
    ``cifar-10-binary.tar.gz``, read from the archive's members (nothing extracted, nothing
    unpickled)."""
    try:
        with tarfile.open(path, "r:gz") as archive:
            parts = []
            for members in (CIFAR_TRAIN, CIFAR_TEST):
                records = []
                for name in members:
                    try:
                        member = archive.getmember(name)
                    except KeyError:
                        raise _corrupt(path, f"no {name} in the archive") from None
                    handle = archive.extractfile(member)
                    data = handle.read() if handle is not None else b""
                    if not data or len(data) % CIFAR_RECORD:
                        raise _corrupt(path, f"{name} holds {len(data)} bytes, not whole records")
                    records.append(np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR_RECORD))
                table = np.concatenate(records)
                parts += [table[:, 1:].reshape(-1, 3, 32, 32), table[:, 0].astype(np.int64)]
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise _corrupt(path, str(exc)) from None
    return parts[0], parts[1], parts[2], parts[3]


def read_svhn(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """SVHN's cropped digits (``*_32x32.mat``): images (N, 3, 32, 32) ``uint8`` and labels, the
    digit 0 stored as 10 there and as 0 here."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
    except (ValueError, OSError, TypeError, EOFError) as exc:
        raise _corrupt(path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    x, y = mat.get("X"), mat.get("y")
    if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or not isinstance(y, np.ndarray) \
            or y.size != x.shape[3]:
        raise _corrupt(path, "no X of shape (32, 32, 3, N) with N labels y")
    labels = y.reshape(-1).astype(np.int64)
    if labels.min() < 1 or labels.max() > 10:
        raise _corrupt(path, "labels outside 1..10")
    labels[labels == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), labels
