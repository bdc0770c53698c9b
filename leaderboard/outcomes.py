"""Per-sample outcomes of one threat model as arrays: a run per row, a test point per column."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class SampleOutcomes:
    """Which test points each run evaluated, and which of them stayed correctly classified.

    Runs may have evaluated different test points (another ``--n``); the columns are the union
    of their test-point indices, and ``evaluated`` says which cells hold an outcome.
    """

    samples: np.ndarray  # sorted test-point indices
    evaluated: np.ndarray  # bool (runs, samples)
    robust: np.ndarray  # bool (runs, samples): classified correctly after the attack

    @property
    def fooled(self) -> np.ndarray:
        return self.evaluated & ~self.robust

    def worst_case(self, rows: Sequence[int]) -> tuple[float | None, int]:
        """Per-sample worst case over the given runs: (robust fraction, points all of them evaluated)."""
        if not len(rows):
            return None, 0
        common = self.evaluated[rows].all(axis=0)
        count = int(common.sum())
        if not count:
            return None, 0
        return int((self.robust[rows].all(axis=0) & common).sum()) / count, count


def sample_outcomes(
    runs: Sequence[Mapping[str, Any]], outcomes: Mapping[int, tuple[np.ndarray, np.ndarray]]
) -> SampleOutcomes:
    """Arrays for ``runs`` from ``{run_id: (test-point indices, robust)}`` (``Store.sample_outcomes``)."""
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool))
    pairs = [outcomes.get(run["run_id"], empty) for run in runs]
    if not pairs:
        return SampleOutcomes(np.zeros(0, dtype=np.int64), np.zeros((0, 0), bool), np.zeros((0, 0), bool))
    first = pairs[0][0]
    if all(len(index) == len(first) and np.array_equal(index, first) for index, _ in pairs):
        # The common case: every run evaluated the same points.
        robust_grid = np.stack([np.asarray(robust, dtype=bool) for _, robust in pairs])
        return SampleOutcomes(np.asarray(first), np.ones_like(robust_grid), robust_grid)
    samples = np.unique(np.concatenate([index for index, _ in pairs]))
    evaluated_grid = np.zeros((len(runs), len(samples)), dtype=bool)
    robust_grid = np.zeros((len(runs), len(samples)), dtype=bool)
    for row, (index, robust) in enumerate(pairs):
        columns = np.searchsorted(samples, index)
        evaluated_grid[row, columns] = True
        robust_grid[row, columns] = robust
    return SampleOutcomes(samples, evaluated_grid, robust_grid)
