"""The 32x32 colour networks RobustBench's entries use, built to their published sizes, and
trained by the defenses like any architecture."""

from __future__ import annotations

import json

import pytest
import torch

from arena.errors import InvalidInputError
from arena.models import build_classifier

from .conftest import run_arena


@pytest.mark.parametrize(("architecture", "weights"), [
    ("preact-resnet18", 11_172_170),  # PreActResNet-18 of Rice et al. (2020), final BN included
    ("wrn-28-10", 36_479_194),  # WideResNet-28-10 (Zagoruyko & Komodakis 2016) as RobustBench counts it
    ("wrn-34-10", 46_160_474),
])
def test_the_networks_have_their_published_sizes(architecture, weights):
    model = build_classifier(architecture, (3, 32, 32), 10)
    assert sum(p.numel() for p in model.parameters()) == weights
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert build_classifier(architecture, (1, 28, 28), 10)(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_any_wide_resnet_and_a_clear_error_for_an_impossible_one():
    assert sum(p.numel() for p in build_classifier("wrn-16-4", (3, 32, 32), 10).parameters()) == 2_748_890
    with pytest.raises(InvalidInputError, match="the depth must be 6n \\+ 4"):
        build_classifier("wrn-27-10", (3, 32, 32), 10)


def test_a_defense_trains_a_preact_resnet(tmp_path):
    done = run_arena("run", "-a", "fgsm", "-d", "standard", "--dataset", "digits-tiny", "-p",
                     "standard.architecture=preact-resnet18", "-p", "standard.epochs=2", "--n", "20",
                     "--db", str(tmp_path / "r.db"), env={"ARENA_HOME": str(tmp_path / "home")})
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(run_arena("results", "--json", "--db", str(tmp_path / "r.db")).stdout)
    assert row["status"] == "ok" and row["defense_params"]["architecture"] == "preact-resnet18"
