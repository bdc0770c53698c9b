"""Result rows and per-sample outcomes built by hand, for tests of the leaderboard's maths."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

POINTS = 40


def result_row(run_id: int, attack: str, defense: str, eps: float, clean: np.ndarray, robust: np.ndarray,
               dataset: str = "digits", norm: str = "linf", **extra: Any) -> dict[str, Any]:
    """A stored-result row (as ``arena.results.robustness_row`` makes) whose metrics follow from
    the per-sample outcomes."""
    robust = robust & clean
    correct = int(clean.sum())
    row = {
        "run_id": run_id,
        "key": hashlib.sha256(f"run {run_id}".encode()).hexdigest(),
        "status": "ok",
        "seed": 0,
        "attack": attack,
        "defense": defense,
        "attack_params": {},
        "defense_params": {},
        "provenance": {},
        "dataset": dataset,
        "norm": norm,
        "eps": eps,
        "targeted": False,
        "defense_key": hashlib.sha256(f"{dataset}/{defense}".encode()).hexdigest(),
        "defense_label": defense,
        "attack_label": attack,
        "attack_access": "white-box",
        "n": len(clean),
        "clean_accuracy": correct / len(clean),
        "robust_accuracy": float(robust.mean()),
        "attack_success_rate": (correct - int(robust.sum())) / correct,
        "mean_linf": eps if norm == "linf" else None,
        "mean_l2": eps if norm == "l2" else None,
        "queries": None,
        "flags": [],
        "artifacts": {},
    }
    row.update(extra)
    return row


def sweep(eps_values=(0.1, 0.2), dataset: str = "digits", norm: str = "linf", first_id: int = 1):
    """``fgsm`` and ``noise`` against ``advtrain`` and ``standard`` at each eps.

    FGSM fools the points at or beyond a threshold that falls as eps grows; noise fools every
    seventh point (two in seven from eps 0.2), so the per-sample worst case is below either
    attack's robust accuracy.
    """
    index = np.arange(POINTS)
    clean = {"advtrain": index < 38, "standard": index < 39}
    threshold = {"advtrain": 32, "standard": 14}
    rows, outcomes = [], {}
    run_id = first_id
    for eps in eps_values:
        shift = round(40 * eps)  # a larger budget fools more points
        for defense in ("advtrain", "standard"):
            fgsm = index < threshold[defense] - shift
            noise = (index % 7 != 3) & ((index % 7 != 5) | (eps < 0.2))
            for attack, robust in (("fgsm", fgsm), ("noise", noise)):
                row = result_row(run_id, attack, defense, eps, clean[defense], robust, dataset, norm)
                rows.append(row)
                outcomes[run_id] = (index, robust & clean[defense])
                run_id += 1
    return rows, outcomes
