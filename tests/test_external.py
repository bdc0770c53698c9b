"""Your own checkpoint as a defense: a network built by your factory, its weights from a
safetensors file or a .pt state dict, identified by the weights' SHA-256 wherever they lie; a
pickled full model is refused."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from .conftest import run_arena

FACTORY = '''
from torch import nn


class Normalised(nn.Module):
    """Input normalisation belongs to the model."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        self.register_buffer("mean", __import__("torch").tensor(0.3))

    def forward(self, x):
        return self.net(x - self.mean)


def build():
    return Normalised()
'''


@pytest.fixture
def checkpoint(tmp_path) -> tuple[Path, nn.Module]:
    """A small network trained on digits by the test, its factory importable as my_models:build."""
    import importlib
    import sys

    (tmp_path / "my_models.py").write_text(FACTORY)
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("my_models")
        importlib.reload(module)
        model = module.build()
    finally:
        sys.path.remove(str(tmp_path))
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32)[:, None]
    y = torch.tensor(digits.target)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    torch.manual_seed(0)
    for _ in range(60):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    return tmp_path, model


def _run(tmp_path: Path, folder: Path, weights: Path, db: str = "runs.db"):
    return run_arena("run", "-a", "fgsm", "-d", "external", "-p", "external.model=my_models:build", "-p",
                     f"external.weights={weights}", "--n", "60", "--db", str(tmp_path / db), pythonpath=folder)


def _stored(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT r.key, x.defense_key, x.clean_accuracy, x.robust_accuracy, x.defense_params "
                            "FROM runs r JOIN robustness_results x ON x.run_id = r.id").fetchall()


def test_a_safetensors_checkpoint_is_evaluated_and_identified_by_its_hash(checkpoint, tmp_path):
    folder, model = checkpoint
    weights = folder / "model.safetensors"
    save_file(model.state_dict(), str(weights))
    done = _run(tmp_path, folder, weights)
    assert done.returncode == 0, done.stderr
    ((key, defense_key, clean, robust, params),) = _stored(tmp_path / "runs.db")
    assert clean > 0.8 and robust < clean  # the trained network, attacked
    assert json.loads(params) == {"model": "my_models:build", "weights": str(weights)}

    # The same weights elsewhere: the same model and result (found, not computed again).
    moved = tmp_path / "elsewhere" / "copy.safetensors"
    moved.parent.mkdir()
    shutil.copy(weights, moved)
    again = _run(tmp_path, folder, moved)
    assert again.returncode == 0 and "reus" in again.stdout
    # Other weights: another model.
    with torch.no_grad():
        model.net[1].weight.mul_(0.5)
    save_file(model.state_dict(), str(weights))
    other = _run(tmp_path, folder, weights)
    assert other.returncode == 0, other.stderr
    keys = {row[1] for row in _stored(tmp_path / "runs.db")}
    assert len(keys) == 2 and defense_key in keys


def test_a_pt_state_dict_works_and_a_pickled_model_is_refused(checkpoint, tmp_path):
    folder, model = checkpoint
    state = folder / "model.pt"
    torch.save(model.state_dict(), state)
    done = _run(tmp_path, folder, state)
    assert done.returncode == 0, done.stderr
    assert _stored(tmp_path / "runs.db")[0][2] > 0.8

    pickled = folder / "whole.pt"
    torch.save(model, pickled)
    refused = _run(tmp_path, folder, pickled, db="refused.db")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "whole.pt is not a plain state dict, refused unread: save model.state_dict(), not the model" in refused.stderr

    wrong = folder / "model.bin"
    wrong.write_bytes(b"weights")
    bad = _run(tmp_path, folder, wrong, db="refused.db")
    assert bad.returncode == 1 and "model.bin' is not a .safetensors, .pt or .pth file" in bad.stderr


def test_weights_that_do_not_fit_the_factory_are_a_clear_error(checkpoint, tmp_path):
    folder, _ = checkpoint
    weights = folder / "other.safetensors"
    save_file({"weight": torch.zeros(3, 3)}, str(weights))
    done = _run(tmp_path, folder, weights)
    assert done.returncode == 1 and "other.safetensors does not fit my_models:build()" in done.stderr


def test_external_keeps_the_defense_contract(checkpoint, monkeypatch):
    from arena.plugins import get_registry
    from arena.testing import check_defense

    folder, model = checkpoint
    weights = folder / "model.safetensors"
    save_file(model.state_dict(), str(weights))
    monkeypatch.syspath_prepend(str(folder))
    results = check_defense(get_registry().get("defense", "external").cls,
                            {"model": "my_models:build", "weights": str(weights)})
    assert {r.check for r in results} >= {"trains", "reloads from the cache", "one logit per class"}
