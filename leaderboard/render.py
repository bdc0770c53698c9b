"""Renderers: the same views as rich tables, Markdown, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.table import Table

from .robustness import RobustnessBoard


@dataclass
class Column:
    name: str
    key: str
    kind: str = "text"  # text | percent | number | int


@dataclass
class View:
    """A titled table: what every renderer draws."""

    title: str
    table: str  # "defenses" | "attacks"
    group: dict[str, Any]
    columns: list[Column]
    rows: list[dict[str, Any]]


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _format(value: Any, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "percent":
        return _percent(value)
    if kind == "number":
        return f"{value:.3g}"
    if kind == "int":
        return str(int(value))
    if isinstance(value, list):
        return ", ".join(map(str, value)) or ""
    return str(value)


def views(boards: list[RobustnessBoard]) -> list[View]:
    """Two views per threat model: the defense ranking and the attack ranking."""
    result = []
    for board in boards:
        group = {
            "dataset": board.group.dataset,
            "norm": board.group.norm,
            "eps": board.group.eps,
            "targeted": board.group.targeted,
        }
        columns = [Column("#", "rank", "int"), Column("defense", "defense"), Column("clean", "clean_accuracy", "percent")]
        columns += [Column(attack, f"attack:{attack}", "percent") for attack in board.attacks]
        columns += [
            Column("worst case", "worst_case", "percent"),
            Column("attacks", "attacks_faced", "int"),
            Column("flags", "flags"),
        ]
        rows = []
        for entry in board.defenses:
            row = {
                "rank": entry.rank,
                "defense": entry.defense,
                "clean_accuracy": entry.clean_accuracy,
                "worst_case": entry.worst_case,
                "worst_case_n": entry.worst_case_n,
                "attacks_faced": entry.attacks_faced,
                "flags": entry.flags,
            }
            row.update({f"attack:{a}": entry.robust_by_attack.get(a) for a in board.attacks})
            rows.append(row)
        result.append(View(f"Defenses — {board.group}", "defenses", group, columns, rows))

        size = "mean L∞" if board.group.norm == "linf" else "mean L2"
        attack_columns = [
            Column("#", "rank", "int"),
            Column("attack", "attack"),
            Column("access", "access"),
            Column("success", "success_rate", "percent"),
            Column("robust acc.", "mean_robust_accuracy", "percent"),
            Column("defenses", "defenses_faced", "int"),
            Column(size, "mean_perturbation", "number"),
            Column("queries", "queries", "number"),
            Column("flags", "flags"),
        ]
        attack_rows = [
            {
                "rank": e.rank,
                "attack": e.attack,
                "access": e.access,
                "success_rate": e.success_rate,
                "mean_robust_accuracy": e.mean_robust_accuracy,
                "defenses_faced": e.defenses_faced,
                "mean_perturbation": e.mean_perturbation,
                "queries": e.queries,
                "flags": e.flags,
            }
            for e in board.attack_ranking
        ]
        result.append(View(f"Attacks — {board.group}", "attacks", group, attack_columns, attack_rows))
    return result


def render_rich(views_: list[View]) -> list[Table]:
    tables = []
    for view in views_:
        table = Table(title=view.title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)
        for column in view.columns:
            justify = "left" if column.kind == "text" else "right"
            table.add_column(column.name, justify=justify, no_wrap=column.kind != "text")
        for row in view.rows:
            table.add_row(*(_format(row.get(c.key), c.kind) for c in view.columns))
        tables.append(table)
    return tables


def render_markdown(views_: list[View]) -> str:
    parts = []
    for view in views_:
        header = "| " + " | ".join(c.name for c in view.columns) + " |"
        rule = "|" + "|".join("---" if c.kind == "text" else "---:" for c in view.columns) + "|"
        lines = [f"### {view.title}", "", header, rule]
        for row in view.rows:
            cells = (_format(row.get(c.key), c.kind).replace("|", "\\|") for c in view.columns)
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def render_csv(views_: list[View]) -> str:
    """One tidy table: a row per leaderboard entry, with its threat model and table name."""
    keys: list[str] = []
    for view in views_:
        for column in view.columns:
            if column.key not in keys:
                keys.append(column.key)
    fields = ["table", "dataset", "norm", "eps", "targeted"] + keys
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for view in views_:
        for row in view.rows:
            record = {"table": view.table, **view.group}
            for key, value in row.items():
                record[key] = ";".join(value) if isinstance(value, list) else value
            writer.writerow(record)
    return buffer.getvalue()


def render_json(views_: list[View]) -> str:
    payload = [
        {
            "title": view.title,
            "table": view.table,
            **view.group,
            "columns": [c.key for c in view.columns],
            "entries": view.rows,
        }
        for view in views_
    ]
    return json.dumps(payload, indent=2)
