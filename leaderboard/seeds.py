"""Several training seeds of one defense: which runs are replicates, their spread, and the
two-stage bootstrap (seeds, then test points within each seed) the intervals use.

A figure measured with one seed says how one training run came out on one machine: floating-point
kernels differ between CPUs, so training does too. A defense trained with several seeds is one
leaderboard entry whose figures are the mean over its seeds with their sample standard deviation.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from arena.provenance import stable_hash

Row = Mapping[str, Any]


def defense_config(row: Row) -> str:
    """What identifies a defense apart from its seed: plugin, version, hyperparameters and data.

    Runs of one defense configuration trained with different seeds (different ``defense_key``)
    are replicates of one leaderboard entry.
    """
    # A leaderboard asks several times per row: each row object is looked up once (the cache
    # holds the row, so its id cannot be reused while it is cached).
    cached = _BY_ROW.get(id(row))
    if cached is not None and cached[0] is row:
        return cached[1]
    values = tuple(row.get(name) for name in _CONFIG_FIELDS)
    params = row.get("defense_params") or {}
    # Thousands of rows share a few configurations: each is hashed once (``repr`` only finds it
    # again; the hash itself is of the canonical encoding).
    found = _CONFIGS.get((values, repr(params)))
    if found is None:
        label, defense, package, version, dataset, dataset_hash = values
        found = _CONFIGS[(values, repr(params))] = stable_hash({
            "label": label, "defense": defense, "package": package, "version": version, "params": params,
            "dataset": dataset, "dataset_hash": dataset_hash,
        })
        if len(_CONFIGS) > 4096:
            _CONFIGS.clear()
    if len(_BY_ROW) >= 100_000:
        _BY_ROW.clear()
    _BY_ROW[id(row)] = (row, found)
    return found


_CONFIG_FIELDS = ("defense_label", "defense", "defense_package", "defense_version", "dataset", "dataset_hash")
_CONFIGS: dict[tuple[Any, str], str] = {}
_BY_ROW: dict[int, tuple[Row, str]] = {}


def one_model_per_seed(runs: Iterable[Row]) -> list[Row]:
    """The runs of one threat model, keeping for each defense configuration and seed only the
    model with the newest run: two models of the same configuration and seed (trained by
    different Arena versions) are not two seeds.

    A model is its key and its checkpoint (``provenance.checkpoint_sha256``): one key trained
    twice (by two workers that do not share a model cache, say) gives two checkpoints, and the
    results of one are never merged with those of the other into one worst case."""
    runs = list(runs)
    newest: dict[tuple[str, Any], tuple[int, tuple[Any, Any]]] = {}
    for run in runs:
        slot = (defense_config(run), run.get("seed"))
        newest[slot] = max(newest.get(slot, (-1, ("", ""))), (run["run_id"], model_identity(run)), key=lambda m: m[0])
    return [run for run in runs if newest[(defense_config(run), run.get("seed"))][1] == model_identity(run)]


def model_identity(run: Row) -> tuple[Any, Any]:
    """A run's defense model: its key and the SHA-256 of the checkpoint it was evaluated on."""
    provenance = run.get("provenance")
    checkpoint = provenance.get("checkpoint_sha256") if isinstance(provenance, Mapping) else None
    return run.get("defense_key"), checkpoint


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof=1) of the values present; the deviation only
    from two values on."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return None, None
    mean = math.fsum(present) / len(present)
    if len(present) == 1:
        return mean, None
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in present) / (len(present) - 1))


def resample_counts(rng: np.random.Generator, samples: int, rounds: int) -> np.ndarray:
    """How often each test point is drawn in each bootstrap round, shape ``(rounds, samples)``."""
    draws = rng.integers(0, samples, size=(rounds, samples)) + samples * np.arange(rounds)[:, None]
    return np.bincount(draws.ravel(), minlength=rounds * samples).reshape(rounds, samples).astype(float)


def resample_weights(rng: np.random.Generator, seeds: int, samples: int, rounds: int) -> np.ndarray:
    """Two-stage bootstrap weights, shape ``(rounds, seeds, samples)``: each round draws
    ``seeds`` seeds with replacement, then, for each seed drawn, the test points with
    replacement; a cell is how often that (seed, test point) was drawn.

    With one seed this is the plain bootstrap over test points, from the same random draws.
    """
    if seeds == 1:
        return resample_counts(rng, samples, rounds)[:, None, :]
    chosen = rng.integers(0, seeds, size=(rounds, seeds))
    points = resample_counts(rng, samples, rounds * seeds)
    # Round r's draw j lands on seed chosen[r, j]: sum the draws of each (round, seed) cell.
    cell = (np.repeat(np.arange(rounds), seeds) * seeds + chosen.ravel())
    weights = np.zeros((rounds * seeds, samples))
    order = np.argsort(cell, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(cell[order]) != 0])
    weights[cell[order][starts]] = np.add.reduceat(points[order], starts, axis=0)
    return weights.reshape(rounds, seeds, samples)


def seed_index(runs: Sequence[Row]) -> tuple[list[Any], np.ndarray]:
    """The distinct seeds of ``runs`` (sorted) and each run's position among them."""
    seeds = sorted({run.get("seed") for run in runs}, key=lambda s: (s is None, s))
    position = {seed: i for i, seed in enumerate(seeds)}
    return seeds, np.array([position[run.get("seed")] for run in runs], dtype=np.int64)
