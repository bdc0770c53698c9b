"""The standard datasets from their official files: each format read exactly (files the tests
write in the official formats), damaged and wrong files refused with one clear line and nothing
stored, unchecked files flagged, and `arena data fetch` against a local HTTP server (resumed
downloads, checksum refusal)."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from arena import data
from arena.cli import cli
from arena.data import DataFileError, OfficialFile, md5sum
from arena.testing import check_dataset

from . import official_files


def _official(monkeypatch, dataset: str, folder: Path) -> None:
    """Make the files the test wrote the 'official' ones (their MD5s), served from nowhere."""
    monkeypatch.setitem(data.FILES, dataset, tuple(
        OfficialFile(f.name, md5sum(folder / f.name), f.urls) for f in data.FILES[dataset]))


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ARENA_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("ARENA_DATA_VERIFY", raising=False)
    return tmp_path / "data"


def _plugin(name: str):
    from arena.plugins import get_registry

    return get_registry().get("dataset", name).cls()


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_files_are_read_exactly(name, data_dir, monkeypatch):
    arrays = official_files.idx_files(data_dir / name)
    _official(monkeypatch, name, data_dir / name)
    dataset = _plugin(name)
    splits = dataset.load()
    dataset.check_splits(splits)
    assert dataset.files_verified is True
    assert torch.equal(splits.x_train, torch.from_numpy(arrays["train_images"]).float()[:, None] / 255)
    assert torch.equal(splits.y_test, torch.from_numpy(arrays["t10k_labels"]).long())
    assert splits.x_train.shape == (30, 1, 28, 28) and splits.x_test.shape == (20, 1, 28, 28)
    assert all(r.passed for r in check_dataset(type(dataset)))  # the conformance checks: levels, classes, ...


def test_cifar10_binary_records_are_read_exactly(data_dir, monkeypatch):
    batches = official_files.cifar_archive(data_dir / "cifar10")
    _official(monkeypatch, "cifar10", data_dir / "cifar10")
    splits = _plugin("cifar10").load()
    train = np.concatenate([batches[f"data_batch_{i}.bin"][0] for i in range(1, 6)])
    assert torch.equal(splits.x_train, torch.from_numpy(train).float() / 255) and splits.x_train.shape == (60, 3, 32, 32)
    assert splits.y_test.tolist() == batches["test_batch.bin"][1].tolist()
    # the R, G and B planes of a record are the image's channels
    assert torch.equal(splits.x_test[0, 2], torch.from_numpy(batches["test_batch.bin"][0][0, 2]).float() / 255)


def test_svhn_mat_files_are_read_exactly_with_ten_meaning_zero(data_dir, monkeypatch):
    made = official_files.svhn_files(data_dir / "svhn")
    _official(monkeypatch, "svhn", data_dir / "svhn")
    splits = _plugin("svhn").load()
    x, y = made["train_32x32.mat"]
    assert torch.equal(splits.x_train, torch.from_numpy(x.transpose(3, 2, 0, 1).copy()).float() / 255)
    assert splits.y_train.tolist() == [int(v) % 10 for v in y.reshape(-1)]
    assert splits.x_test.shape == (15, 3, 32, 32) and 0 in splits.y_test.tolist()


def _run(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_a_damaged_file_is_one_clear_error_and_nothing_is_stored(damage, data_dir, monkeypatch, tmp_path):
    official_files.idx_files(data_dir / "mnist")
    target = data_dir / "mnist" / "t10k-images-idx3-ubyte.gz"
    whole = target.read_bytes()
    target.write_bytes(whole[: len(whole) // 2] if damage == "truncated" else b"\x1f\x8b" + bytes(range(200)))
    _official(monkeypatch, "mnist", data_dir / "mnist")  # its checksum passes: the format check must catch it
    db = f"sqlite:///{tmp_path / 'r.db'}"
    done = _run("run", "-a", "fgsm", "-d", "standard", "--dataset", "mnist", "--db", db)
    assert done.exit_code == 1 and done.stderr.count("\n") == 1, done.stderr
    assert f"{target} is truncated or corrupt" in done.stderr and "arena data fetch" in done.stderr
    assert json.loads(_run("results", "--json", "--all", "--db", db).stdout or "[]") == []


def test_a_missing_file_says_which_where_and_the_fetch_command(data_dir):
    done = _run("run", "-a", "fgsm", "-d", "standard", "--dataset", "svhn")
    assert done.exit_code == 1
    assert (f"dataset svhn: train_32x32.mat is missing from {data_dir / 'svhn'}: run `arena data fetch svhn`, or put "
            "the official file there (from http://ufldl.stanford.edu/housenumbers/train_32x32.mat)") in done.stderr


def test_a_file_that_is_not_the_official_one_is_refused_unless_told_and_then_flagged(data_dir, monkeypatch, tmp_path):
    official_files.idx_files(data_dir / "fashion-mnist")  # our own files: not the official MD5s
    db = f"sqlite:///{tmp_path / 'r.db'}"
    args = ("run", "-a", "fgsm", "-d", "standard", "-p", "standard.epochs=1", "--dataset", "fashion-mnist", "--n", "10",
            "--db", db)
    refused = _run(*args)
    assert refused.exit_code == 1 and "is not the official train-images-idx3-ubyte.gz (its MD5 differs)" in refused.stderr
    assert "ARENA_DATA_VERIFY=0" in refused.stderr
    monkeypatch.setenv("ARENA_DATA_VERIFY", "0")
    done = _run(*args)
    assert done.exit_code == 0, done.output + done.stderr
    (row,) = json.loads(_run("results", "--json", "--db", db).stdout)
    assert [f["code"] for f in row["flags"]] == ["unverified-data"] and "unverified-data" in done.stderr


class _Files(http.server.BaseHTTPRequestHandler):
    """Serves a folder with HTTP Range support; records the Range headers it was sent."""

    folder: Path
    ranges: list = []
    cut_after: int | None = None  # send only this many bytes of a body (a dropped connection)

    def do_GET(self):  # noqa: N802 - the http.server API
        path = self.folder / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        wanted = self.headers.get("Range")
        type(self).ranges.append(wanted)
        start = int(wanted.removeprefix("bytes=").rstrip("-")) if wanted else 0
        if start >= len(body):
            self.send_response(416)
            self.end_headers()
            return
        self.send_response(206 if wanted else 200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        part = body[start:] if self.cut_after is None else body[start : start + self.cut_after]
        self.wfile.write(part)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    handler = type("Handler", (_Files,), {"folder": folder, "ranges": [], "cut_after": None})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_fetch_downloads_resumes_an_interrupted_download_and_verifies(server, data_dir, monkeypatch):
    handler, url = server
    official_files.svhn_files(handler.folder)
    _official(monkeypatch, "svhn", handler.folder)
    monkeypatch.setenv("ARENA_DATA_MIRROR", url)
    size = (handler.folder / "train_32x32.mat").stat().st_size
    handler.cut_after = size // 3  # the connection drops a third of the way in
    cut = _run("data", "fetch", "svhn")
    assert cut.exit_code == 1 and "run the same command again to resume" in cut.stderr
    part = data_dir / "svhn" / "train_32x32.mat.part"
    assert part.stat().st_size == size // 3 and not (data_dir / "svhn" / "train_32x32.mat").exists()

    handler.cut_after = None
    done = _run("data", "fetch", "svhn")
    assert done.exit_code == 0, done.output + done.stderr
    assert "svhn: 2 official files in" in done.stdout and "checksums verified" in done.stdout
    assert f"bytes={size // 3}-" in handler.ranges  # resumed where it stopped, not from the start
    for name in ("train_32x32.mat", "test_32x32.mat"):
        assert md5sum(data_dir / "svhn" / name) == md5sum(handler.folder / name)
    assert _plugin("svhn").load().x_train.shape == (25, 3, 32, 32)


def test_fetch_refuses_a_file_whose_checksum_is_wrong(server, data_dir, monkeypatch):
    handler, url = server
    official_files.idx_files(handler.folder)
    _official(monkeypatch, "mnist", handler.folder)
    (handler.folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not the official file")  # the server's copy changed
    monkeypatch.setenv("ARENA_DATA_MIRROR", url)
    done = _run("data", "fetch", "mnist")
    assert done.exit_code == 1 and "t10k-labels-idx1-ubyte.gz from" in done.stderr
    assert "does not match its official MD5: the download was discarded" in done.stderr
    assert not (data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()
    assert not (data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz.part").exists()
    with pytest.raises(DataFileError, match="t10k-labels-idx1-ubyte.gz is missing"):
        _plugin("mnist").load()
