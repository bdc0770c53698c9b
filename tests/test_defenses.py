"""The defense catalogue end to end on digits, through the CLI: adversarial training against
standard training and dropout, obfuscated gradients seen through with BPDA, randomness seen
through with EOT.

PGD training, TRADES and fast adversarial training run a shortened schedule here (6 epochs at a
peak learning rate of 0.01, 5 inner steps) set with ``-p``; models are shared with every other
test through the session's model cache.

The claims on trained models run on two training seeds (``SEEDS``). Measured with
``arena run -a pgd,fgsm -d standard,dropout,advtrain,pgd-at,fast-at,trades --n 200`` and the
settings below, ``--seeds 0,1,2``, on a 2-core CPU (torch 2.13.0+cpu); clean / PGD robust / FGSM
robust accuracy, in %:

==========  ==================  ==================  ==================
defense     seed 0              seed 1              seed 2
==========  ==================  ==================  ==================
standard    98.5 / 3.0 / 9.5    98.5 / 1.0 / 5.0    97.5 / 1.5 / 4.5
dropout     98.5 / 4.5 / 12.0   98.0 / 5.0 / 17.0   97.0 / 8.5 / 20.5
advtrain    97.5 / 33.0 / 49.5  96.5 / 38.0 / 54.5  97.5 / 32.0 / 50.0
pgd-at      96.0 / 43.0 / 51.0  94.5 / 44.0 / 53.5  95.0 / 46.5 / 59.0
fast-at     97.0 / 34.0 / 54.0  95.5 / 39.0 / 56.0  96.0 / 37.0 / 57.5
trades      97.0 / 48.5 / 59.5  96.5 / 48.0 / 60.0  96.5 / 48.0 / 58.0
==========  ==================  ==================  ==================

Against the asserted bounds: adversarial training over standard under PGD, +30.0 to +46.5 points
(bound: +20); the largest clean-accuracy cost, 2.5 / 4.0 / 2.5 points (``pgd-at``; bound: 5);
``advtrain`` over ``dropout``, +23.5 to +33.0 points under PGD and +29.5 to +37.5 under FGSM
(bound: +20); ``fast-at`` behind ``pgd-at`` under PGD by 9.0 / 5.0 / 9.5 points (bound: 10). The
last three are close to their bounds on some seed: they hold on every seed measured, with
little room, and a machine whose training lands further off would show it here.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from arena.plugins import set_registry
from arena_plugins.defenses.random_noise import RandomNoise

from .conftest import Arena

#: The adversarial-training defenses and the hyperparameters they train with here.
ADVERSARIAL_TRAINING = {
    "advtrain": {},
    "pgd-at": {"epochs": 6, "lr": 0.01, "steps": 5},
    "fast-at": {"epochs": 6, "lr": 0.01},
    "trades": {"epochs": 6, "lr": 0.01, "steps": 5},
}
N = 200
#: The catalogue trains and attacks every model once per seed; each claim must hold on both.
SEEDS = (0, 1)


def _by(rows, *fields):
    return {tuple(row[f] for f in fields): row for row in rows}


def _by_evaluation(rows, defense):
    """``{(attack, "plain" | "adaptive"): row}`` for one defense."""
    return {(r["attack"], r["evaluation"]["mode"]): r for r in rows if r["defense"] == defense}


def _training_record(home: Path, row) -> dict:
    return json.loads((home / "models" / f"{row['defense_key']}.json").read_text())


@pytest.fixture(scope="module")
def catalogue_run(arena_home, tmp_path_factory):
    """Standard training, dropout and adversarial training under PGD and FGSM: one run, shared."""
    settings = [item for name, params in ADVERSARIAL_TRAINING.items() for key, value in params.items()
                for item in ("-p", f"{name}.{key}={value}")]
    defenses = ",".join(["standard", "dropout", *ADVERSARIAL_TRAINING])
    arena = Arena(f"sqlite:///{tmp_path_factory.mktemp('catalogue') / 'results.db'}")
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv("ARENA_HOME", str(arena_home))
        environment.delenv("ARENA_DB", raising=False)
        set_registry(None)
        seeds = ",".join(map(str, SEEDS))
        result = arena("run", "-a", "pgd,fgsm", "-d", defenses, "--n", str(N), *settings, "--seeds", seeds)
        assert result.exit_code == 0, result.output + result.stderr
        rows = arena.json("results", "--json")
        set_registry(None)
    assert {row["seed"] for row in rows} == set(SEEDS)
    return arena, _by(rows, "defense", "attack", "seed")


@pytest.fixture
def catalogue(catalogue_run):
    return catalogue_run[1]


@pytest.mark.parametrize("seed", SEEDS)
def test_adversarial_training_beats_standard_training_under_pgd(catalogue, seed):
    standard = catalogue[("standard", "pgd", seed)]
    assert standard["clean_accuracy"] >= 0.95 and standard["robust_accuracy"] <= 0.10
    for name in ADVERSARIAL_TRAINING:
        row = catalogue[(name, "pgd", seed)]
        assert row["eps"] == 0.2 and row["n"] == N and row["flags"] == []
        assert row["robust_accuracy"] >= standard["robust_accuracy"] + 0.20, name
        assert abs(row["clean_accuracy"] - standard["clean_accuracy"]) <= 0.05, name
        # FGSM is the weaker attack: it never finds more than PGD does.
        assert catalogue[(name, "fgsm", seed)]["robust_accuracy"] >= row["robust_accuracy"] - 2 / N, name


@pytest.mark.parametrize("seed", SEEDS)
def test_adversarial_training_regularises_better_than_dropout(catalogue, seed):
    # Goodfellow et al. 2015: dropout alone buys almost no robustness, adversarial training does.
    for attack in ("pgd", "fgsm"):
        advtrain, dropout = catalogue[("advtrain", attack, seed)], catalogue[("dropout", attack, seed)]
        assert advtrain["robust_accuracy"] >= dropout["robust_accuracy"] + 0.20, attack
    assert catalogue[("dropout", "pgd", seed)]["defense_params"]["p"] == 0.5


@pytest.mark.parametrize("seed", SEEDS)
def test_fast_at_is_cheaper_than_pgd_at_and_nearly_as_robust(catalogue, arena_home, seed):
    fast, pgd = catalogue[("fast-at", "pgd", seed)], catalogue[("pgd-at", "pgd", seed)]
    backward = {}
    for name, row in (("fast-at", fast), ("pgd-at", pgd)):
        history = _training_record(arena_home, row)["history"]
        assert [epoch["epoch"] for epoch in history] == list(range(1, 7))
        backward[name] = sum(epoch["backward_passes"] for epoch in history)
    # Per training image and epoch: one input gradient and the update, against five input
    # gradients and the update. (Wall times, which the record holds too, are in the README.)
    images = 6 * 1437  # epochs x digits' training split
    assert backward == {"fast-at": 2 * images, "pgd-at": 6 * images}
    assert fast["robust_accuracy"] >= pgd["robust_accuracy"] - 0.10


def test_training_progress_is_stored_and_shown(catalogue_run, arena_home):
    arena, catalogue = catalogue_run
    for seed in SEEDS:
        # Measured on seeds 0-2, the first and last epochs' robust accuracy: 7.8% -> 51.6%,
        # 13.3% -> 53.9%, 17.2% -> 52.3%.
        record = _training_record(arena_home, catalogue[("trades", "pgd", seed)])
        assert record["meta"]["params"]["beta"] == 6.0 and record["train_seconds"] > 0
        for epoch in record["history"]:
            assert {"loss", "test_accuracy", "robust_accuracy", "seconds"} <= set(epoch)
        history = record["history"]
        assert history[-1]["robust_accuracy"] > history[0]["robust_accuracy"], seed
    row = catalogue[("trades", "pgd", 0)]
    shown = arena("show", str(row["run_id"]))
    assert shown.exit_code == 0 and "Training" in shown.stdout and "robust_accuracy" in shown.stdout
    assert '"beta": 6.0' in shown.stdout  # the hyperparameters are recorded with the result


def test_bit_depth_masks_gradients_and_bpda_sees_through(arena, tmp_path):
    result = arena("run", "-a", "fgsm,pgd", "-d", "bit-depth,median-filter", "--n", str(N))
    assert result.exit_code == 0, result.output + result.stderr
    rows = arena.json("results", "--json")
    squeezed = _by_evaluation(rows, "bit-depth")
    for attack in ("fgsm", "pgd"):
        plain, bpda = squeezed[(attack, "plain")], squeezed[(attack, "adaptive")]
        assert bpda["evaluation"]["bpda"] and not plain["evaluation"]["bpda"]
        assert {"zero-gradients", "not-adaptive"} <= {f["code"] for f in plain["flags"]}
        assert {f["code"] for f in bpda["flags"]} == {"bpda"}
        # Zero gradients: the plain attack barely moves, robust accuracy looks close to clean.
        # Measured on seeds 0-2 (clean 92.5 / 93.0 / 90.0%): plain FGSM does not move at all
        # (0 points); plain PGD loses 2.0 / 5.5 / 6.5 points, the points its random start alone
        # carries past a quantisation step. Through BPDA the attacks lose a further 40.0-47.0
        # points (bound: 25).
        moved = {"fgsm": 0.05, "pgd": 0.10}[attack]
        assert plain["robust_accuracy"] >= plain["clean_accuracy"] - moved, attack
        assert bpda["robust_accuracy"] <= plain["robust_accuracy"] - 0.25, attack
        shown = arena("show", str(bpda["run_id"]))
        assert "Evaluations of this pairing" in shown.stdout
        assert f"{100 * plain['robust_accuracy']:.1f}%" in shown.stdout
        assert f"{100 * bpda['robust_accuracy']:.1f}%" in shown.stdout
    # The median is differentiable almost everywhere: attacked with its own gradients, once.
    median = [r for r in rows if r["defense"] == "median-filter"]
    assert sorted(r["attack"] for r in median) == ["fgsm", "pgd"]
    assert all(r["evaluation"]["mode"] == "plain" and r["flags"] == [] for r in median)

    # The leaderboard ranks the BPDA results; the plain ones it leaves aside.
    boards = arena.json("leaderboard", "--format", "json")
    matrix = next(b for b in boards if b["table"] == "matrix")
    cells = next(e for e in matrix["entries"] if e["defense"] == "bit-depth")
    assert cells["attack:pgd"] == squeezed[("pgd", "adaptive")]["robust_accuracy"]
    assert cells["attack:fgsm"] == squeezed[("fgsm", "adaptive")]["robust_accuracy"]
    defenses = next(b for b in boards if b["table"] == "defenses")
    entry = next(e for e in defenses["entries"] if e["defense"] == "bit-depth")
    assert entry["worst_case"] <= cells["attack:pgd"] and entry["flags"] == ["bpda"] and not entry["suspect"]

    # The exported commands recompute the BPDA result and the plain one, each under its own key;
    # the leaderboard's export lists the runs it ranked (the BPDA ones).
    (runs,) = [b for b in boards if b["table"] == "runs"]
    assert {e["key"] for e in runs["entries"]} >= {squeezed[(a, "adaptive")]["key"] for a in ("fgsm", "pgd")}
    assert not {e["key"] for e in runs["entries"]} & {squeezed[(a, "plain")]["key"] for a in ("fgsm", "pgd")}
    fresh = Arena(f"sqlite:///{tmp_path / 'again.db'}")
    for row in (squeezed[("fgsm", "adaptive")], squeezed[("fgsm", "plain")]):
        assert fresh(*shlex.split(row["command"])[1:]).exit_code == 0
    again = {r["key"]: r["robust_accuracy"] for r in fresh.json("results", "--json")}
    assert again == {squeezed[("fgsm", m)]["key"]: squeezed[("fgsm", m)]["robust_accuracy"] for m in ("adaptive", "plain")}


def test_random_noise_is_detected_and_eot_breaks_it(arena, monkeypatch, tmp_path):
    # Declared deterministic here: the host must find the randomness by itself.
    monkeypatch.setattr(RandomNoise, "deterministic", True)
    result = arena("run", "-a", "fgsm", "-d", "random-noise", "--n", str(N))
    assert result.exit_code == 0, result.output + result.stderr
    rows = {r["evaluation"]["mode"]: r for r in arena.json("results", "--json")}
    eot, single = rows["adaptive"], rows["plain"]
    assert eot["evaluation"] == {"mode": "adaptive", "bpda": False, "eot_samples": 20, "decision_draws": 10}
    # ... and flags the false declaration.
    assert {f["code"] for f in eot["flags"]} == {"randomized", "eot", "undeclared-randomness"}
    assert {f["code"] for f in single["flags"]} == {"randomized", "not-adaptive", "undeclared-randomness"}
    # Measured on seeds 0-2: 12.0 -> 1.0%, 8.5 -> 0.5%, 7.5 -> 0.5% (one draw -> EOT).
    assert eot["robust_accuracy"] <= single["robust_accuracy"] - 0.05
    assert eot["backward_passes"] >= 20 * round(eot["clean_accuracy"] * N)  # 20 gradients per attacked point
    # The host seeds the draws: the same command on a fresh database reproduces the result.
    fresh = Arena(f"sqlite:///{tmp_path / 'again.db'}")
    assert fresh("run", "-a", "fgsm", "-d", "random-noise", "--n", str(N), "--evaluation", "adaptive").exit_code == 0
    (rerun,) = fresh.json("results", "--json")
    assert rerun["key"] == eot["key"] and rerun["robust_accuracy"] == eot["robust_accuracy"]
