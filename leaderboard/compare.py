"""Paired comparisons at one threat model: two defenses, or two attacks, on the same test points
and seeds.

Two defenses are compared on their per-sample worst case over the attacks both were evaluated
with, seed by seed; two attacks on whether each fooled the same defense model (every defense
and seed both attacked) on the same test point. The test is McNemar's, exact: under the null
hypothesis each discordant pair (one robust, the other not) falls either way with probability
1/2, so the two-sided p-value is a binomial tail. The 95% interval of the difference is the
percentile bootstrap over test points, paired (a point's outcomes under both stay together);
with several seeds each round first resamples the seeds, then the test points within each seed
drawn, as the arena ratings do.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from arena.errors import InvalidInputError

from .outcomes import sample_outcomes
from .robustness import Row, ThreatGroup, latest_runs
from .seeds import defense_config, one_model_per_seed, resample_weights

BOOTSTRAP_ROUNDS = 2000
CONFIDENCE = 0.95
INTERVAL_METHOD = "paired percentile bootstrap over test points"
SEEDED_INTERVAL_METHOD = "paired percentile bootstrap over seeds, then test points within each"
TEST = "exact McNemar: two-sided binomial test on the discordant pairs"


def mcnemar_exact(first_only: int, second_only: int) -> float:
    """Two-sided exact McNemar p-value: ``P(X <= min) + P(X >= max)`` for ``X ~ Binomial(b + c, 1/2)``,
    which is ``min(1, 2 P(X <= min(b, c)))``; 1 without discordant pairs. Exact integer arithmetic."""
    total = first_only + second_only
    if total == 0:
        return 1.0
    low = min(first_only, second_only)
    tail = sum(math.comb(total, k) for k in range(low + 1))
    return min(1.0, 2 * tail / 2**total)


@dataclass
class Comparison:
    """The outcome of ``arena compare``: A against B at one threat model."""

    kind: str  # "defenses" | "attacks"
    first: str
    second: str
    group: dict[str, Any]
    measure: str
    #: The attacks (comparing defenses) or defenses (comparing attacks) the outcomes are over.
    over: list[str]
    seeds: list[Any]
    points: int
    pairs: int
    first_value: float
    second_value: float
    difference: float
    low: float
    high: float
    first_only: int
    second_only: int
    p_value: float
    test: str = TEST
    interval_method: str = INTERVAL_METHOD
    confidence: float = CONFIDENCE
    rounds: int = BOOTSTRAP_ROUNDS
    runs: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_difference(
    first: np.ndarray,
    second: np.ndarray,
    evaluated: np.ndarray,
    seed_of: np.ndarray,
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = 0,
) -> dict[str, Any]:
    """Paired statistics of two boolean ``(units, samples)`` outcome arrays over the cells
    ``evaluated`` marks; ``seed_of[u]`` numbers the training seed of unit ``u`` (0, 1, ...)."""
    first, second, evaluated = (np.asarray(a, dtype=bool) for a in (first, second, evaluated))
    seed_of = np.asarray(seed_of, dtype=np.int64)
    pairs = int(evaluated.sum())
    if not pairs:
        raise InvalidInputError("no test point has outcomes under both: nothing to compare")
    first_only = int((first & ~second & evaluated).sum())
    second_only = int((second & ~first & evaluated).sum())
    seeds = int(seed_of.max()) + 1
    weights = resample_weights(np.random.default_rng(seed), seeds, evaluated.shape[1], rounds)
    gap = np.where(evaluated, first.astype(float) - second.astype(float), 0.0)
    moved = np.zeros(rounds)
    counted = np.zeros(rounds)
    for replicate in range(seeds):
        units = seed_of == replicate
        moved += weights[:, replicate] @ gap[units].sum(0)
        counted += weights[:, replicate] @ evaluated[units].sum(0).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        replicates = moved / counted
    replicates = replicates[counted > 0]
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(replicates, [tail, 100 - tail]) if len(replicates) else (math.nan, math.nan)
    return {
        "interval_method": INTERVAL_METHOD if seeds == 1 else SEEDED_INTERVAL_METHOD,
        "rounds": rounds,
        "pairs": pairs,
        "first_value": float((first & evaluated).sum() / pairs),
        "second_value": float((second & evaluated).sum() / pairs),
        "difference": (first_only - second_only) / pairs,
        "low": float(low),
        "high": float(high),
        "first_only": first_only,
        "second_only": second_only,
        "p_value": mcnemar_exact(first_only, second_only),
    }


def compare(rows: Iterable[Row], outcomes: Mapping[int, Any], first: str, second: str) -> Comparison:
    """Compare two defenses or two attacks (by their leaderboard labels) on the ranked results of
    ``rows``, which must hold one threat model where both appear."""
    if first == second:
        raise InvalidInputError(f"compare two different defenses or attacks, not {first!r} with itself")
    latest = latest_runs(rows)  # flagged results too: their verified examples count, as on the leaderboard
    defenses = {row["defense_label"] for row in latest}
    attacks = {row["attack_label"] for row in latest}
    if first in defenses and second in defenses:
        kind = "defenses"
    elif first in attacks and second in attacks:
        kind = "attacks"
    else:
        missing = [name for name in (first, second) if name not in defenses | attacks]
        if missing:
            raise InvalidInputError(f"no ranked result of a defense or attack named {missing[0]!r} at the chosen "
                                    "threat model: see `arena leaderboard` for the names")
        raise InvalidInputError(f"{first!r} and {second!r} are not both defenses or both attacks: compare two "
                                "defenses or two attacks")
    label = "defense_label" if kind == "defenses" else "attack_label"
    groups: dict[tuple, list[Row]] = {}
    for row in latest:
        groups.setdefault(ThreatGroup.key(row), []).append(row)
    both = [key for key, runs in groups.items() if {first, second} <= {run[label] for run in runs}]
    if not both:
        raise InvalidInputError(f"{first!r} and {second!r} were never evaluated at the same threat model")
    if len(both) > 1:
        shown = "; ".join(str(ThreatGroup(*key)) for key in sorted(both))
        raise InvalidInputError(f"{first!r} and {second!r} meet at several threat models ({shown}): choose one "
                                "with --dataset, --norm and --eps")
    group = ThreatGroup(*both[0])
    runs = one_model_per_seed(groups[both[0]])
    if kind == "defenses":
        return _compare_defenses(group, runs, outcomes, first, second)
    return _compare_attacks(group, runs, outcomes, first, second)


def _model(runs: list[Row], name: str) -> str:
    configs = {defense_config(run) for run in runs if run["defense_label"] == name}
    if len(configs) > 1:
        raise InvalidInputError(f"several models are labelled {name!r} here (other versions or data): "
                                "compare them with `arena results`")
    return next(iter(configs))


def _compare_defenses(group: ThreatGroup, runs: list[Row], outcomes: Mapping[int, Any], first: str,
                      second: str) -> Comparison:
    configs = {name: _model(runs, name) for name in (first, second)}
    of: dict[tuple[str, Any], dict[str, Row]] = {}  # (defense, seed) -> {attack: run}
    for run in runs:
        for name, config in configs.items():
            if defense_config(run) == config:
                of.setdefault((name, run["seed"]), {})[run["attack_label"]] = run
    seeds = sorted({seed for name, seed in of if name == first} & {seed for name, seed in of if name == second})
    if not seeds:
        raise InvalidInputError(f"{first!r} and {second!r} share no seed: run both with the same --seed or --seeds")
    common = set.intersection(*(set(of[(name, seed)]) for name in (first, second) for seed in seeds))
    if not common:
        raise InvalidInputError(f"no attack was run against both {first!r} and {second!r} under every shared seed")
    attacks = sorted(common)
    chosen = [of[(name, seed)][attack] for seed in seeds for name in (first, second) for attack in attacks]
    table = sample_outcomes(chosen, outcomes)
    per = len(attacks)
    robust_first, robust_second, evaluated = [], [], []
    for position in range(len(seeds)):
        start = 2 * per * position
        mine, theirs = range(start, start + per), range(start + per, start + 2 * per)
        seen = table.evaluated[list(mine) + list(theirs)].all(0)
        robust_first.append(table.robust[list(mine)].all(0) & seen)
        robust_second.append(table.robust[list(theirs)].all(0) & seen)
        evaluated.append(seen)
    stats = paired_difference(np.array(robust_first), np.array(robust_second), np.array(evaluated),
                              np.arange(len(seeds)))
    return Comparison("defenses", first, second, group.as_dict(), "worst-case robust accuracy", attacks, seeds,
                      int(np.array(evaluated).any(0).sum()), runs=[run["run_id"] for run in chosen], **stats)


def _compare_attacks(group: ThreatGroup, runs: list[Row], outcomes: Mapping[int, Any], first: str,
                     second: str) -> Comparison:
    of: dict[tuple[str, Any], dict[str, Row]] = {}  # (defense configuration, seed) -> {attack: run}
    for run in runs:
        if run["attack_label"] in (first, second):
            of.setdefault((defense_config(run), run["seed"]), {})[run["attack_label"]] = run
    units = sorted((slot for slot, by in of.items() if len(by) == 2), key=lambda s: (s[1], s[0]))
    if not units:
        raise InvalidInputError(f"{first!r} and {second!r} never attacked the same defense model (same seed)")
    chosen = [of[unit][name] for unit in units for name in (first, second)]
    table = sample_outcomes(chosen, outcomes)
    seen = table.evaluated[0::2] & table.evaluated[1::2]
    fooled_first = ~table.robust[0::2] & seen
    fooled_second = ~table.robust[1::2] & seen
    seeds = sorted({seed for _, seed in units})
    seed_of = np.array([seeds.index(seed) for _, seed in units])
    stats = paired_difference(fooled_first, fooled_second, seen, seed_of)
    names = sorted({of[unit][first]["defense_label"] for unit in units})
    return Comparison("attacks", first, second, group.as_dict(), "fooled rate (1 − robust accuracy)", names, seeds,
                      int(seen.any(0).sum()), runs=[run["run_id"] for run in chosen], **stats)
