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
together (a hard point is hard for every defense), and refits the model. Where the defenses were
trained with several seeds, each round first resamples the seeds and then the test points within
each seed drawn, so that the intervals include the spread between training runs.

As on chatbot-arena's leaderboard, a player's rank is 1 + the number of players whose interval
lies wholly above its own: players whose intervals overlap share a rank.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

from .seeds import resample_weights

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
    # Scatter-adds (bincount) instead of dense BLAS products: these maps are small and mostly
    # zeros, where a threaded BLAS spends more time coordinating threads than computing.
    spread = _Spread(first, second, players, rounds)
    laplacian = _Laplacian(first, second, players, rounds)
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
        gradient = spread(wins - games * chance) - precision * beta
        curvature = games * chance * (1.0 - chance)
        hessian = laplacian(curvature)
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


def expit(x: np.ndarray) -> np.ndarray:
    """The logistic function, without overflow for large arguments (and accurate relative to
    its value for large negative ones)."""
    small = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0, small) / (1.0 + small)


def log_expit(x: np.ndarray) -> np.ndarray:
    """log(expit(x)), stable for large arguments of either sign."""
    return np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))


class _Spread:
    """Per-pair values to per-player sums, for every round at once: pair ``k`` adds its value
    to player ``first[k]`` and subtracts it from player ``second[k]``."""

    def __init__(self, first: np.ndarray, second: np.ndarray, players: int, rounds: int) -> None:
        base = np.arange(rounds)[:, None] * players
        self.first, self.second = (base + first).ravel(), (base + second).ravel()
        self.size, self.shape = rounds * players, (rounds, players)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        flat = values.ravel()
        return (np.bincount(self.first, flat, self.size) - np.bincount(self.second, flat, self.size)).reshape(self.shape)


class _Laplacian:
    """Per-pair curvatures to the weighted graph Laplacian of each round, shape ``(rounds,
    players, players)``: the Hessian of the negative log-likelihood. Pair ``k`` of weight ``c``
    adds ``c`` to both players' diagonal entries and ``-c`` to their two off-diagonal ones."""

    def __init__(self, first: np.ndarray, second: np.ndarray, players: int, rounds: int) -> None:
        self.cells = (np.arange(rounds)[:, None] * players * players + first * players + second).ravel()
        self.shape, self.players = (rounds, players, players), players
        self.loops = first == second  # a player met itself: no edge (never in an arena)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        if self.loops.any():
            values = np.where(self.loops, 0.0, values)
        weights = np.bincount(self.cells, values.ravel(), int(np.prod(self.shape))).reshape(self.shape)
        edges = weights + weights.transpose(0, 2, 1)
        diagonal = np.arange(self.players)
        laplacian = -edges
        laplacian[:, diagonal, diagonal] = edges.sum(2)
        return laplacian


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
    #: 1 + the number of players whose interval lies wholly above this one's (ties share a rank).
    rank: int = 0

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
    #: Training seeds resampled by the bootstrap (1: test points only).
    seeds: int = 1


def arena_ratings(
    attacks: list[str],
    defenses: list[str],
    attack_of: np.ndarray,
    defense_of: np.ndarray,
    fooled: np.ndarray,
    played: np.ndarray,
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = 0,
    seed_of: np.ndarray | None = None,
) -> ArenaRatings:
    """Ratings of attacks and defenses from per-sample outcomes.

    Row ``k`` of the boolean ``(pairs, samples)`` arrays ``fooled`` and ``played`` holds the
    matches of attack ``attacks[attack_of[k]]`` against defense ``defenses[defense_of[k]]``, one
    column per test point. ``seed_of[k]`` numbers the training seed of that row's defense model
    (0, 1, ...; all 0 by default): the bootstrap resamples those seeds, then the test points
    within each. ``seed`` seeds the bootstrap itself.
    """
    samples = played.shape[1]
    rng = np.random.default_rng(seed)
    seed_of = np.zeros(len(played), dtype=np.int64) if seed_of is None else np.asarray(seed_of)
    seeds = int(seed_of.max()) + 1 if len(seed_of) else 1
    weights = resample_weights(rng, seeds, samples, rounds)
    first, second = np.asarray(attack_of), len(attacks) + np.asarray(defense_of)
    names = list(attacks) + list(defenses)
    with blas_threads(1):  # see bradley_terry: small products
        wins = np.zeros((rounds + 1, len(played)))
        games = np.zeros((rounds + 1, len(played)))
        wins[0], games[0] = fooled.sum(1), played.sum(1)
        for replicate in range(seeds):
            rows = seed_of == replicate
            wins[1:, rows] = weights[:, replicate] @ fooled[rows].T.astype(float)
            games[1:, rows] = weights[:, replicate] @ played[rows].T.astype(float)
        estimate = bradley_terry(wins[:1], games[:1], first, second, len(names))
        # Bootstrap fits start from the estimate, a few Newton steps from each of them.
        replicates = bradley_terry(wins[1:], games[1:], first, second, len(names), start=estimate[0])
    points = BASE_RATING + POINTS_PER_LOG_ODDS * np.vstack([estimate, replicates])
    tail = 100 * (1 - CONFIDENCE) / 2
    # A round where a player has no match says nothing of it.
    incidence = np.zeros((len(played), len(names)))
    incidence[np.arange(len(played)), first] = 1.0
    incidence[np.arange(len(played)), second] = 1.0
    drawn = games[1:] @ incidence
    resampled = np.where(drawn > 0, points[1:], np.nan)
    with np.errstate(all="ignore"):
        low, high = np.nanpercentile(resampled, [tail, 100 - tail], axis=0) if rounds else (points[0], points[0])
    won = np.rint(np.bincount(first, wins[0], len(names)) + np.bincount(second, games[0] - wins[0], len(names)))
    total = np.rint(np.bincount(first, games[0], len(names)) + np.bincount(second, games[0], len(names)))
    ratings = [
        Rating(name, "attack" if i < len(attacks) else "defense", float(points[0, i]), float(low[i]), float(high[i]),
               int(won[i]), int(total[i]))
        for i, name in enumerate(names)
    ]
    ratings.sort(key=lambda r: (-r.rating, r.player))
    ratings = [replace(r, rank=tied_rank(r, ratings)) for r in ratings]
    return ArenaRatings(ratings, samples, rounds, _parts(names, first, second, games[0] > 0), seeds)


def blas_threads(limit: int) -> Any:
    """A context that limits BLAS to ``limit`` threads (the process's thread pools are
    inspected once: each inspection reads the loaded libraries)."""
    return _pools().limit(limits=limit, user_api="blas")


@functools.lru_cache(maxsize=1)
def _pools() -> ThreadpoolController:
    return ThreadpoolController()


def tied_rank(rating: Rating, ratings: list[Rating]) -> int:
    """1 + the number of players whose interval lies wholly above this one's, as chatbot-arena
    ranks: players whose intervals overlap share a rank."""
    return 1 + sum(other.low > rating.high for other in ratings if other is not rating)


def _parts(names: list[str], first: np.ndarray, second: np.ndarray, met: np.ndarray) -> list[list[str]]:
    """The groups of players connected by matches (union-find), in order of their first player."""
    parent = list(range(len(names)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in zip(first[met].tolist(), second[met].tolist()):
        parent[root(a)] = root(b)
    groups: dict[int, list[str]] = {}
    for i, name in enumerate(names):
        groups.setdefault(root(i), []).append(name)
    return [sorted(group) for group in groups.values()]
