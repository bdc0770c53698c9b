"""Arena ratings: a Bradley–Terry model that puts attacks and defenses on one Elo-like scale.

Every (attack, defense, test point) outcome at one threat model is a match. The attack wins it
when the defense misclassifies the point after the attack; as in robust accuracy, a point the
defense gets wrong before any attack is a win for every attack. Bradley and Terry (1952) model
the chance that player ``i`` beats player ``j`` as ``sigmoid(beta_i - beta_j)``; as in the
chatbot-arena ratings (Chiang et al. 2024) the strengths are reported on the Elo scale,
``rating = 1000 + 400 * beta / ln 10``, so a 400-point gap means 10:1 odds.

The fit is the maximum a posteriori estimate under a weak Gaussian prior (sd 1000 rating points)
centred on the mean player: without it a player that wins or loses every match (an unbounded
attack, an untouched defense) would have an infinite rating. With a few hundred matches per
pair the prior moves ratings by far less than their confidence interval.

The 95% intervals are percentile bootstrap intervals (Efron and Tibshirani 1993) over test
points: each round resamples the test points with replacement, keeping all matches of a point
together (a hard point is hard for every defense), and refits the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.special import expit, log_expit
from threadpoolctl import threadpool_limits

BASE_RATING = 1000.0
#: Rating points per unit of log-odds: a 400-point gap is 10:1 odds, as in Elo and chatbot-arena.
POINTS_PER_LOG_ODDS = 400 / math.log(10)
PRIOR_SD_POINTS = 1000.0
BOOTSTRAP_ROUNDS = 100  # as chatbot-arena (FastChat's rating_systems.py)
CONFIDENCE = 0.95
_MAX_NEWTON_STEPS = 100
_TOLERANCE = 1e-10


def bradley_terry(
    wins: np.ndarray,
    games: np.ndarray,
    first: np.ndarray,
    second: np.ndarray,
    players: int,
    prior_sd: float = PRIOR_SD_POINTS / POINTS_PER_LOG_ODDS,
    start: np.ndarray | None = None,
) -> np.ndarray:
    """Strengths (in log-odds) of ``players`` from pairwise results, for several data sets at once.

    Pair ``k`` is a meeting of players ``first[k]`` and ``second[k]``, of which ``first[k]``
    won ``wins[r, k]`` out of ``games[r, k]`` in data set ``r``. Each data set (a bootstrap
    round) is fitted independently by Newton's method with a backtracking line search on the
    log posterior, which is strictly concave, from ``start`` (zero strengths by default); the
    result has shape ``(rounds, players)``.
    """
    wins, games = np.atleast_2d(wins).astype(float), np.atleast_2d(games).astype(float)
    rounds, pairs = wins.shape
    # Sparse products and gathers instead of dense BLAS calls: these matrices are small and
    # mostly zeros, where a threaded BLAS spends more time coordinating threads than computing.
    spread = sparse.csr_matrix(  # pair results to players: +1 to the first player, -1 to the second
        (np.r_[np.ones(pairs), -np.ones(pairs)], (np.r_[first, second], np.r_[np.arange(pairs), np.arange(pairs)])),
        shape=(players, pairs),
    )
    laplacian = _laplacian_assembly(first, second, players)
    precision = 1.0 / prior_sd**2

    def margins(beta: np.ndarray) -> np.ndarray:
        return beta[:, first] - beta[:, second]

    def log_posterior(beta: np.ndarray, margin: np.ndarray) -> np.ndarray:
        return (wins * margin + games * log_expit(-margin)).sum(1) - 0.5 * precision * (beta**2).sum(1)

    beta = np.zeros((rounds, players)) if start is None else np.tile(start, (rounds, 1))
    margin = margins(beta)
    current = log_posterior(beta, margin)
    for _ in range(_MAX_NEWTON_STEPS):
        chance = expit(margin)
        gradient = (spread @ (wins - games * chance).T).T - precision * beta
        curvature = games * chance * (1.0 - chance)
        hessian = (laplacian @ curvature.T).T.reshape(rounds, players, players)
        hessian += precision * np.eye(players)
        step = np.linalg.solve(hessian, gradient[..., None])[..., 0]
        decrement = (gradient * step).sum(1)  # Newton decrement squared: twice the predicted ascent
        if decrement.max() < _TOLERANCE:
            break
        size = np.ones(rounds)
        for _ in range(60):  # halve the step where it does not climb enough (Armijo's rule)
            candidate = beta + size[:, None] * step
            candidate_margin = margins(candidate)
            value = log_posterior(candidate, candidate_margin)
            short = value < current + 1e-4 * size * decrement
            if not short.any():
                break
            size[short] /= 2
        beta, margin, current = candidate, candidate_margin, value
    return beta


def _laplacian_assembly(first: np.ndarray, second: np.ndarray, players: int) -> sparse.csr_matrix:
    """Maps per-pair curvatures to the flattened (players x players) weighted graph Laplacian,
    which is the Hessian of the negative log-likelihood."""
    pairs = len(first)
    columns = np.tile(np.arange(pairs), 4)
    cells = np.r_[first * players + first, second * players + second, first * players + second, second * players + first]
    signs = np.r_[np.ones(2 * pairs), -np.ones(2 * pairs)]
    return sparse.csr_matrix((signs, (cells, columns)), shape=(players * players, pairs))


@dataclass(frozen=True)
class Rating:
    """One player's arena rating with its bootstrap interval, and the matches behind it."""

    player: str
    side: str  # "attack" | "defense"
    rating: float
    low: float
    high: float
    won: int
    played: int

    @property
    def win_rate(self) -> float | None:
        return self.won / self.played if self.played else None


@dataclass(frozen=True)
class ArenaRatings:
    """Every player of one threat model, best first."""

    ratings: list[Rating]
    samples: int
    rounds: int
    #: Groups of players that never met one another; ratings compare only within a group.
    parts: list[list[str]]


def arena_ratings(
    attacks: list[str],
    defenses: list[str],
    attack_of: np.ndarray,
    defense_of: np.ndarray,
    fooled: np.ndarray,
    played: np.ndarray,
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = 0,
) -> ArenaRatings:
    """Ratings of attacks and defenses from per-sample outcomes.

    Row ``k`` of the boolean ``(pairs, samples)`` arrays ``fooled`` and ``played`` holds the
    matches of attack ``attacks[attack_of[k]]`` against defense ``defenses[defense_of[k]]``, one
    column per test point.
    """
    samples = played.shape[1]
    rng = np.random.default_rng(seed)
    counts = np.vstack([np.ones(samples), _resample_counts(rng, samples, rounds)])
    first, second = np.asarray(attack_of), len(attacks) + np.asarray(defense_of)
    names = list(attacks) + list(defenses)
    with threadpool_limits(limits=1, user_api="blas"):  # see bradley_terry: small products
        wins = counts @ fooled.T.astype(float)
        games = counts @ played.T.astype(float)
        estimate = bradley_terry(wins[:1], games[:1], first, second, len(names))
        # Bootstrap fits start from the estimate, a few Newton steps from each of them.
        replicates = bradley_terry(wins[1:], games[1:], first, second, len(names), start=estimate[0])
    points = BASE_RATING + POINTS_PER_LOG_ODDS * np.vstack([estimate, replicates])
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(points[1:], [tail, 100 - tail], axis=0)
    won = np.zeros(len(names), dtype=int)
    total = np.zeros(len(names), dtype=int)
    np.add.at(won, first, wins[0].astype(int))
    np.add.at(won, second, (games[0] - wins[0]).astype(int))
    np.add.at(total, first, games[0].astype(int))
    np.add.at(total, second, games[0].astype(int))
    ratings = [
        Rating(name, "attack" if i < len(attacks) else "defense", float(points[0, i]), float(low[i]), float(high[i]),
               int(won[i]), int(total[i]))
        for i, name in enumerate(names)
    ]
    ratings.sort(key=lambda r: (-r.rating, r.player))
    return ArenaRatings(ratings, samples, rounds, _parts(names, first, second, games[0] > 0))


def _resample_counts(rng: np.random.Generator, samples: int, rounds: int) -> np.ndarray:
    """How often each test point is drawn in each bootstrap round, shape ``(rounds, samples)``."""
    draws = rng.integers(0, samples, size=(rounds, samples)) + samples * np.arange(rounds)[:, None]
    return np.bincount(draws.ravel(), minlength=rounds * samples).reshape(rounds, samples).astype(float)


def _parts(names: list[str], first: np.ndarray, second: np.ndarray, met: np.ndarray) -> list[list[str]]:
    graph = sparse.coo_matrix((np.ones(int(met.sum())), (first[met], second[met])), shape=(len(names),) * 2)
    count, labels = connected_components(graph, directed=False)
    return [sorted(n for n, label in zip(names, labels) if label == part) for part in range(count)]
