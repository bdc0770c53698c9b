"""The robustness track: defenses ranked by worst-case robust accuracy, attacks by success rate.

Entries are compared only within one threat model (dataset, norm, eps, targeted). A defense's
worst-case robust accuracy is decided per sample, as AutoAttack reports it: a sample counts as
robust only if no attack fooled it, over the samples every attack evaluated. Where a pairing was
evaluated both adaptively (BPDA, EOT) and plainly, the adaptive result is the one ranked.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping


@dataclass(frozen=True, order=True)
class ThreatGroup:
    dataset: str
    norm: str
    eps: float
    targeted: bool

    def __str__(self) -> str:
        mode = "targeted" if self.targeted else "untargeted"
        return f"{self.dataset} · {self.norm} eps={self.eps:g} · {mode}"


@dataclass
class DefenseEntry:
    rank: int
    defense: str
    clean_accuracy: float | None
    worst_case: float | None
    worst_case_n: int
    robust_by_attack: dict[str, float | None]
    flags: list[str] = field(default_factory=list)

    @property
    def attacks_faced(self) -> int:
        return len(self.robust_by_attack)


@dataclass
class AttackEntry:
    rank: int
    attack: str
    access: str
    success_rate: float | None
    mean_robust_accuracy: float | None
    defenses_faced: int
    mean_perturbation: float | None
    queries: float | None
    flags: list[str] = field(default_factory=list)


@dataclass
class RobustnessBoard:
    group: ThreatGroup
    attacks: list[str]
    defenses: list[DefenseEntry]
    attack_ranking: list[AttackEntry]


def _is_adaptive(row: Mapping[str, Any]) -> bool:
    return (row.get("evaluation") or {}).get("mode") == "adaptive"


def _latest(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], Mapping[str, Any]]:
    """The newest completed run for each (defense model, attack configuration); an adaptive
    evaluation (BPDA, EOT) is preferred to a plain one of the same pairing, which overstates
    robustness."""
    latest: dict[tuple[str, str], Mapping[str, Any]] = {}
    for row in sorted(rows, key=lambda r: (_is_adaptive(r), r["run_id"])):
        if row["status"] == "ok":
            latest[(row["defense_key"], row["attack_label"])] = row
    return latest


def _flag_codes(row: Mapping[str, Any]) -> list[str]:
    return [f["code"] if isinstance(f, dict) else str(f) for f in row.get("flags") or []]


def worst_case(
    runs: list[Mapping[str, Any]], outcomes: Mapping[int, Mapping[int, bool]]
) -> tuple[float | None, int]:
    """Per-sample worst case over runs: (robust fraction, number of samples every run evaluated)."""
    if not runs:
        return None, 0
    common = set.intersection(*(set(outcomes.get(r["run_id"], {})) for r in runs))
    if not common:
        return None, 0
    robust = sum(all(outcomes[r["run_id"]][i] for r in runs) for i in common)
    return robust / len(common), len(common)


def robustness_boards(
    rows: Iterable[Mapping[str, Any]], outcomes: Mapping[int, Mapping[int, bool]]
) -> list[RobustnessBoard]:
    """One board per threat model, from flat result rows and per-sample robust outcomes."""
    groups: dict[ThreatGroup, list[Mapping[str, Any]]] = {}
    for row in rows:
        group = ThreatGroup(row["dataset"], row["norm"], float(row["eps"]), bool(row["targeted"]))
        groups.setdefault(group, []).append(row)

    boards = []
    for group in sorted(groups):
        latest = _latest(groups[group])
        attack_labels = sorted({attack for _, attack in latest})
        by_defense: dict[str, list[Mapping[str, Any]]] = {}
        for (defense_key, _), row in latest.items():
            by_defense.setdefault(defense_key, []).append(row)

        defenses = []
        for runs in by_defense.values():
            score, common = worst_case(runs, outcomes)
            widest = max(runs, key=lambda r: r["n"])
            defenses.append(
                DefenseEntry(
                    rank=0,
                    defense=runs[0]["defense_label"],
                    clean_accuracy=widest["clean_accuracy"],
                    worst_case=score,
                    worst_case_n=common,
                    robust_by_attack={r["attack_label"]: r["robust_accuracy"] for r in runs},
                    flags=sorted({code for r in runs for code in _flag_codes(r)}),
                )
            )
        defenses.sort(key=lambda e: (-(e.worst_case if e.worst_case is not None else -1), -(e.clean_accuracy or 0), e.defense))
        for rank, entry in enumerate(defenses, 1):
            entry.rank = rank

        attacks = []
        for label in attack_labels:
            runs = [row for (_, attack), row in latest.items() if attack == label]
            attacks.append(_attack_entry(label, runs, outcomes, group.norm))
        attacks.sort(key=lambda e: (-(e.success_rate if e.success_rate is not None else -1), e.attack))
        for rank, entry in enumerate(attacks, 1):
            entry.rank = rank
        boards.append(RobustnessBoard(group, attack_labels, defenses, attacks))
    return boards


def _attack_entry(
    label: str, runs: list[Mapping[str, Any]], outcomes: Mapping[int, Mapping[int, bool]], norm: str
) -> AttackEntry:
    """Success rate pooled over every defense's clean-correct samples."""
    successes = attacked = 0
    for row in runs:
        rate, clean, n = row["attack_success_rate"], row["clean_accuracy"], row["n"]
        if rate is None or clean is None:
            continue
        correct = round(clean * n)
        attacked += correct
        successes += round(rate * correct)
    size_key = "mean_linf" if norm == "linf" else "mean_l2"
    sizes = [row[size_key] for row in runs if row[size_key] is not None]
    queries = [row["queries"] for row in runs if row.get("queries") is not None]
    robust = [row["robust_accuracy"] for row in runs if row["robust_accuracy"] is not None]
    return AttackEntry(
        rank=0,
        attack=label,
        access=runs[0]["attack_access"],
        success_rate=successes / attacked if attacked else None,
        mean_robust_accuracy=statistics.fmean(robust) if robust else None,
        defenses_faced=len(runs),
        mean_perturbation=statistics.fmean(sizes) if sizes else None,
        queries=statistics.fmean(queries) if queries else None,
        flags=sorted({code for r in runs for code in _flag_codes(r)}),
    )
