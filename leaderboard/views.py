"""The robustness views: rankings, arena ratings, the attack × defense matrix, robustness curves.

Every completed result counts: an adversarial example the host verified (within budget,
misclassified) proves the defense is not robust at that point, whatever else is flagged. A
warning flag marks the entries it touches as suspect (⚑, with its code) and the flagged results
are listed again in a view of their own; a flag never takes a robustness result out of a ranking, so it can
never make a defense look stronger.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

import numpy as np

from arena.integrity import is_suspect
from arena.presets import AUTOATTACK

from .provenance import robustness_runs_views, with_package
from .ratings import ArenaRatings, arena_ratings, blas_threads
from .render import Column, Figure, View
from .robustness import RobustnessBoard, Row, ThreatGroup, flag_codes, latest_runs, robustness_boards
from .seeds import defense_config, seed_index

#: The tracks these views belong to (``--track``).
ROBUSTNESS_TRACKS = ("robustness", "attacks")
#: Examples pictured per threat model on the page: the strongest attack against each top defense.
EXAMPLE_DEFENSES = 6


def robustness_views(
    rows: Iterable[Row],
    outcomes: Mapping[int, Mapping[int, bool]],
    examples: bool = False,
    exports: bool = True,
) -> list[View]:
    """Every robustness view of the given result rows and per-sample outcomes.

    ``examples`` adds, per threat model, a view of stored adversarial examples (pictures, for
    the HTML page); without ``exports``, the export-only views (runs and provenance, which the
    terminal and the page leave out) are not built.
    """
    latest = latest_runs(rows)
    flagged = [row for row in latest if is_suspect(row.get("flags"))]
    boards = robustness_boards(latest, outcomes)
    views: list[View] = []
    for board, ratings in zip(boards, all_board_ratings(boards)):
        views += [defense_view(board), attack_view(board), ratings_view(board, ratings), matrix_view(board)]
        if examples:
            views.append(examples_view(board))
    views += curve_views(boards)
    if flagged:
        views.append(flagged_view(flagged))
    if exports:
        views += robustness_runs_views(latest)
    return views


def _seeded(board: RobustnessBoard) -> bool:
    """Whether any defense has several seeds: then figures show their spread and seed counts."""
    return any(entry.seeds > 1 or max(entry.robust_by_attack_seeds.values(), default=1) > 1
               for entry in board.defenses)


def defense_view(board: RobustnessBoard) -> View:
    seeded = _seeded(board)
    columns = [
        Column("#", "rank", "int"),
        Column("defense", "defense"),
        Column("clean", "clean_accuracy", "percent", spread="clean_accuracy_std" if seeded else None),
        Column("worst case", "worst_case", "percent", heat=True, spread="worst_case_std" if seeded else None),
    ]
    protocol = any(entry.autoattack is not None for entry in board.defenses)
    if protocol:
        columns.append(Column(AUTOATTACK.title, "autoattack", "percent", heat=True,
                              spread="autoattack_std" if seeded else None))
    columns += [
        Column("points", "worst_case_n", "int"),
        Column("attacks", "attacks_faced", "int"),
    ]
    if seeded:
        columns.append(Column("seeds", "seeds", "int"))
    columns += _flag_columns(board.defenses)
    rows = [
        {
            "rank": entry.rank,
            "defense": with_package(entry.defense, entry.package, entry.version),
            "clean_accuracy": entry.clean_accuracy,
            "worst_case": entry.worst_case,
            "worst_case_n": entry.worst_case_n,
            "attacks_faced": entry.attacks_faced,
            "seeds": entry.seeds,
            "clean_accuracy_std": entry.clean_accuracy_std,
            "worst_case_std": entry.worst_case_std,
            "autoattack": entry.autoattack,
            "autoattack_std": entry.autoattack_std,
            "autoattack_n": entry.autoattack_n,
            "flags": entry.flags,
            "suspect": entry.suspect,
        }
        for entry in board.defenses
    ]
    notes = ["Worst case: a test point counts only if no attack fooled it (as AutoAttack reports)."]
    if protocol:
        notes.append(f"{AUTOATTACK.title}: the same per-sample worst case over the four runs of `-a autoattack` "
                     "only (APGD-CE, APGD-T, FAB-T, Square with 5,000 queries), RobustBench's figure; the worst "
                     "case adds every other attack run. Blank where not all four were run.")
    if seeded:
        notes.append("Several seeds: mean ± sample standard deviation over the seeds (each trained and attacked "
                     "anew); the worst case over the seeds evaluated with every attack.")
    return View(f"Defenses — {board.group}", "defenses", board.group.as_dict(), columns, rows, tracks=("robustness",),
                notes=notes)


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
    return View(f"Attacks — {board.group}", "attacks", board.group.as_dict(), columns, rows, tracks=("attacks",))


def _flag_columns(entries: list[Any]) -> list[Column]:
    """The flag codes, and a mark on suspect entries, where any entry has them."""
    columns = [Column("flags", "flags")] if any(entry.flags for entry in entries) else []
    return columns + ([Column("", "suspect", "mark")] if any(entry.suspect for entry in entries) else [])


def board_ratings(board: RobustnessBoard) -> ArenaRatings:
    """Bradley–Terry ratings of one threat model's attacks and defenses."""
    defenses = {entry.key: position for position, entry in enumerate(board.defenses)}
    attacks = {entry.attack: position for position, entry in enumerate(board.attack_ranking)}
    attack_of = np.array([attacks[run["attack_label"]] for run in board.runs])
    defense_of = np.array([defenses[defense_config(run)] for run in board.runs])
    _, seed_of = seed_index(board.runs)
    return arena_ratings(list(attacks), [entry.defense for entry in board.defenses], attack_of, defense_of,
                         board.outcomes.fooled, board.outcomes.evaluated, seed_of=seed_of)


def all_board_ratings(boards: list[RobustnessBoard]) -> list[ArenaRatings]:
    """Every board's ratings, two boards at a time: the fits' array work releases the GIL, so
    a second core shortens it (each board's bootstrap draws from its own generator: the
    ratings are the same either way)."""
    from concurrent.futures import ThreadPoolExecutor

    workers = min(2, os.cpu_count() or 1, len(boards))
    if workers < 2:
        return [board_ratings(board) for board in boards]
    with blas_threads(1), ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(board_ratings, boards))


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
            "rank": rating.rank,
            "player": rating.player,
            "side": rating.side,
            "rating": rating.rating,
            "rating_low": rating.low,
            "rating_high": rating.high,
            "win_rate": rating.win_rate,
            "matches": rating.played,
        }
        for rating in ratings.ratings
    ]
    notes = [
        "Bradley–Terry: each (attack, defense, test point) is a match the attack wins if the point "
        "ends misclassified. 400 points = 10:1 odds.",
        (f"95% CI: bootstrap over {ratings.samples} test points, {ratings.rounds} rounds"
         if ratings.seeds == 1 else
         f"95% CI: bootstrap over {ratings.seeds} seeds, then {ratings.samples} test points within each, "
         f"{ratings.rounds} rounds") + "; players whose intervals overlap share a rank.",
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
    seeded = _seeded(board)
    columns = [Column("defense \\ attack", "defense")]
    columns += [Column(attack, key, "percent", heat=True, spread=f"{key}:std" if seeded else None)
                for attack, key in zip(attacks, keys)]
    if seeded:
        columns.append(Column("seeds", "seeds"))
    rows = []
    for entry in board.defenses:
        row: dict[str, Any] = {"defense": entry.defense}
        row.update({key: entry.robust_by_attack.get(attack) for attack, key in zip(attacks, keys)})
        if seeded:
            row.update({f"{key}:std": entry.robust_by_attack_std.get(attack) for attack, key in zip(attacks, keys)})
            row.update({f"{key}:seeds": entry.robust_by_attack_seeds.get(attack) for attack, key in zip(attacks, keys)})
            counts = sorted(set(entry.robust_by_attack_seeds.values()))
            row["seeds"] = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
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
    kept: dict[str, list[Row]] = {}
    for run in board.runs:
        if (run.get("artifacts") or {}).get("examples"):
            kept.setdefault(defense_config(run), []).append(run)
    for entry in board.defenses[:EXAMPLE_DEFENSES]:
        runs = kept.get(entry.key)
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
    notes = ["Counted in the rankings above, where the entries they touch are marked ⚑: a flag marks an "
             "evaluation as suspect, and every adversarial example the host verified still counts."]
    return View("Flagged results", "flagged", {}, columns, rows, tracks=ROBUSTNESS_TRACKS, notes=notes)
