"""``arena results`` and ``arena show``: read the store, never run a model."""

from __future__ import annotations

import click

from ..errors import InvalidInputError
from ..plugins import load_tracks
from ..tables import key_values
from ..text import markup, terminal_safe
from .common import db_option, echo_json_list, read_store, stdout, stored_tracks, warn


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Every stored result as a flat JSON list.")
@click.option("--history", is_flag=True, help="Include superseded runs (replaced by --force or by changed code).")
@click.option("--all", "include_all", is_flag=True, help="Include errored, refused and superseded runs.")
@click.option("--dataset", default=None, help="Only this dataset.")
@db_option
def results(as_json, history, include_all, dataset, db_url) -> None:
    """List stored results: the current run of each result (see --history)."""
    from ..track import RowQuery

    store = read_store(db_url)
    failed, history = include_all or as_json, history or include_all
    query = RowQuery(dataset=dataset, include_failed=failed, history=history)
    by_track = [(track, track.rows(store, query)) for track in stored_tracks(store)]
    if as_json:
        from arena_leaderboard.provenance import install_command, third_party_packages

        records = []
        for track, rows in by_track:
            for row in rows:  # failed runs too: the command retries them
                row["command"] = track.command(row)
                row["install"] = install_command(third_party_packages(row))
            records += rows
        echo_json_list(sorted(records, key=lambda row: row["run_id"]))
        return
    shown = [(track, rows) for track, rows in by_track if rows] or by_track[:1]
    for track, rows in shown:
        table = track.table(rows)
        if table is not None:
            stdout.print(table)


@click.command()
@click.argument("run_id", type=int)
@db_option
def show(run_id, db_url) -> None:
    """Show one run in detail."""
    store = read_store(db_url)
    run = store.get_run(run_id)
    if run is None:
        raise InvalidInputError(f"no run {run_id} in the database: list them with `arena results`")
    track = load_tracks([run.track]).track(run.track)
    row = track.row(run)
    stdout.print(key_values(f"Run {run_id}", {k: v for k, v in row.items() if k not in ("provenance", "error")}))
    if run.superseded_by is not None:
        stdout.print(f"[yellow]Superseded by run {run.superseded_by}[/]: kept as history, not ranked and never "
                     "reused.", highlight=False)
    replaced = store.superseding(run.id)
    if replaced:
        stdout.print(f"Supersedes run{'s' * (len(replaced) > 1)} {', '.join(map(str, replaced))} "
                     "(see arena results --history).", highlight=False)
    origin = (run.provenance or {}).get("origin") if isinstance(run.provenance, dict) else None
    if isinstance(origin, dict):
        stdout.print(f"Imported from {terminal_safe(origin.get('label'))} (bundle "
                     f"{terminal_safe(str(origin.get('bundle_sha256'))[:12])}, run {terminal_safe(origin.get('exported_run_id'))} "
                     f"there) on {terminal_safe(origin.get('imported_at'))}, after its checks passed.",
                     highlight=False, markup=False, soft_wrap=True)
    stdout.print(key_values("Provenance", run.provenance or {}, formatted=False))
    for role, path in (run.artifacts or {}).items():
        if str(path).endswith(".png"):
            from ..artifacts import UnreadableArtifact, local_path

            try:
                path = local_path(path)
            except UnreadableArtifact as exc:
                warn(f"run {run.id}: {exc}")
            stdout.print(f"Image ({terminal_safe(role)}): {terminal_safe(path)}", highlight=False, soft_wrap=True,
                         markup=False)
    for renderable in track.details(run, store):
        stdout.print(renderable)
    if run.samples:
        attacked = [s for s in run.samples if s.clean_correct]
        fooled = [s for s in attacked if s.success]
        stdout.print(f"Samples: {len(run.samples)} evaluated, {len(attacked)} clean-correct and attacked, "
                     f"{len(fooled)} fooled.")
    _picture_examples(run)
    if run.error:
        stdout.print(f"[red]{markup(run.status)}[/]:", highlight=False)
        stdout.print(terminal_safe(run.error, newlines=True), highlight=False, markup=False)


def _picture_examples(run) -> None:
    """Clean / adversarial / amplified perturbation of the examples the run kept, as a PNG
    (drawn once per examples file and title, under ``$ARENA_HOME/pictures``)."""
    examples = (run.artifacts or {}).get("examples")
    if not examples or run.robustness is None:
        return
    from ..artifacts import UnreadableArtifact, local_path

    result = run.robustness
    title = f"{result.attack} vs {result.defense} · {result.norm} eps={result.eps:g}"
    try:
        source = local_path(examples)
        picture = _drawn(source, title)
        if picture is None:
            from arena_leaderboard.figures import save_examples_png

            picture = save_examples_png(source, title, _picture_path(source, title))
    except UnreadableArtifact as exc:
        warn(f"run {run.id}: {exc}; no picture of its examples (`arena run ... --force` writes it again)")
        return
    stdout.print(f"Examples: {terminal_safe(picture)}", highlight=False, soft_wrap=True, markup=False)


def _picture_path(source, title: str):
    from ..config import home
    from ..provenance import stable_hash

    return home() / "pictures" / f"{source.stem}-{stable_hash(title)[:8]}.png"


def _drawn(source, title: str):
    """The examples picture already drawn from the current examples file, or None."""
    picture = _picture_path(source, title)
    try:
        return picture if picture.stat().st_mtime_ns >= source.stat().st_mtime_ns else None
    except OSError:
        return None
