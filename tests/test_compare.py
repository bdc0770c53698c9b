"""Seeds and paired comparisons through the CLI, and the exact McNemar test against scipy."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from scipy.stats import binomtest

from arena.store import open_store
from arena_leaderboard.compare import compare, mcnemar_exact, paired_difference

from .synthetic_results import sweep


@pytest.mark.parametrize("first_only, second_only", [(0, 0), (1, 6), (6, 1), (3, 3), (0, 9), (12, 30), (2, 0)])
def test_mcnemar_exact_is_the_two_sided_binomial_test(first_only, second_only):
    expected = 1.0 if first_only + second_only == 0 else \
        binomtest(first_only, first_only + second_only, 0.5, alternative="two-sided").pvalue
    assert mcnemar_exact(first_only, second_only) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_exact_on_a_hand_made_table():
    # Discordant pairs 1 and 6 of 7: p = 2 * (C(7,0) + C(7,1)) / 2^7 = 16 / 128.
    assert mcnemar_exact(1, 6) == 0.125
    assert mcnemar_exact(0, 5) == 2 / 32
    assert mcnemar_exact(4, 4) == 1.0


def test_paired_difference_counts_discordant_pairs_and_brackets_the_difference():
    #            pairs:   both  A only  B only  neither
    first = np.array([[True] * 10 + [True] * 7 + [False] * 2 + [False] * 5])
    second = np.array([[True] * 10 + [False] * 7 + [True] * 2 + [False] * 5])
    stats = paired_difference(first, second, np.ones_like(first), np.zeros(1, dtype=int))
    assert (stats["first_only"], stats["second_only"], stats["pairs"]) == (7, 2, 24)
    assert stats["difference"] == pytest.approx(5 / 24)
    assert stats["first_value"] == pytest.approx(17 / 24) and stats["second_value"] == pytest.approx(12 / 24)
    assert stats["low"] < stats["difference"] < stats["high"]
    assert stats["p_value"] == pytest.approx(binomtest(2, 9, 0.5).pvalue)


def test_compare_defenses_and_attacks_on_synthetic_results():
    rows, outcomes = sweep(eps_values=(0.2,))
    result = compare(rows, outcomes, "advtrain", "standard")
    robust = {d: np.logical_and.reduce([outcomes[r["run_id"]][1] for r in rows if r["defense"] == d])
              for d in ("advtrain", "standard")}
    assert result.kind == "defenses" and result.over == ["fgsm", "noise"]
    assert result.first_only == int((robust["advtrain"] & ~robust["standard"]).sum())
    assert result.second_only == int((robust["standard"] & ~robust["advtrain"]).sum())
    assert result.difference == pytest.approx(robust["advtrain"].mean() - robust["standard"].mean())
    attacks = compare(rows, outcomes, "fgsm", "noise")
    assert attacks.kind == "attacks" and attacks.over == ["advtrain", "standard"] and attacks.pairs == 80
    with pytest.raises(Exception, match="not both defenses or both attacks"):
        compare(rows, outcomes, "fgsm", "standard")
    both, both_outcomes = sweep()
    with pytest.raises(Exception, match="several threat models"):
        compare(both, both_outcomes, "advtrain", "standard")


def test_seed_and_seeds_together_are_refused(arena):
    result = arena("run", "-a", "fgsm", "-d", "standard", "--seed", "1", "--seeds", "0,1")
    assert result.exit_code != 0
    assert result.stderr.strip().splitlines() == [
        "Error: --seed and --seeds were both given: use --seed S for one seed or --seeds S1,S2,.. for several"
    ]
    result = arena("run", "-a", "fgsm", "-d", "standard", "--seeds", "0,0")
    assert result.exit_code != 0 and "listed twice" in result.stderr


def test_seeds_the_leaderboard_spread_and_paired_comparisons(arena):
    """Each seed trains and attacks anew; the leaderboard's mean and spread follow from the stored
    results; `arena compare` finds advtrain more robust than standard, as a hand count does."""
    for defense, seeds in (("standard", ["--seeds", "0,1"]), ("advtrain", [])):
        ran = arena("run", "-a", "fgsm,noise", "-d", defense, *seeds, "--n", "200")
        assert ran.exit_code == 0, ran.output + ran.stderr
    rows = arena.json("results", "--json")
    assert len(rows) == 6 and sorted(r["seed"] for r in rows if r["defense"] == "standard") == [0, 0, 1, 1]
    assert len({r["defense_key"] for r in rows}) == 3  # standard trained once per seed

    boards = arena.json("leaderboard", "--format", "json")
    (defenses,) = [b for b in boards if b["table"] == "defenses"]
    (matrix,) = [b for b in boards if b["table"] == "matrix"]
    assert "seeds" in defenses["columns"]
    entry = next(e for e in defenses["entries"] if e["defense"] == "standard")
    mine = [r for r in rows if r["defense"] == "standard"]
    cleans = [next(r["clean_accuracy"] for r in mine if r["seed"] == s) for s in (0, 1)]
    assert entry["seeds"] == 2
    assert entry["clean_accuracy"] == pytest.approx(statistics.mean(cleans))
    assert entry["clean_accuracy_std"] == pytest.approx(statistics.stdev(cleans))
    cells = next(m for m in matrix["entries"] if m["defense"] == "standard")
    fgsm = [r["robust_accuracy"] for r in mine if r["attack"] == "fgsm"]
    assert cells["attack:fgsm"] == pytest.approx(statistics.mean(fgsm))
    assert cells["attack:fgsm:std"] == pytest.approx(statistics.stdev(fgsm))
    assert cells["attack:fgsm:seeds"] == 2
    single = next(e for e in defenses["entries"] if e["defense"] == "advtrain")
    assert single["seeds"] == 1 and single["clean_accuracy_std"] is None and single["worst_case_std"] is None

    # The per-sample worst case over fgsm and noise, counted by hand from the stored outcomes.
    store = open_store(arena.db, writes=False)
    robust = store.sample_outcomes([r["run_id"] for r in rows])
    worst = {(r["defense"], r["seed"]): np.logical_and.reduce(
        [robust[o["run_id"]][1] for o in rows if (o["defense"], o["seed"]) == (r["defense"], r["seed"])])
        for r in rows}
    per_seed = [worst[("standard", s)].mean() for s in (0, 1)]
    assert entry["worst_case"] == pytest.approx(statistics.mean(per_seed))
    assert entry["worst_case_std"] == pytest.approx(statistics.stdev(per_seed))

    # Paired on the seed both share (0) and its 200 test points.
    result = arena.json("compare", "standard", "advtrain", "--json")
    standard_only = int((worst[("standard", 0)] & ~worst[("advtrain", 0)]).sum())
    advtrain_only = int((worst[("advtrain", 0)] & ~worst[("standard", 0)]).sum())
    assert (result["first_only"], result["second_only"]) == (standard_only, advtrain_only)
    assert result["pairs"] == 200 and result["seeds"] == [0] and result["over"] == ["fgsm", "noise"]
    assert result["difference"] == pytest.approx((standard_only - advtrain_only) / 200)
    assert result["p_value"] == pytest.approx(binomtest(standard_only, standard_only + advtrain_only, 0.5).pvalue)
    assert result["p_value"] < 0.05 and result["high"] < 0  # advtrain is much more robust
    assert result["low"] <= result["difference"] <= result["high"]

    shown = arena("compare", "standard", "advtrain")
    assert shown.exit_code == 0 and "p = " in shown.stdout and "discordant pairs" in shown.stdout
    attacks = arena.json("compare", "fgsm", "noise", "--json")
    assert attacks["kind"] == "attacks" and attacks["over"] == ["advtrain", "standard"] and attacks["pairs"] == 600
    assert attacks["seeds"] == [0, 1] and attacks["difference"] > 0 and attacks["p_value"] < 0.05
