"""The host's duties: devices, the model cache, datasets, targets, worst-case scores."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from arena.cache import ModelCache
from arena.progress import Reporter
from arena.host import resolve_device
from arena.judging import choose_targets
from arena_plugins.datasets.digits import Digits
from arena_plugins.datasets.mnist5k import Mnist5k
from arena_leaderboard import robustness_boards


def test_auto_device_picks_cuda_when_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; CI machines have none")
def test_end_to_end_on_cuda(arena):
    result = arena("run", "-a", "fgsm", "-d", "standard", "--device", "cuda", "--n", "200")
    assert result.exit_code == 0, result.stderr
    (row,) = arena.json("results", "--json")
    assert row["device"].startswith("cuda") and row["clean_accuracy"] >= 0.95


def test_targets_are_seeded_and_never_the_label():
    labels = torch.arange(10).repeat(50)
    targets = choose_targets(labels, 10, seed=3)
    assert not (targets == labels).any()
    assert torch.equal(targets, choose_targets(labels, 10, seed=3))
    assert not torch.equal(targets, choose_targets(labels, 10, seed=4))
    assert set(targets.tolist()) == set(range(10))


@pytest.mark.parametrize("dataset, sizes, levels", [(Digits, (1437, 360), 17), (Mnist5k, (4000, 1000), 256)])
def test_shipped_datasets(dataset, sizes, levels):
    plugin = dataset()
    splits = plugin.load()
    plugin.check_splits(splits)
    assert (len(splits.x_train), len(splits.x_test)) == sizes
    grid = splits.x_test * (levels - 1)
    assert torch.equal(grid, grid.round())  # values sit on the dataset's pixel levels
    # Stratified: each class's share of the test split matches the training split's.
    train_share = torch.bincount(splits.y_train, minlength=10) / len(splits.y_train)
    test_share = torch.bincount(splits.y_test, minlength=10) / len(splits.y_test)
    assert (train_share - test_share).abs().max() < 0.01
    assert splits.content_hash() == plugin.load().content_hash()


def test_tampered_checkpoint_is_rejected_and_rebuilt(tmp_path):
    messages = []
    reporter = Reporter(enabled=False)
    reporter.log = reporter.warn = messages.append
    cache = ModelCache(tmp_path, reporter)
    trained = []

    def build():
        torch.manual_seed(0)
        return torch.nn.Linear(4, 2)

    def train(model):
        trained.append(1)
        with torch.no_grad():
            model.weight.fill_(0.5)
        return [{"epoch": 1}]

    first = cache.get("k", "defense", "lin", build, train, {})
    assert not first.cached and len(trained) == 1
    second = cache.get("k", "defense", "lin", build, train, {})
    assert second.cached and len(trained) == 1 and second.history == [{"epoch": 1}]
    assert torch.equal(second.model.weight, torch.full((2, 4), 0.5))

    path = cache.weights_path("k")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # flip bits in the weights
    path.write_bytes(bytes(data))
    third = cache.get("k", "defense", "lin", build, train, {})
    assert not third.cached and len(trained) == 2
    assert any("does not match its recorded SHA-256" in m for m in messages)
    assert json.loads(cache.record_path("k").read_text())["sha256"] == third.sha256


def _row(run_id, attack, defense, robust, clean=1.0, n=4):
    return {"run_id": run_id, "status": "ok", "dataset": "digits", "norm": "linf", "eps": 0.2, "targeted": False,
            "attack_label": attack, "attack_access": "white-box", "defense_label": defense, "defense_key": defense,
            "clean_accuracy": clean, "robust_accuracy": robust, "attack_success_rate": 1 - robust / clean,
            "n": n, "mean_linf": 0.2, "mean_l2": 1.0, "queries": None, "flags": []}


def _arrays(outcomes):
    """``{run_id: {index: robust}}`` as the store returns it: ``{run_id: (indices, robust)}``."""
    return {run_id: (np.array(list(o), dtype=np.int64), np.array(list(o.values()), dtype=bool))
            for run_id, o in outcomes.items()}


def test_worst_case_is_decided_per_sample():
    # Two attacks each leave half the samples robust, but different halves: nothing survives both.
    rows = [_row(1, "a", "d", 0.5), _row(2, "b", "d", 0.5), _row(3, "a", "e", 0.75), _row(4, "b", "e", 0.75)]
    outcomes = {
        1: {0: True, 1: True, 2: False, 3: False},
        2: {0: False, 1: False, 2: True, 3: True},
        3: {0: True, 1: True, 2: True, 3: False},
        4: {0: True, 1: True, 2: False, 3: True},
    }
    (board,) = robustness_boards(rows, _arrays(outcomes))
    by_name = {d.defense: d for d in board.defenses}
    assert by_name["d"].worst_case == 0.0 and by_name["e"].worst_case == 0.5
    assert [d.defense for d in board.defenses] == ["e", "d"]
    assert by_name["e"].robust_by_attack == {"a": 0.75, "b": 0.75}


def test_threat_models_are_never_mixed():
    rows = [_row(1, "a", "d", 0.5), {**_row(2, "a", "d", 0.1), "eps": 0.3}]
    outcomes = {1: {0: True, 1: True, 2: False, 3: False}, 2: {0: False, 1: False, 2: False, 3: True}}
    boards = robustness_boards(rows, _arrays(outcomes))
    assert [b.group.eps for b in boards] == [0.2, 0.3]
    assert [b.defenses[0].worst_case for b in boards] == [0.5, 0.25]
