"""Terminal tables of the generative track for `arena run`, `arena results` and `arena show`."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from .generation import GenerativeOutcome
from .text import cell


def _number(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def run_summary(outcomes: list[GenerativeOutcome]) -> Table:
    """What `arena run` prints for the generators it scored."""
    table = Table(title="Generators", title_justify="left", header_style="bold", box=box.SIMPLE_HEAD,
                  pad_edge=False, collapse_padding=True)
    for name in ["run", "generator", "bits/dim", "FID", "prec.", "recall", "IS", "time", ""]:
        table.add_column(name, justify="left" if name in ("generator", "") else "right", no_wrap=True)
    for outcome in outcomes:
        run, result = outcome.run, outcome.run.generative
        note = cell(run.status, style="red") if not outcome.ok else cell("reused" if outcome.reused else "")
        table.add_row(
            str(run.id), cell(result.generator), _number(result.bits_per_dim), _number(result.fid),
            _number(result.precision, 2), _number(result.recall, 2), _number(result.inception_score),
            f"{run.duration_s:.1f}s", note,
        )
    return table


def results_table(rows: list[dict[str, Any]]) -> Table:
    """What `arena results` lists for generative runs."""
    table = Table(title="Stored generative results", title_justify="left", header_style="bold", box=box.SIMPLE_HEAD,
                  pad_edge=False, collapse_padding=True)
    superseded = any(row.get("superseded_by") is not None for row in rows)  # listed with --history
    for name in ["run", "status", "dataset", "generator", "samples", "bits/dim", "kind", "FID", "IS",
                 *["superseded by"] * superseded]:
        table.add_column(name, no_wrap=name != "generator")
    for row in rows:
        table.add_row(*map(cell, [
            row["run_id"], row["status"], row["dataset"], row["generator_label"], row["samples"],
            _number(row["bits_per_dim"]), row["likelihood"] or "none", _number(row["fid"]),
            _number(row["inception_score"]), *[row.get("superseded_by") or ""] * superseded,
        ]))
    return table
