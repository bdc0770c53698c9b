"""``arena leaderboard`` and ``arena compare``: read the store, never run a model."""

from __future__ import annotations

import contextlib
import json

import click
from rich.console import Console

from ..errors import InvalidInputError
from ..plugins import load_tracks
from ..tables import pct
from ..text import markup
from ..options import parse_eps
from .common import count, db_option, emit, read_store, stdout, stored_tracks, warn


@click.command()
@click.option("--dataset", default=None, help="Only this dataset.")
@click.option("--norm", type=click.Choice(["linf", "l2"]), default=None, help="Only this threat-model norm.")
@click.option("--eps", "eps_text", default=None, metavar="E[,E2..]", help="Only these perturbation budgets.")
@click.option("--track", default=None, metavar="TRACK",
              help="Only this track's tables (default: all); `arena plugins` lists the tracks.")
# Flagged results are always counted now (marked ⚑); the option stays so that scripts keep working.
@click.option("--include-flagged", is_flag=True, hidden=True)
@click.option("--origin", default=None, metavar="LABEL",
              help="Only results imported with this origin (arena import --origin), or `local` for those computed "
                   "here.")
@click.option("--format", "fmt", type=click.Choice(["table", "md", "csv", "json", "html"]), default="table",
              show_default=True)
@click.option("--output", "-o", type=click.Path(), default=None,
              help="Write to this file instead of standard output; with --format html, a folder for index.html.")
@db_option
def leaderboard(dataset, norm, eps_text, track, include_flagged, origin, fmt, output, db_url) -> None:
    """Show the leaderboard: defenses by worst-case robust accuracy, attacks by success rate, arena
    ratings, and generators by sample quality and likelihood."""
    from arena_leaderboard import Filters

    from ..track import RowQuery

    filters = Filters(dataset, norm, tuple(parse_eps(eps_text) or ()), track, origin)
    if fmt == "html" and not output:
        raise InvalidInputError("--format html writes a folder: add -o DIR (e.g. -o site/)")
    store = read_store(db_url)
    tracks = stored_tracks(store)
    boards = sorted({board for t in tracks for board in t.board_names()})
    if track is not None and track not in boards:
        raise click.BadParameter(f"{track!r} is not one of {', '.join(repr(b) for b in boards)}", param_hint="'--track'")
    board_views, shown = [], 0
    for current in tracks:
        if not filters.wants(current.board_names()):
            continue
        rows = [row for row in current.rows(store, RowQuery(dataset=dataset, norm=norm, eps=filters.eps))
                if filters.matches(row)]
        shown += len(rows)
        board_views += current.views(rows, store, fmt=fmt)
    board_views = filters.select(board_views)
    if fmt == "html":
        _write_page(board_views, output, f"{shown} stored results")
    elif fmt == "table":
        _print_tables(board_views, output)
    else:
        from arena_leaderboard import render_csv, render_json, render_markdown

        emit({"md": render_markdown, "csv": render_csv, "json": render_json}[fmt](board_views), output)


@click.command()
@click.argument("first", metavar="A")
@click.argument("second", metavar="B")
@click.option("--dataset", default=None, help="Only this dataset.")
@click.option("--norm", type=click.Choice(["linf", "l2"]), default=None, help="Only this threat-model norm.")
@click.option("--eps", type=float, default=None, help="Only this perturbation budget.")
@click.option("--targeted/--untargeted", default=None, help="Only targeted (or untargeted) results.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@db_option
def compare(first, second, dataset, norm, eps, targeted, as_json, db_url) -> None:
    """Compare two defenses, or two attacks, on the same test points and seeds.

    Defenses: per-sample worst-case robust outcomes over the attacks both were evaluated with.
    Attacks: whether each fooled the same defense model on the same test point. Exact McNemar
    test on the discordant pairs; 95% interval of the difference by a paired bootstrap over test
    points (seeds resampled first).
    """
    from arena_leaderboard.compare import compare as compare_results

    from ..track import RowQuery

    store = read_store(db_url)
    robustness = load_tracks(["robustness"]).track("robustness")
    rows = robustness.rows(store, RowQuery(dataset=dataset, norm=norm, eps=(eps,) if eps is not None else ()))
    if targeted is not None:
        rows = [row for row in rows if bool(row["targeted"]) == targeted]
    outcomes = store.sample_outcomes([row["run_id"] for row in rows])
    rows = [row for row in rows if row["run_id"] in outcomes]
    result = compare_results(rows, outcomes, first, second)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    group = result.group
    threat = f"{group['dataset']} · {group['norm']} eps={group['eps']:g} · " + (
        "targeted" if group["targeted"] else "untargeted")
    a, b = markup(result.first), markup(result.second)
    over = "attacks" if result.kind == "defenses" else "defenses"
    seeds = ", ".join(markup(seed) for seed in result.seeds)
    lines = [
        f"[bold]{a} vs {b}[/] — {markup(threat)}",
        f"{result.measure} over {over}: {', '.join(markup(name) for name in result.over)}",
        f"{count(len(result.seeds), 'seed')} ({seeds}), {count(result.points, 'test point')}: "
        f"{count(result.pairs, 'pair')}",
        f"{a}: {pct(result.first_value)}   {b}: {pct(result.second_value)}",
        f"difference ({a} − {b}): {100 * result.difference:+.1f} points, 95% CI [{100 * result.low:+.1f}, "
        f"{100 * result.high:+.1f}] ({result.interval_method}; {result.rounds:,} rounds)",
        f"discordant pairs: {result.first_only:,} only {a}, {result.second_only:,} only {b}"
        + (" (robust)" if result.kind == "defenses" else " (fooled)"),
        f"p = {result.p_value:.3g} ({result.test})",
    ]
    if len(result.seeds) > 1:
        lines.append("[dim]The test counts each (seed, test point) as an independent pair; the interval resamples "
                     "seeds and test points.[/]")
    for line in lines:
        stdout.print(line, highlight=False, soft_wrap=True)


def _print_tables(board_views, output: str | None) -> None:
    from arena_leaderboard import render_rich

    if not board_views:
        stdout.print("No results to show: loosen the filters, or run e.g. `arena run --attack fgsm --defense advtrain`.")
        return
    with open(output, "w", encoding="utf-8") if output else contextlib.nullcontext(None) as handle:
        console = Console(file=handle, width=120) if handle else stdout
        for table in render_rich(board_views, width=console.width):
            console.print(table)
            console.print()


def _write_page(board_views, folder: str, summary: str) -> None:
    from pathlib import Path

    from arena_leaderboard.html import render_html

    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise InvalidInputError(f"-o {folder}: --format html writes index.html into a folder, and this is a file")
    target.mkdir(parents=True, exist_ok=True)
    page = target / "index.html"
    page.write_text(render_html(board_views, summary=summary, warn=warn), encoding="utf-8")
    stdout.print(str(page), highlight=False, soft_wrap=True, markup=False)
