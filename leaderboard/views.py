"""The robustness views: rankings, arena ratings, the attack × defense matrix, robustness curves.

Flagged results (any warning flag) are left out of every ranking and listed in a view of their
own, unless the caller includes them; then they are ranked and marked.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from arena.integrity import is_suspect

from .provenance import robustness_runs_views, with_package
from .ratings import ArenaRatings, arena_ratings
from .render import Column, Figure, View
from .robustness import RobustnessBoard, Row, ThreatGroup, flag_codes, latest_runs, robustness_boards

#: The tracks these views belong to (``--track``).
ROBUSTNESS_TRACKS = ("robustness", "attacks")
#: Examples pictured per threat model on the page: the strongest attack against each top defense.
EXAMPLE_DEFENSES = 6


def robustness_views(
    rows: Iterable[Row],
    outcomes: Mapping[int, Mapping[int, bool]],
    include_flagged: bool = False,
    examples: bool = False,
) -> list[View]:
    """Every robustness view of the given result rows and per-sample outcomes.

    ``examples`` adds, per threat model, a view of stored adversarial examples (pictures, for
    the HTML page).
    """
    latest = latest_runs(rows)
    flagged = [row for row in latest if is_suspect(row.get("flags"))]
    ranked = latest if include_flagged else [row for row in latest if not is_suspect(row.get("flags"))]
    boards = robustness_boards(ranked, outcomes)
    views: list[View] = []
    for board in boards:
        views += [defense_view(board), attack_view(board), ratings_view(board, board_ratings(board)),
                  matrix_view(board)]
        if examples:
            views.append(examples_view(board))
    views += curve_views(boards)
    if flagged and not include_flagged:
        views.append(flagged_view(flagged))
    views += robustness_runs_views(latest)
    return views


def defense_view(board: RobustnessBoard) -> View:
    columns = [
        Column("#", "rank", "int"),
        Column("defense", "defense"),
        Column("clean", "clean_accuracy", "percent"),
        Column("worst case", "worst_case", "percent", heat=True),
        Column("points", "worst_case_n", "int"),
        Column("attacks", "attacks_faced", "int"),
    ]
    columns += _flag_columns(board.defenses)
    rows = [
        {
            "rank": entry.rank,
            "defense": with_package(entry.defense, entry.package, entry.version),
            "clean_accuracy": entry.clean_accuracy,
            "worst_case": entry.worst_case,
            "worst_case_n": entry.worst_case_n,
            "attacks_faced": entry.attacks_faced,
            "flags": entry.flags,
            "suspect": entry.suspect,
        }
        for entry in board.defenses
    ]
    notes = ["Worst case: a test point counts only if no attack fooled it (as AutoAttack reports)."]
    return View(f"Defenses — {board.group}", "defenses", board.group.as_dict(), columns, rows, notes=notes)


def attack_view(board: RobustnessBoard) -> View:
    size = "mean L∞" if board.group.norm == "linf" else "mean L2"
    columns = [
        Column("#", "rank", "int"),
        Column("attack", "attack"),
        Column("access", "access"),
        Column("success", "success_rate", "percent"),
        Column("robust", "mean_robust_accuracy", "percent"),
        Column("defenses", "defenses_faced", "int"),
        Column(size, "mean_perturbation", "number"),
    ]
    if any(entry.queries is not None for entry in board.attack_ranking):
        columns.append(Column("queries", "queries", "number"))
    columns += _flag_columns(board.attack_ranking)
    rows = [
        {
            "rank": e.rank,
            "attack": with_package(e.attack, e.package, e.version),
            "access": e.access,
            "success_rate": e.success_rate,
            "mean_robust_accuracy": e.mean_robust_accuracy,
            "defenses_faced": e.defenses_faced,
            "mean_perturbation": e.mean_perturbation,
            "queries": e.queries,
            "flags": e.flags,
            "suspect": e.suspect,
        }
        for e in board.attack_ranking
    ]
    return View(f"Attacks — {board.group}", "attacks", board.group.as_dict(), columns, rows)


def _flag_columns(entries: list[Any]) -> list[Column]:
    """The flag codes, and a mark on suspect entries, where any entry has them."""
    columns = [Column("flags", "flags")] if any(entry.flags for entry in entries) else []
    return columns + ([Column("", "suspect", "mark")] if any(entry.suspect for entry in entries) else [])


def board_ratings(board: RobustnessBoard) -> ArenaRatings:
    """Bradley–Terry ratings of one threat model's attacks and defenses."""
    defenses = {entry.key: position for position, entry in enumerate(board.defenses)}
    attacks = {entry.attack: position for position, entry in enumerate(board.attack_ranking)}
    attack_of = np.array([attacks[run["attack_label"]] for run in board.runs])
    defense_of = np.array([defenses[run["defense_key"]] for run in board.runs])
    return arena_ratings(list(attacks), [entry.defense for entry in board.defenses], attack_of, defense_of,
                         board.outcomes.fooled, board.outcomes.evaluated)


def ratings_view(board: RobustnessBoard, ratings: ArenaRatings) -> View:
    columns = [
        Column("#", "rank", "int"),
        Column("player", "player"),
        Column("side", "side"),
        Column("rating (95% CI)", "rating", "rating", interval=("rating_low", "rating_high")),
        Column("won", "win_rate", "percent"),
        Column("matches", "matches", "int"),
    ]
    rows = [
        {
            "rank": rank,
            "player": rating.player,
            "side": rating.side,
            "rating": rating.rating,
            "rating_low": rating.low,
            "rating_high": rating.high,
            "win_rate": rating.win_rate,
            "matches": rating.played,
        }
        for rank, rating in enumerate(ratings.ratings, 1)
    ]
    notes = [
        "Bradley–Terry: each (attack, defense, test point) is a match the attack wins if the point "
        "ends misclassified. 400 points = 10:1 odds.",
        f"95% CI: bootstrap over {ratings.samples} test points, {ratings.rounds} rounds.",
    ]
    if len(ratings.parts) > 1:
        groups = " | ".join(", ".join(part) for part in ratings.parts)
        notes.append(f"Players that never met are not comparable across these groups: {groups}.")
    figure = Figure("intervals", "player", ["rating"], x_label="rating")
    return View(f"Arena ratings — {board.group}", "ratings", board.group.as_dict(), columns, rows,
                tracks=ROBUSTNESS_TRACKS, notes=notes, figure=figure)


def matrix_view(board: RobustnessBoard) -> View:
    attacks = [entry.attack for entry in board.attack_ranking]
    keys = [f"attack:{attack}" for attack in attacks]
    columns = [Column("defense \\ attack", "defense")]
    columns += [Column(attack, key, "percent", heat=True) for attack, key in zip(attacks, keys)]
    rows = []
    for entry in board.defenses:
        row: dict[str, Any] = {"defense": entry.defense}
        row.update({key: entry.robust_by_attack.get(attack) for attack, key in zip(attacks, keys)})
        rows.append(row)
    figure = Figure("heatmap", "defense", keys, x_label="attack", y_label="defense")
    return View(f"Robust accuracy, defense × attack — {board.group}", "matrix", board.group.as_dict(), columns,
                rows, tracks=ROBUSTNESS_TRACKS, figure=figure)


def curve_views(boards: list[RobustnessBoard]) -> list[View]:
    """Worst-case robust accuracy against eps for each defense, where a sweep has several eps."""
    sweeps: dict[tuple[str, str, bool], list[RobustnessBoard]] = {}
    for board in boards:
        sweeps.setdefault((board.group.dataset, board.group.norm, board.group.targeted), []).append(board)
    views = []
    for (dataset, norm, targeted), sweep in sorted(sweeps.items()):
        if len(sweep) < 2:
            continue
        views.append(_curve_view(dataset, norm, targeted, sorted(sweep, key=lambda b: b.group.eps)))
    return views


def _curve_view(dataset: str, norm: str, targeted: bool, sweep: list[RobustnessBoard]) -> View:
    keys = [f"eps:{board.group.eps:g}" for board in sweep]
    curves: dict[str, dict[str, Any]] = {}
    widest: dict[str, int] = {}
    for board, key in zip(sweep, keys):
        for entry in board.defenses:
            row = curves.setdefault(entry.key, {"defense": entry.defense})
            row[key] = entry.worst_case
            if entry.worst_case_n >= widest.get(entry.key, -1):  # clean accuracy: the largest evaluation
                widest[entry.key] = entry.worst_case_n
                row["clean_accuracy"] = entry.clean_accuracy
    columns = [Column("defense", "defense"), Column("clean", "clean_accuracy", "percent", heat=True)]
    columns += [Column(f"ε={board.group.eps:g}", key, "percent", heat=True) for board, key in zip(sweep, keys)]
    rows = sorted(curves.values(), key=lambda r: [-(r.get(k) if r.get(k) is not None else -1) for k in reversed(keys)])
    mode = "targeted" if targeted else "untargeted"
    figure = Figure("lines", "defense", ["clean_accuracy", *keys], x=[0.0, *(b.group.eps for b in sweep)],
                    x_label=f"eps ({norm})", y_label="worst-case robust accuracy")
    notes = ["Per-sample worst case over the attacks run at each eps; clean accuracy is eps 0."]
    group = {"dataset": dataset, "norm": norm, "targeted": targeted}
    return View(f"Robustness curves — {dataset} · {norm} · {mode}", "curves", group, columns, rows,
                tracks=("robustness",), notes=notes, figure=figure)


def examples_view(board: RobustnessBoard) -> View:
    """For each top defense, the stored examples of the attack that fooled it most."""
    rows = []
    for entry in board.defenses[:EXAMPLE_DEFENSES]:
        runs = [run for run in board.runs if run["defense_key"] == entry.key and (run.get("artifacts") or {}).get("examples")]
        if not runs:
            continue
        strongest = min(runs, key=lambda r: (r["robust_accuracy"] if r["robust_accuracy"] is not None else 2, r["attack_label"]))
        rows.append({
            "defense": entry.defense,
            "attack": strongest["attack_label"],
            "run": strongest["run_id"],
            "robust_accuracy": strongest["robust_accuracy"],
            "examples": strongest["artifacts"]["examples"],
        })
    columns = [
        Column("defense", "defense"),
        Column("attack", "attack"),
        Column("run", "run", "int"),
        Column("robust acc.", "robust_accuracy", "percent"),
        Column("clean / adversarial / perturbation (amplified)", "examples", "image"),
    ]
    notes = ["Attacked test points kept by each run; the perturbation is scaled to full contrast."]
    return View(f"Adversarial examples — {board.group}", "examples", board.group.as_dict(), columns, rows,
                tracks=ROBUSTNESS_TRACKS, notes=notes)


def flagged_view(flagged: list[Row]) -> View:
    columns = [
        Column("run", "run_id", "int"),
        Column("attack", "attack_label"),
        Column("defense", "defense_label"),
        Column("threat", "threat"),
        Column("robust", "robust_accuracy", "percent"),
        Column("flags", "flags"),
        Column("why", "message"),
    ]
    rows = []
    for row in flagged:
        warnings = [f for f in row.get("flags") or [] if isinstance(f, dict) and f.get("severity", "warning") == "warning"]
        rows.append({
            "run_id": row["run_id"],
            "attack_label": with_package(row["attack_label"], row.get("attack_package"), row.get("attack_version")),
            "defense_label": with_package(row["defense_label"], row.get("defense_package"),
                                          row.get("defense_version")),
            "threat": str(ThreatGroup.of(row)),
            "robust_accuracy": row["robust_accuracy"],
            "flags": flag_codes(row),
            "message": "; ".join(f.get("message", "") for f in warnings),
        })
    notes = ["Left out of the rankings above; `arena leaderboard --include-flagged` ranks them (marked ⚑)."]
    return View("Flagged results", "flagged", {}, columns, rows, tracks=ROBUSTNESS_TRACKS, notes=notes)
