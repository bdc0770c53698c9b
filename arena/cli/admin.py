"""``arena check``, ``arena db check`` and ``arena plugins``."""

from __future__ import annotations

import json
import sys

import click

from ..errors import InvalidInputError
from ..plugins import get_registry
from ..tables import pct
from ..text import markup, terminal_safe
from .common import SEVERITY_WORDS, count, db_option, stdout, warn_selection


@click.command()
@click.argument("run_id", type=int)
@click.option("--samples", type=click.IntRange(min=1), default=100, show_default=True,
              help="Evaluation points the checks re-run.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@db_option
def check(run_id, samples, device, db_url) -> None:
    """Run the costlier integrity checks on a stored result and store what they find.

    A white-box attack given an unbounded budget must reach chance-level accuracy; an iterative
    attack re-run with twice its steps must not find noticeably more adversarial examples.
    """
    from ..checks import check_run
    from ..progress import Reporter
    from .common import session, stderr

    with Reporter(stderr) as reporter:
        arena = session(db_url, device, reporter=reporter)
        run = arena.store.get_run(run_id)
        if run is None:
            raise InvalidInputError(f"no run {run_id} in the database: list them with `arena results`")
        found = check_run(arena, run, samples)
    for name in ("unbounded", "convergence"):
        value = found[name]
        if isinstance(value, str):
            stdout.print(f"{name}: {terminal_safe(value)}", highlight=False, markup=False)
        elif name == "unbounded":
            stdout.print(f"unbounded: eps {value['eps']:g} leaves {pct(value['robust_accuracy'])} robust accuracy "
                         f"(chance {pct(value['chance'])}) on {found['samples']} samples", highlight=False)
        else:
            stdout.print(f"convergence: {markup(value['parameter'])} {value['steps']} → {2 * value['steps']} "
                         f"changes robust accuracy {pct(value['robust_accuracy'])} → "
                         f"{pct(value['robust_accuracy_doubled'])}", highlight=False)
    if found["flags"]:
        for flag in found["flags"]:
            word, colour = SEVERITY_WORDS.get(flag.get("severity"), SEVERITY_WORDS["warning"])
            stdout.print(f"[{colour}]{word}[/] {markup(flag['code'])}: {markup(flag['message'])}", highlight=False)
    else:
        stdout.print("no problems found")


@click.group()
def db() -> None:
    """Look after the results database."""


#: Problems listed per part of `arena db check`; the rest are counted.
LISTED_PROBLEMS = 50


@db.command("check")
@db_option
def db_check(db_url) -> None:
    """Check the results database and the files its runs point to; exit 1 if anything is wrong.

    Runs SQLite's integrity_check over every page (SQLite files only), reads every stored value
    as Arena decodes it, and reads every examples file and picture. Nothing is changed.
    """
    from ..artifacts import UnreadableArtifact, check_artifact
    from ..config import database_url
    from ..errors import StoreError
    from ..store import integrity_check, open_store, shown_url, sqlite_path

    url = database_url(db_url)
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise InvalidInputError(f"no database at {path}: pass the --db of an existing one")
    stdout.print(f"Database: {shown_url(url)}", highlight=False, markup=False, soft_wrap=True)
    problems = 0
    if path is not None:
        found = integrity_check(path)
        problems += len(found)
        _report("pages", "SQLite's integrity_check: ok" if not found else
                f"SQLite's integrity_check found {count(len(found), 'problem')}", found)
    else:
        stdout.print("pages: not checked: SQLite's integrity_check is for SQLite files only", highlight=False)
    try:
        store = open_store(url, writes=False, warn=lambda message: None)  # the checks below say it all
    except StoreError as exc:
        stdout.print(f"rows: not read: {exc}", highlight=False, markup=False, soft_wrap=True)
        problems += 1
    else:
        scan = store.scan()
        read = ", ".join(f"{count(n, table.replace('_', ' ').removesuffix('s'))}" for table, n in scan.rows.items())
        summary = (f"{read}: every value readable" if not scan.problems else
                   f"{read}: {count(len(scan.problems), 'row')} with values that cannot be decoded "
                   "(every command skips them)")
        if scan.stopped:
            summary = f"stopped {scan.stopped}; before that: {summary}"
            problems += 1
        _report("rows", summary, scan.problems)
        problems += len(scan.problems)
        unreadable = []
        for run_id, role, file in scan.artifacts:
            try:
                check_artifact(file)
            except UnreadableArtifact as exc:
                unreadable.append(f"run {run_id}: {role}: {exc}")
        problems += len(unreadable)
        _report("files", f"{count(len(scan.artifacts), 'file')} of stored runs: " +
                ("all readable" if not unreadable else f"{len(unreadable)} missing or unreadable "
                 "(`arena run ... --force` writes a run's files again)"), unreadable)
    if problems:
        stdout.print(f"{count(problems, 'problem')} found", highlight=False)
        if path is not None:
            stdout.print(f"Stored rows are never rewritten by Arena: restore a backup of {path} (the store keeps "
                         f"{path.name}.schema-REV.bak before each migration), or fix the rows listed with sqlite3.",
                         highlight=False, markup=False, soft_wrap=True)
        sys.exit(1)
    stdout.print("no problems found")


def _report(part: str, summary: str, problems: list[str]) -> None:
    stdout.print(f"{part}: {summary}", highlight=False, markup=False, soft_wrap=True)
    for line in problems[:LISTED_PROBLEMS]:
        stdout.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
    if len(problems) > LISTED_PROBLEMS:
        stdout.print(f"  ... and {len(problems) - LISTED_PROBLEMS:,} more", highlight=False)


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--verbose", "-v", is_flag=True, help="Also show each plugin's one-line description.")
@click.pass_context
def plugins(ctx, as_json, verbose) -> None:
    """List installed attacks, defenses, generators and datasets, and plugins that failed to load.

    Third-party plugins are marked with the state of their conformance checks (`arena plugins
    check NAME`): passed, failed, or not run for the code installed now.
    """
    if ctx.invoked_subcommand is not None:
        return
    from ..conformance import recorded_checks

    registry = get_registry()
    warn_selection(registry)
    entries = [info.as_dict() for info in registry.all()]
    recorded = recorded_checks()
    for info, entry in zip(registry.all(), entries):
        entry["checks"] = recorded.status(info)
    problems = [
        {"package": p.package, "version": p.version, "entry_point": p.entry_point, "error": p.error}
        for p in registry.problems
    ]
    tracks = [{"name": track.name, "summary": track.summary, "boards": list(track.board_names())}
              for track in registry.ordered_tracks()]
    executors = [{"name": name, "summary": cls.summary, "extra": cls.extra}
                 for name, cls in sorted(registry.executors.items())]
    from ..presets import PRESETS

    presets = [{"name": p.name, "summary": p.summary,
                "attacks": [{"attack": m.attack, "params": dict(m.params), "query_budget": m.query_budget}
                            for m in p.members]} for p in PRESETS.values()]
    if as_json:
        click.echo(json.dumps({"plugins": entries, "problems": problems, "tracks": tracks, "executors": executors,
                               "presets": presets}, indent=2))
        return
    from ..tables import executors_table, plugins_table, presets_table, problems_table, tracks_table

    stdout.print(plugins_table(entries, verbose))
    stdout.print(presets_table(presets))
    stdout.print(tracks_table(tracks))
    stdout.print(executors_table(executors))
    if problems:
        stdout.print(problems_table(problems))




@plugins.command("check")
@click.argument("names", nargs=-1, required=True)
@click.option("--param", "-p", "param_items", multiple=True, metavar="PLUGIN.NAME=VALUE",
              help="A hyperparameter to check the plugin with (repeatable), e.g. -p my-defense.epochs=1.")
@click.option("--json", "as_json", is_flag=True, help="The results as JSON.")
def plugins_check(names, param_items, as_json) -> None:
    """Run the conformance checks of plugins (NAME, KIND:NAME, or all for every third-party
    plugin) on small data and random models; exit 1 if any fails.

    The checks are those of arena.testing (check_attack, ...): the class registers, its
    hyperparameters round-trip through -p, an attack stays in budget for every declared norm and
    mode, leaves the model as given and is reproducible, a defense or generator trains and is
    cached, samples and likelihoods are proper, a dataset keeps its contract. Each failure says
    how to fix it. The outcome is recorded in $ARENA_HOME, and `arena plugins` shows it.
    """
    from ..conformance import conformance, recorded_checks
    from ..config import home
    from ..tables import conformance_table
    from .common import parse_params

    registry = get_registry()
    targets = _check_targets(registry, names)
    params = parse_params(param_items)
    unknown = sorted(set(params) - {info.name for info in targets})
    if unknown:
        raise InvalidInputError(f"-p names {unknown[0]!r}, which is not a plugin being checked")
    recorded = recorded_checks()
    report = []
    for info in targets:
        results = conformance(info.kind, info.cls, params.get(info.name), home=home() / "checks")
        recorded.record(info, results)
        report.append((info, results))
    if as_json:
        click.echo(json.dumps([{"kind": info.kind, "name": info.name, "package": info.source.package,
                                "version": info.source.version,
                                "checks": [{"check": r.check, "passed": r.passed, "message": r.message} for r in results]}
                               for info, results in report], indent=2))
    else:
        stdout.print(conformance_table(report))
    failed = [info for info, results in report if not all(r.passed for r in results)]
    if failed:
        if not as_json:
            stdout.print(f"{count(len(failed), 'plugin')} of {len(report)} failed: each failed check says how to fix it.",
                         highlight=False)
        sys.exit(1)


def _check_targets(registry, names) -> list:
    """The plugins ``arena plugins check`` was given: NAME, KIND:NAME, or all (third-party)."""
    from ..plugins import KINDS

    targets = []
    for name in names:
        if name == "all":
            found = [info for info in registry.all() if not info.source.builtin]
            if not found:
                raise InvalidInputError("all: no third-party plugin is installed (name built-in ones, e.g. fgsm)")
        elif ":" in name:
            kind, _, plugin = name.partition(":")
            if kind not in KINDS:
                raise InvalidInputError(f"{name!r}: {kind!r} is not a plugin kind (use one of {', '.join(KINDS)})")
            found = [registry.get(kind, plugin)]
        else:
            found = [registry.get(kind, name) for kind in KINDS if name in registry.plugins[kind]]
            if len(found) > 1:
                raise InvalidInputError(f"{name!r} is a {' and a '.join(i.kind for i in found)}: name one as "
                                        f"KIND:NAME, e.g. {found[0].kind}:{name}")
            if not found:
                raise InvalidInputError(f"no plugin named {name!r} is installed (`arena plugins` lists them)")
        targets += [info for info in found if info not in targets]
    return targets


@click.command()
@click.argument("kind", type=click.Choice(["attack", "defense", "generator", "dataset"]))
@click.argument("name")
@click.option("--dir", "folder", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Where to write the package folder arena-NAME.")
def new(kind, name, folder) -> None:
    """Write an installable plugin package to start from: attack, defense, generator or dataset.

    The package arena-NAME holds pyproject.toml (the arena entry point), a minimal working
    plugin with documented hyperparameters, a README, and tests that use arena.testing (the
    conformance checks and one arena run on the tiny built-in dataset). Then: pip install -e
    arena-NAME, pytest in it, arena plugins, arena run.
    """
    from pathlib import Path

    from ..scaffold import scaffold

    root = scaffold(kind, name, Path(folder))
    stdout.print(f"Wrote the {kind} plugin {name!r} to {root}:", highlight=False, markup=False, soft_wrap=True)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        stdout.print(f"  {path.relative_to(root)}", highlight=False, markup=False)
    stdout.print(f"Next: pip install -e '{root}[test]' && (cd {root} && pytest) && arena plugins check {name}",
                 highlight=False, markup=False, soft_wrap=True)
