"""``arena run``: the common options, plus the options each registered track adds."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ..plugins import get_registry
from ..text import markup
from .common import SEVERITY_WORDS, db_option, parse_params, parse_seeds, stderr, stdout, warn_problems


#: The options every ``arena run`` has; the rest are the tracks' own.
COMMON = ("plan_only", "as_json", "dataset", "seed", "seeds_text", "device", "batch_size", "param_items", "force",
          "deterministic", "executor", "ray_address", "max_parallel", "db_url")


def _run(**values: Any) -> None:
    """Evaluate attacks against defenses, or score generators, and store the results."""
    from ..executors import JobsFailed
    from ..progress import Reporter
    from ..track import Request
    from .common import session

    common = {name: values.pop(name) for name in COMMON}
    force, device = common["force"], common["device"]
    request = Request(dataset=common["dataset"], seeds=tuple(parse_seeds(common["seed"], common["seeds_text"])),
                      batch_size=common["batch_size"], params=parse_params(common["param_items"]), force=force,
                      options=values)
    registry = get_registry()
    warn_problems(registry)
    with Reporter(stderr) as reporter, session(common["db_url"], device, reporter=reporter, force=force,
                                                 deterministic=common["deterministic"]) as arena:
        if common["plan_only"]:
            _print_plan(arena.plan(request), common["as_json"])
            return
        try:
            by_track = arena.run(request, common["executor"], address=common["ray_address"],
                                 max_parallel=common["max_parallel"])
        except JobsFailed as failed:  # what was stored is shown, then the error
            by_track, lost = failed.by_track, failed
        else:
            lost = None
    broken = False
    for track in arena.tracks(request):
        outcomes = by_track.get(track.name, [])
        summary = track.report(outcomes)
        if summary is not None:
            stdout.print(summary)
        for outcome in (o for o in outcomes if o.ok and o.run.flags):
            _print_flags(outcome)
        for outcome in (o for o in outcomes if not o.ok):
            first = (outcome.run.error or "").splitlines()[0]
            stderr.print(f"[red]{outcome.run.status}:[/] {markup(outcome.label)}: {markup(first)} "
                         f"(details: arena show {outcome.run.id})", highlight=False)
            broken = True
    if lost is not None:
        raise lost
    if broken:
        sys.exit(1)


def _print_flags(outcome) -> None:
    """One line per severity of the outcome's flags: ``flagged:`` for warnings, ``note:`` for info."""
    for severity, (word, colour) in SEVERITY_WORDS.items():
        codes = [f.get("code", "") for f in outcome.run.flags if f.get("severity", "warning") == severity]
        if codes:
            stderr.print(f"[{colour}]{word}:[/] {markup(outcome.label)}: {markup(', '.join(codes))} "
                         f"(details: arena show {outcome.run.id})", highlight=False)


def _print_plan(jobs, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"jobs": [job.as_dict() for job in jobs],
                               "stored": sum(job.stored for job in jobs), "total": len(jobs)}, indent=2))
        return
    from ..tables import plan_table

    stdout.print(plan_table(jobs))


def build() -> click.Command:
    """The ``run`` command with the options of every registered track."""
    params: list[click.Parameter] = []
    for track in get_registry().ordered_tracks():
        params += track.options()
    common = [
        click.Option(["--dataset"], default="digits", show_default=True, help="Dataset plugin."),
        click.Option(["--seed"], type=int, default=None, help="Seed for training, targets and attacks (default 0)."),
        click.Option(["--seeds", "seeds_text"], default=None, metavar="S1,S2[,..]",
                     help="Several seeds: train and evaluate every model once per seed (e.g. --seeds 0,1,2)."),
        click.Option(["--device"], default="auto", show_default=True, help="auto, cpu or cuda[:N]."),
        click.Option(["--batch-size"], type=int, default=256, show_default=True, help="Attack and sampling batch size."),
        click.Option(["--param", "-p", "param_items"], multiple=True, metavar="PLUGIN.NAME=VALUE",
                     help="Set a plugin hyperparameter, e.g. -p advtrain.alpha=0.3 (repeatable)."),
        click.Option(["--force"], is_flag=True,
                     help="Recompute even when an identical result is stored; the new run supersedes it."),
        click.Option(["--deterministic"], is_flag=True,
                     help="Seed everything and use torch's deterministic algorithms (identical reruns)."),
        click.Option(["--executor"], default=None, envvar="ARENA_EXECUTOR", metavar="NAME",
                     help="Where the jobs run: local (this machine, the default), ray, slurm, or another registered "
                          "executor (`arena plugins` lists them)."),
        click.Option(["--ray-address"], default=None, envvar="ARENA_RAY_ADDRESS", metavar="ADDRESS",
                     help="With --executor ray: auto or HOST:PORT joins a running cluster (default: start a local "
                          "Ray instance)."),
        click.Option(["--max-parallel"], type=click.IntRange(min=1), default=None, envvar="ARENA_MAX_PARALLEL",
                     metavar="N", help="With --executor slurm: at most N jobs of an array at once; with local: at most N "
                                       "worker processes (one per GPU by default)."),
        click.Option(["--plan", "plan_only"], is_flag=True,
                     help="Print the jobs of this run (keys, what each needs, which are stored) and run nothing."),
        click.Option(["--json", "as_json"], is_flag=True, help="With --plan: the plan as JSON."),
    ]
    command = click.Command("run", callback=_run, params=params + common, help=_run.__doc__,
                            short_help="Evaluate attacks against defenses, or score generators, and store the results.")
    return db_option(command)


run = build()
