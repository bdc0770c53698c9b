"""Several training seeds of one defense: aggregation, the two-stage bootstrap and tied ranks."""

from __future__ import annotations

import hashlib
import statistics

import numpy as np
import pytest

from arena_leaderboard import robustness_views
from arena_leaderboard.ratings import Rating, arena_ratings, tied_rank
from arena_leaderboard.render import render_markdown
from arena_leaderboard.seeds import mean_std, resample_counts, resample_weights

from .synthetic_results import POINTS, result_row, sweep


def seeded_sweep(seeds=(0, 1, 2)):
    """``fgsm`` and ``noise`` against ``advtrain`` and ``standard`` at eps 0.2, once per seed;
    each seed's models fool a few more or fewer points, as retrained models do."""
    index = np.arange(POINTS)
    rows, outcomes = [], {}
    run_id = 1
    for seed in seeds:
        for defense, threshold, clean_points in (("advtrain", 30, 38), ("standard", 12, 39)):
            clean = index < clean_points - seed % 2
            key = hashlib.sha256(f"{defense}/{seed}".encode()).hexdigest()
            fgsm = index < threshold + 2 * seed
            noise = index % 7 != (3 + seed) % 7
            for attack, robust in (("fgsm", fgsm), ("noise", noise)):
                rows.append(result_row(run_id, attack, defense, 0.2, clean, robust, seed=seed, defense_key=key))
                outcomes[run_id] = (index, robust & clean)
                run_id += 1
    return rows, outcomes


def table(views, name):
    (view,) = [v for v in views if v.table == name]
    return view


def test_a_defense_trained_with_several_seeds_is_one_entry_with_mean_and_spread():
    rows, outcomes = seeded_sweep()
    views = robustness_views(rows, outcomes)
    defenses = table(views, "defenses")
    assert [r["defense"] for r in defenses.rows] == ["advtrain", "standard"]
    assert "seeds" in [c.key for c in defenses.columns]
    for entry in defenses.rows:
        mine = [r for r in rows if r["defense"] == entry["defense"]]
        seeds = sorted({r["seed"] for r in mine})
        cleans = [next(r["clean_accuracy"] for r in mine if r["seed"] == s) for s in seeds]
        worst = [np.logical_and.reduce([outcomes[r["run_id"]][1] for r in mine if r["seed"] == s]).mean() for s in seeds]
        assert entry["seeds"] == 3
        assert entry["clean_accuracy"] == pytest.approx(statistics.mean(cleans))
        assert entry["clean_accuracy_std"] == pytest.approx(statistics.stdev(cleans))
        assert entry["worst_case"] == pytest.approx(statistics.mean(worst))
        assert entry["worst_case_std"] == pytest.approx(statistics.stdev(worst))
        assert entry["attacks_faced"] == 2 and entry["worst_case_n"] == POINTS
    matrix = table(views, "matrix")
    advtrain = next(r for r in matrix.rows if r["defense"] == "advtrain")
    fgsm = [r["robust_accuracy"] for r in rows if r["defense"] == "advtrain" and r["attack"] == "fgsm"]
    assert advtrain["attack:fgsm"] == pytest.approx(statistics.mean(fgsm))
    assert advtrain["attack:fgsm:std"] == pytest.approx(statistics.stdev(fgsm))
    assert advtrain["attack:fgsm:seeds"] == 3 and advtrain["seeds"] == "3"
    shown = render_markdown([defenses, matrix])
    mean, std = statistics.mean(fgsm), statistics.stdev(fgsm)
    assert f"{100 * mean:.1f}% ± {100 * std:.1f}%" in shown
    attacks = table(views, "attacks")
    assert all(r["defenses_faced"] == 2 for r in attacks.rows)  # defenses, not runs
    ratings = table(views, "ratings")
    assert [r["player"] for r in ratings.rows if r["side"] == "defense"] == ["advtrain", "standard"]
    assert any("3 seeds" in note for note in ratings.notes)


def test_one_seed_shows_no_spread_and_no_seed_column():
    rows, outcomes = sweep()
    views = robustness_views(rows, outcomes)
    for name in ("defenses", "matrix"):
        for view in [v for v in views if v.table == name]:
            assert "seeds" not in [c.key for c in view.columns]
            assert not any(c.spread for c in view.columns)
    assert all(r["seeds"] == 1 and r["worst_case_std"] is None for r in table(views[:1], "defenses").rows)


def test_the_worst_case_counts_only_seeds_run_with_every_attack():
    rows, outcomes = seeded_sweep()
    dropped = next(r for r in rows if r["seed"] == 2 and r["defense"] == "standard" and r["attack"] == "noise")
    rows.remove(dropped)
    entry = next(r for r in table(robustness_views(rows, outcomes), "defenses").rows if r["defense"] == "standard")
    worst = [np.logical_and.reduce([outcomes[r["run_id"]][1] for r in rows
                                    if r["defense"] == "standard" and r["seed"] == s]).mean() for s in (0, 1)]
    assert entry["seeds"] == 2 and entry["worst_case"] == pytest.approx(statistics.mean(worst))
    matrix = table(robustness_views(rows, outcomes), "matrix")
    standard = next(r for r in matrix.rows if r["defense"] == "standard")
    assert standard["attack:fgsm:seeds"] == 3 and standard["attack:noise:seeds"] == 2 and standard["seeds"] == "2–3"


def test_mean_std_is_the_sample_deviation_from_two_values_on():
    assert mean_std([0.5]) == (0.5, None)
    assert mean_std([]) == (None, None)
    mean, std = mean_std([0.2, 0.4, 0.9])
    assert mean == pytest.approx(0.5) and std == pytest.approx(np.std([0.2, 0.4, 0.9], ddof=1))


def test_two_stage_bootstrap_weights():
    one = resample_weights(np.random.default_rng(3), 1, 50, 20)
    assert np.array_equal(one[:, 0], resample_counts(np.random.default_rng(3), 50, 20))  # the plain bootstrap
    weights = resample_weights(np.random.default_rng(3), 4, 50, 200)
    assert weights.shape == (200, 4, 50)
    assert np.all(weights.sum(axis=(1, 2)) == 4 * 50)  # four seeds drawn, 50 points within each
    per_seed = weights.sum(axis=2) / 50  # how often each seed was drawn
    assert np.all(per_seed == np.round(per_seed)) and (per_seed == 0).any()  # some rounds leave a seed out
    assert per_seed.mean() == pytest.approx(1.0, abs=0.1)


def test_seed_spread_widens_the_rating_intervals():
    """Two seeds that disagree: resampling seeds too gives wider intervals than test points alone."""
    rng = np.random.default_rng(0)
    attack_of, defense_of = np.array([0, 0, 1, 1] * 2), np.array([0, 1, 0, 1] * 2)
    chance = np.r_[[0.2, 0.6, 0.1, 0.4], [0.5, 0.6, 0.3, 0.4]]  # defense 0 much weaker under seed 1
    fooled = rng.random((8, 300)) < chance[:, None]
    seed_of = np.repeat([0, 1], 4)
    args = (["pgd", "fgsm"], ["a", "b"], attack_of, defense_of, fooled, np.ones_like(fooled))
    pooled = {r.player: r for r in arena_ratings(*args).ratings}
    seeded = arena_ratings(*args, seed_of=seed_of)
    assert seeded.seeds == 2
    by_seed = {r.player: r for r in seeded.ratings}
    assert by_seed["a"].rating == pooled["a"].rating  # the estimate itself is the same
    assert by_seed["a"].high - by_seed["a"].low > 1.5 * (pooled["a"].high - pooled["a"].low)
    same = arena_ratings(*args, seed_of=np.zeros(8, dtype=int))
    assert same == arena_ratings(*args)  # one seed: the test-point bootstrap, unchanged


def test_overlapping_intervals_share_a_rank():
    def rating(name, value, low, high):
        return Rating(name, "defense", value, low, high, 0, 0)

    ratings = [rating("a", 1200, 1150, 1260), rating("b", 1150, 1100, 1180), rating("c", 1000, 960, 1120),
               rating("d", 900, 850, 950)]
    # c's interval overlaps b's but lies wholly below a's; d lies below all three.
    assert [tied_rank(r, ratings) for r in ratings] == [1, 1, 2, 4]
    rows, outcomes = sweep()
    for view in [v for v in robustness_views(rows, outcomes) if v.table == "ratings"]:
        for row in view.rows:
            above = sum(other["rating_low"] > row["rating_high"] for other in view.rows)
            assert row["rank"] == 1 + above
