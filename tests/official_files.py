"""Small files in exactly the official formats of MNIST / Fashion-MNIST (IDX, gzip), CIFAR-10
(binary version, tar.gz) and SVHN (cropped digits, MATLAB .mat), written by the tests."""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
from pathlib import Path

import numpy as np


def idx_files(folder: Path, train: int = 30, test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {}
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        with gzip.open(folder / f"{split}-images-idx3-ubyte.gz", "wb") as out:
            out.write(struct.pack(">IIII", 0x00000803, n, 28, 28) + images.tobytes())
        with gzip.open(folder / f"{split}-labels-idx1-ubyte.gz", "wb") as out:
            out.write(struct.pack(">II", 0x00000801, n) + labels.tobytes())
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    return arrays


def cifar_archive(folder: Path, per_batch: int = 12, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    with tarfile.open(folder / "cifar-10-binary.tar.gz", "w:gz") as archive:
        for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
            labels = rng.integers(0, 10, per_batch, dtype=np.uint8)
            pixels = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
            data = np.concatenate([labels[:, None], pixels], axis=1).tobytes()
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
            batches[name] = (pixels.reshape(-1, 3, 32, 32), labels)
    return batches


def svhn_files(folder: Path, train: int = 25, test: int = 15, seed: int = 0) -> dict[str, tuple]:
    import scipy.io

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for name, n in (("train_32x32.mat", train), ("test_32x32.mat", test)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(-1, 1)  # 1..10, 10 standing for the digit 0
        scipy.io.savemat(folder / name, {"X": x, "y": y})
        made[name] = (x, y)
    return made
