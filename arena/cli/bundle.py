"""``arena export`` and ``arena import``: result bundles between databases, verified on import."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import InvalidInputError
from .common import count, db_option, read_store, stdout


@click.command("export")
@click.argument("run_ids", nargs=-1, type=int)
@click.option("--all", "export_all", is_flag=True, help="Every current completed run.")
@click.option("--with-examples", is_flag=True,
              help="Require every attacked sample's adversarial example in the bundle (runs stored with arena run "
                   "--keep-examples all), so that the importer re-checks each one.")
@click.option("--output", "-o", "output", type=click.Path(dir_okay=False), required=True,
              help="The bundle file to write (a zip).")
@db_option
def export(run_ids, export_all, with_examples, output, db_url) -> None:
    """Write stored runs (RUN_ID..., or --all) to one self-contained bundle: runs, per-sample
    outcomes, full provenance, checkpoint hashes and the adversarial examples each run kept.

    Another database takes it with `arena import FILE`, which checks it first.
    """
    from ..bundles import export as write_bundle

    if bool(run_ids) == export_all:
        raise InvalidInputError("name the runs to export (RUN_ID ...) or pass --all, not both or neither")
    written = write_bundle(read_store(db_url), None if export_all else list(run_ids), Path(output), with_examples)
    stdout.print(f"Exported {count(written, 'run')} to {output}", highlight=False, markup=False, soft_wrap=True)


@click.command("import")
@click.argument("bundle", type=click.Path(dir_okay=False))
@click.option("--origin", default=None, metavar="LABEL",
              help="Where the results come from, shown with them (default: the bundle's file name).")
@click.option("--device", default="auto", show_default=True, help="Where re-classification runs: auto, cpu or cuda[:N].")
@db_option
def import_(bundle, origin, device, db_url) -> None:
    """Check a bundle from `arena export` and merge its runs into this database.

    Nothing is stored unless every check passes: the bundle is whole and unmodified, each run's
    provenance is complete and names plugins installed here at the same versions, its dataset
    here is the same data, its per-sample outcomes agree with each other and with its
    accuracies, and every adversarial example it ships is the test image it claims, within the
    run's threat model, and (where the defense's checkpoint is here with the same SHA-256)
    classified here as the bundle says. Imported runs keep their origin (arena show,
    arena leaderboard --origin); a run imported twice is stored once.
    """
    from ..bundles import BundleRefused, merge, read, verify
    from ..progress import Reporter
    from .common import session, stderr

    path = Path(bundle)
    read_bundle = read(path)
    label = origin or path.stem
    with Reporter(stderr) as reporter, session(db_url, device, reporter=reporter) as arena:
        problems, reclassified = verify(read_bundle, arena.host)
        if problems:
            shown = "\n".join(f"  {p}" for p in problems[:50])
            more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
            raise BundleRefused(f"{path} refused, nothing was imported: {count(len(problems), 'problem')}\n{shown}{more}")
        done = merge(arena.store, read_bundle, label, arena.home)
    stdout.print(f"Checked {count(len(read_bundle.runs), 'run')}: {reclassified} re-classified with this machine's "
                 "checkpoints (clean images and every shipped example); every run's outcomes against each other, its "
                 "accuracies and its host-chosen targets, and its examples against its threat model. A sample "
                 "claimed robust is not attacked again here.", highlight=False, markup=False, soft_wrap=True)
    stdout.print(f"Imported {count(len(done.stored), 'run')} from {path} (origin {label!r})"
                 + (f"; {count(done.already, 'run')} already imported" if done.already else "")
                 + (f"; {count(len(done.kept_local), 'run')} whose key is current here already, kept as they are"
                    if done.kept_local else ""), highlight=False, markup=False, soft_wrap=True)
