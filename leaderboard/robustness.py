"""The robustness track: defenses ranked by worst-case robust accuracy, attacks by success rate.

Entries are compared only within one threat model (dataset, norm, eps, targeted). A defense's
worst-case robust accuracy is decided per sample, as AutoAttack reports it: a sample counts as
robust only if no attack fooled it, over the samples every attack evaluated. Where a pairing was
evaluated both adaptively (BPDA, EOT) and plainly, the adaptive result is the one ranked.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from arena.integrity import is_suspect
from arena.presets import AUTOATTACK, Preset

from .outcomes import SampleOutcomes, sample_outcomes
from .seeds import defense_config, mean_std, one_model_per_seed

Row = Mapping[str, Any]


@dataclass(frozen=True, order=True)
class ThreatGroup:
    dataset: str
    norm: str
    eps: float
    targeted: bool

    @staticmethod
    def key(row: Row) -> tuple[str, str, float, bool]:
        """What identifies a row's threat model (cheaper to hash than the dataclass)."""
        return row["dataset"], row["norm"], float(row["eps"]), bool(row["targeted"])

    @classmethod
    def of(cls, row: Row) -> "ThreatGroup":
        return cls(*cls.key(row))

    def __str__(self) -> str:
        mode = "targeted" if self.targeted else "untargeted"
        return f"{self.dataset} · {self.norm} eps={self.eps:g} · {mode}"

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "norm": self.norm, "eps": self.eps, "targeted": self.targeted}


@dataclass
class DefenseEntry:
    rank: int
    defense: str
    clean_accuracy: float | None
    worst_case: float | None
    worst_case_n: int
    robust_by_attack: dict[str, float | None]
    flags: list[str] = field(default_factory=list)
    suspect: bool = False
    #: The defense configuration (:func:`.seeds.defense_config`): every seed of it.
    key: str = ""
    #: Seeds behind the clean and worst-case figures, and their sample standard deviations.
    seeds: int = 1
    clean_accuracy_std: float | None = None
    worst_case_std: float | None = None
    #: Per attack: the standard deviation over seeds, and how many seeds.
    robust_by_attack_std: dict[str, float | None] = field(default_factory=dict)
    robust_by_attack_seeds: dict[str, int] = field(default_factory=dict)
    #: The package and version that supplied the defense (``arena-bench`` for Arena's own).
    package: str = ""
    version: str = ""
    #: The per-sample worst case over the runs of AutoAttack's standard version (``-a
    #: autoattack``), where every one of its attacks was run: mean over the seeds that have all
    #: four, their spread and count, and the points all four evaluated.
    autoattack: float | None = None
    autoattack_std: float | None = None
    autoattack_seeds: int = 0
    autoattack_n: int = 0

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
    suspect: bool = False
    #: The package and version that supplied the attack (of its newest run).
    package: str = ""
    version: str = ""


@dataclass
class RobustnessBoard:
    """One threat model: the runs compared, their per-sample outcomes, and both rankings."""

    group: ThreatGroup
    attacks: list[str]
    defenses: list[DefenseEntry]
    attack_ranking: list[AttackEntry]
    runs: list[Row] = field(default_factory=list)
    outcomes: SampleOutcomes | None = None


def _is_adaptive(row: Row) -> bool:
    return (row.get("evaluation") or {}).get("mode") == "adaptive"


def latest_runs(rows: Iterable[Row]) -> list[Row]:
    """The newest completed run for each threat model, defense model and attack configuration;
    an adaptive evaluation (BPDA, EOT) is preferred to a plain one of the same pairing, which
    overstates robustness."""
    latest: dict[tuple[Any, ...], Row] = {}
    for row in sorted(rows, key=lambda r: (_is_adaptive(r), r["run_id"])):
        if row["status"] == "ok":
            latest[(ThreatGroup.key(row), row["defense_key"], row["attack_label"])] = row
    return sorted(latest.values(), key=lambda r: r["run_id"])


def flag_codes(row: Row) -> list[str]:
    return [f["code"] if isinstance(f, dict) else str(f) for f in row.get("flags") or []]


def robustness_boards(rows: Iterable[Row], outcomes: Mapping[int, Mapping[int, bool]]) -> list[RobustnessBoard]:
    """One board per threat model, from flat result rows and per-sample robust outcomes."""
    groups: dict[tuple[str, str, float, bool], list[Row]] = {}
    for row in latest_runs(rows):
        groups.setdefault(ThreatGroup.key(row), []).append(row)
    return [_board(ThreatGroup(*key), groups[key], outcomes) for key in sorted(groups)]


def _board(group: ThreatGroup, runs: list[Row], outcomes: Mapping[int, Mapping[int, bool]]) -> RobustnessBoard:
    runs = one_model_per_seed(runs)
    samples = sample_outcomes(runs, outcomes)
    rows_of: dict[str, dict[Any, list[int]]] = {}
    for position, run in enumerate(runs):
        rows_of.setdefault(defense_config(run), {}).setdefault(run.get("seed"), []).append(position)
    names = _defense_names(runs)

    defenses = []
    for key, by_seed in rows_of.items():
        mine = [runs[i] for rows in by_seed.values() for i in rows]
        defenses.append(_defense_entry(key, names[key], by_seed, runs, samples))
        defenses[-1].flags = sorted({code for r in mine for code in flag_codes(r)})
        defenses[-1].suspect = any(is_suspect(r.get("flags")) for r in mine)
        widest = max(mine, key=lambda r: r["n"])
        defenses[-1].package = widest.get("defense_package") or ""
        defenses[-1].version = widest.get("defense_version") or ""
    defenses.sort(key=lambda e: (-(e.worst_case if e.worst_case is not None else -1), -(e.clean_accuracy or 0), e.defense))
    for rank, entry in enumerate(defenses, 1):
        entry.rank = rank

    attack_labels = sorted({run["attack_label"] for run in runs})
    attacks = [_attack_entry(label, [r for r in runs if r["attack_label"] == label], group.norm) for label in attack_labels]
    attacks.sort(key=lambda e: (-(e.success_rate if e.success_rate is not None else -1), e.attack))
    for rank, entry in enumerate(attacks, 1):
        entry.rank = rank
    return RobustnessBoard(group, attack_labels, defenses, attacks, runs, samples)


def _defense_entry(key: str, name: str, by_seed: Mapping[Any, list[int]], runs: list[Row],
                   samples: SampleOutcomes) -> DefenseEntry:
    """One defense configuration over its seeds: per seed the clean accuracy of its widest
    evaluation and the per-sample worst case over its attacks; their mean and spread."""
    attacks = {runs[i]["attack_label"] for rows in by_seed.values() for i in rows}
    # The worst case compares like with like: only seeds evaluated with every attack count.
    complete = {seed: rows for seed, rows in by_seed.items() if {runs[i]["attack_label"] for i in rows} == attacks}
    used = complete or by_seed
    cleans, worst, points = [], [], []
    for rows in used.values():
        cleans.append(max((runs[i] for i in rows), key=lambda r: r["n"])["clean_accuracy"])
        if complete:
            score, common = samples.worst_case(rows)
            worst.append(score)
            points.append(common)
    clean, clean_std = mean_std(cleans)
    worst_case, worst_case_std = mean_std(worst)
    robust: dict[str, list[float | None]] = {}
    for rows in by_seed.values():
        for i in rows:
            robust.setdefault(runs[i]["attack_label"], []).append(runs[i]["robust_accuracy"])
    by_attack = {label: mean_std(values) for label, values in robust.items()}
    protocol, protocol_points = [], []
    for rows in by_seed.values():
        score, common = _preset_worst_case(AUTOATTACK, rows, runs, samples)
        if score is not None:
            protocol.append(score)
            protocol_points.append(common)
    autoattack, autoattack_std = mean_std(protocol)
    return DefenseEntry(
        rank=0,
        defense=name,
        clean_accuracy=clean,
        worst_case=worst_case,
        worst_case_n=min(points) if points else 0,
        robust_by_attack={label: mean for label, (mean, _) in by_attack.items()},
        key=key,
        seeds=len(used),
        clean_accuracy_std=clean_std,
        worst_case_std=worst_case_std,
        robust_by_attack_std={label: std for label, (_, std) in by_attack.items()},
        robust_by_attack_seeds={label: len(values) for label, values in robust.items()},
        autoattack=autoattack,
        autoattack_std=autoattack_std,
        autoattack_seeds=len(protocol),
        autoattack_n=min(protocol_points) if protocol_points else 0,
    )


def _preset_worst_case(preset: Preset, rows: list[int], runs: list[Row],
                       samples: SampleOutcomes) -> tuple[float | None, int]:
    """The per-sample worst case over one run of each of the preset's attack configurations
    among ``rows`` (the adaptive evaluation, then the newest, where several match), or
    ``(None, 0)`` unless all were run."""
    chosen = []
    for member in preset.members:
        matching = [i for i in rows if member.matches(runs[i])]
        if not matching:
            return None, 0
        chosen.append(max(matching, key=lambda i: (_is_adaptive(runs[i]), runs[i]["run_id"])))
    return samples.worst_case(chosen)


def _defense_names(runs: list[Row]) -> dict[str, str]:
    """Each defense configuration's label, with a key's prefix where two configurations share a
    label (the same defense of another version or trained on other data): the model's key where
    the configuration has one model, else the configuration's."""
    labels: dict[str, str] = {}
    models: dict[str, set[str]] = {}
    for run in runs:
        config = defense_config(run)
        labels[config] = run["defense_label"]
        models.setdefault(config, set()).add(run["defense_key"])
    repeated = Counter(labels.values())

    def prefix(config: str) -> str:
        keys = models[config]
        return (next(iter(keys)) if len(keys) == 1 else config)[:6]

    return {key: label if repeated[label] == 1 else f"{label} [{prefix(key)}]" for key, label in labels.items()}


def _attack_entry(label: str, runs: list[Row], norm: str) -> AttackEntry:
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
        defenses_faced=len({defense_config(row) for row in runs}),
        mean_perturbation=statistics.fmean(sizes) if sizes else None,
        queries=statistics.fmean(queries) if queries else None,
        flags=sorted({code for r in runs for code in flag_codes(r)}),
        suspect=any(is_suspect(r.get("flags")) for r in runs),
        package=runs[-1].get("attack_package") or "",
        version=runs[-1].get("attack_version") or "",
    )
