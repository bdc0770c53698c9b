"""Arena ratings: the Bradley–Terry fit against scikit-learn and against known strengths."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from arena_leaderboard.ratings import BASE_RATING, POINTS_PER_LOG_ODDS, PRIOR_SD_POINTS, arena_ratings, bradley_terry

ATTACKS = {"strong": 1300.0, "good": 1120.0, "fair": 960.0, "weak": 700.0}
DEFENSES = {"fortress": 1250.0, "sturdy": 1010.0, "plain": 880.0, "open": 760.0}


def simulate(samples: int, seed: int):
    """Per-test-point matches of every attack against every defense under the Elo model."""
    rng = np.random.default_rng(seed)
    pairs = list(itertools.product(range(len(ATTACKS)), range(len(DEFENSES))))
    attack_strength, defense_strength = np.array(list(ATTACKS.values())), np.array(list(DEFENSES.values()))
    chance = np.array([1 / (1 + 10 ** ((defense_strength[d] - attack_strength[a]) / 400)) for a, d in pairs])
    fooled = rng.random((len(pairs), samples)) < chance[:, None]
    attack_of, defense_of = (np.array(side) for side in zip(*pairs))
    return attack_of, defense_of, fooled, np.ones_like(fooled)


def fit(samples: int, seed: int = 0):
    attack_of, defense_of, fooled, played = simulate(samples, seed)
    result = arena_ratings(list(ATTACKS), list(DEFENSES), attack_of, defense_of, fooled, played)
    return {rating.player: rating for rating in result.ratings}, result


def test_fit_equals_scikit_learn_logistic_regression():
    """The Newton fit is the L2-penalised logistic regression chatbot-arena runs in scikit-learn."""
    rng = np.random.default_rng(1)
    players, pairs = 7, 15
    first = rng.integers(0, 3, pairs)
    second = rng.integers(3, players, pairs)
    games = rng.integers(5, 300, pairs).astype(float)
    wins = rng.binomial(games.astype(int), rng.uniform(0.05, 0.95, pairs)).astype(float)

    ours = bradley_terry(wins, games, first, second, players)[0]

    design = np.zeros((pairs, players))
    design[np.arange(pairs), first] += 1
    design[np.arange(pairs), second] -= 1
    sd = PRIOR_SD_POINTS / POINTS_PER_LOG_ODDS
    reference = LogisticRegression(C=sd**2, fit_intercept=False, solver="newton-cholesky", tol=1e-12, max_iter=500)
    reference.fit(np.vstack([design, design]), np.r_[np.ones(pairs), np.zeros(pairs)], sample_weight=np.r_[wins, games - wins])
    np.testing.assert_allclose(ours, reference.coef_[0], atol=1e-7)


def test_fit_recovers_known_strengths():
    ratings, _ = fit(samples=2000)
    truth = {**ATTACKS, **DEFENSES}
    assert sorted(truth, key=lambda p: -ratings[p].rating) == sorted(truth, key=lambda p: -truth[p])
    gap_errors = [
        (ratings[a].rating - ratings[b].rating) - (truth[a] - truth[b]) for a, b in itertools.combinations(truth, 2)
    ]
    # Each player plays 8,000 matches: a rating's standard error is about 5 points.
    assert max(abs(e) for e in gap_errors) < 30
    assert np.mean(np.abs(gap_errors)) < 10
    # The scale is anchored on the mean player; the truth is shifted the same way.
    shift = np.mean(list(truth.values())) - BASE_RATING
    covered = sum(ratings[p].low <= truth[p] - shift <= ratings[p].high for p in truth)
    assert covered >= 6


def test_intervals_shrink_as_samples_grow():
    small, _ = fit(samples=100)
    large, _ = fit(samples=1600)
    width = {name: np.mean([r.high - r.low for r in ratings.values()]) for name, ratings in [("small", small), ("large", large)]}
    # Sixteen times the data: intervals about four times narrower (1 / sqrt(n)).
    assert 3.0 < width["small"] / width["large"] < 5.5
    assert all(r.low <= r.rating <= r.high for r in [*small.values(), *large.values()])


def test_wins_and_matches_are_counted_per_player():
    ratings, result = fit(samples=50)
    attack_of, defense_of, fooled, _ = simulate(50, 0)
    strong = list(ATTACKS).index("strong")
    assert ratings["strong"].played == 4 * 50
    assert ratings["strong"].won == int(fooled[attack_of == strong].sum())
    fortress = list(DEFENSES).index("fortress")
    assert ratings["fortress"].won == int((~fooled[defense_of == fortress]).sum())
    assert result.samples == 50 and result.parts == [sorted([*ATTACKS, *DEFENSES])]


def test_a_player_that_wins_every_match_stays_finite():
    """An attack that fools every point would have an infinite maximum-likelihood rating."""
    attack_of, defense_of = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    fooled = np.zeros((4, 100), dtype=bool)
    fooled[:2] = True  # attack 0 always wins
    fooled[2:, :30] = True
    result = arena_ratings(["unbounded", "fgsm"], ["a", "b"], attack_of, defense_of, fooled, np.ones_like(fooled))
    top = result.ratings[0]
    assert top.player == "unbounded" and np.isfinite([top.rating, top.low, top.high]).all()
    assert top.rating - result.ratings[1].rating > 600


def test_players_that_never_met_are_reported_apart():
    attack_of, defense_of = np.array([0, 1]), np.array([0, 1])
    fooled = np.random.default_rng(0).random((2, 80)) < 0.5
    result = arena_ratings(["fgsm", "pgd"], ["standard", "advtrain"], attack_of, defense_of, fooled, np.ones_like(fooled))
    assert sorted(result.parts) == [["advtrain", "pgd"], ["fgsm", "standard"]]


@pytest.mark.parametrize("rounds", [50, 400])
def test_the_same_seed_gives_the_same_intervals(rounds):
    attack_of, defense_of, fooled, played = simulate(60, 3)
    once = arena_ratings(list(ATTACKS), list(DEFENSES), attack_of, defense_of, fooled, played, rounds=rounds)
    again = arena_ratings(list(ATTACKS), list(DEFENSES), attack_of, defense_of, fooled, played, rounds=rounds)
    assert once == again and once.rounds == rounds
