"""Run keys and per-sample outcomes of a small digits matrix against a committed snapshot.

The snapshot (``tests/snapshots/digits-matrix.json``) was taken before the redesign around
tracks and plans: a refactor must leave every key (runs and models) and every stored outcome as
it was. A deliberate key change made for another reason updates the snapshot in its own commit,
saying why: regenerate it with ``ARENA_UPDATE_SNAPSHOT=1 pytest tests/test_keys_snapshot.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from arena.store import open_store

SNAPSHOT = Path(__file__).parent / "snapshots" / "digits-matrix.json"
#: White-box, score-query and zero-query (transfer: host-trained surrogates) attacks against a
#: plain and a wrapping, non-differentiable defense (adaptive and plain evaluations), untargeted
#: and targeted, plus one generator.
COMMANDS = [
    ["run", "-a", "fgsm,pgd,square,transfer", "-d", "standard,bit-depth", "--n", "48", "--queries", "300"],
    ["run", "-a", "fgsm", "-d", "standard", "--n", "48", "--targeted", "--eps", "0.2"],
    ["run", "-g", "vae", "--samples", "64", "-p", "vae.epochs=1", "-p", "vae.hidden=16"],
]
#: Fields of each stored result that the snapshot holds (numbers rounded to 1e-9).
FIELDS = ["track", "status", "dataset", "dataset_hash", "seed", "n", "attack_label", "defense_label", "defense_key",
          "norm", "eps", "targeted", "evaluation", "clean_accuracy", "robust_accuracy", "attack_success_rate",
          "generator_label", "model_key", "bits_per_dim", "fid", "precision", "recall"]


def _snapshot(arena, db: str) -> dict:
    for command in COMMANDS:
        result = arena(*command)
        assert result.exit_code == 0, result.output + result.stderr
    rows = arena.json("results", "--json")
    store = open_store(db, writes=False)
    runs = {}
    for row in rows:
        record = {name: _rounded(row.get(name)) for name in FIELDS if name in row}
        samples = store.get_run(row["run_id"]).samples
        record["samples"] = [[s.index, s.clean_pred, s.adv_pred, s.target, bool(s.success), bool(s.robust)]
                             for s in sorted(samples, key=lambda s: s.index)]
        runs[row["key"]] = record
    return {"commands": COMMANDS, "runs": dict(sorted(runs.items()))}


def _rounded(value):
    return round(value, 9) if isinstance(value, float) else value


@pytest.fixture
def fresh_home(tmp_path, monkeypatch):
    """Models trained in this test, on one thread: the generative run's key holds the SHA-256 of
    the reference classifier's checkpoint, whose bytes depend on the order of float sums."""
    monkeypatch.setenv("ARENA_HOME", str(tmp_path / "home"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_keys_and_outcomes_match_the_snapshot(arena, db, fresh_home):
    found = _snapshot(arena, db)
    if os.environ.get("ARENA_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(found, indent=1) + "\n", encoding="utf-8")
    expected = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    assert expected["commands"] == found["commands"], "the snapshot was taken with other commands: regenerate it"
    assert sorted(found["runs"]) == sorted(expected["runs"]), "run keys changed"
    for key, record in expected["runs"].items():
        assert found["runs"][key] == record, f"run {key} ({record.get('attack_label') or record.get('generator_label')})"
