"""The ``arena`` command line."""

from __future__ import annotations

import contextlib
import difflib
import json
import sys
import traceback
from dataclasses import replace
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.table import Table

from . import __version__
from .console import OutputConsole
from .errors import ArenaError, InvalidInputError
from .evaluation import DEFAULT_DECISION_DRAWS, DEFAULT_EOT_SAMPLES, Evaluation
from .plugins import Registry, get_registry
from .text import cell, markup, terminal_safe

stdout = OutputConsole(soft_wrap=False)
stderr = OutputConsole(stderr=True)


class ArenaGroup(click.Group):
    """Turns Arena errors into one line (``Error: ...``); ``--debug`` shows the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except ArenaError as exc:
            if ctx.meta.get("arena.debug"):
                raise
            raise click.ClickException(terminal_safe(exc)) from None
        except KeyboardInterrupt:
            raise click.Abort() from None
        except Exception as exc:
            if ctx.meta.get("arena.debug"):
                raise
            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {terminal_safe(exc)} (run again with --debug for the traceback)"
            ) from None


def _debug_flag(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    ctx.meta["arena.debug"] = value
    return value


@click.group(cls=ArenaGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_debug_flag,
              help="Show full tracebacks instead of one-line errors.")
@click.version_option(__version__, package_name="arena-bench", prog_name="arena")
def cli() -> None:
    """Arena: adversarial attacks against defenses, generative models against each other."""


db_option = click.option(
    "--db", "db_url", metavar="URL", default=None,
    help="SQLAlchemy URL or SQLite file of the results database (default: $ARENA_DB, else "
    "arena.db in $ARENA_HOME).",
)


def _registry() -> Registry:
    registry = get_registry()
    return registry


def _warn_problems(registry: Registry) -> None:
    _warn_selection(registry)
    for problem in registry.problems:
        stderr.print(f"[yellow]warning:[/] plugin not loaded: {markup(problem)}", highlight=False)


def _warn_selection(registry: Registry) -> None:
    """Names in ARENA_LOAD_PLUGINS that match no installed package (which would load nothing, silently)."""
    for warning in registry.warnings:
        _warn(warning)


def _warn(message: str) -> None:
    """A one-line warning on standard error (a skipped row, an unreadable file)."""
    stderr.print(f"[yellow]warning:[/] {markup(message)}", highlight=False, soft_wrap=True)


def _store(db_url: str | None, writes: bool = True):
    """The results database; ``writes=False`` for commands that only read it, which can still
    read a damaged database (with a warning) that writing commands refuse."""
    from .config import database_url
    from .store import open_store

    return open_store(database_url(db_url), writes=writes, warn=_warn)


def _split(values: tuple[str, ...]) -> list[str]:
    """Repeatable options that also accept comma-separated lists."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _parse_eps(text: str | None) -> list[float] | None:
    if text is None:
        return None
    values = []
    for item in text.split(","):
        item = item.strip()
        try:
            values.append(float(item))
        except ValueError:
            raise InvalidInputError(f"--eps {text!r}: {item!r} is not a number (use e.g. --eps 0.1,0.2)") from None
    if not values:
        raise InvalidInputError("--eps needs at least one value")
    return values


def _parse_params(values: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    params: dict[str, dict[str, Any]] = {}
    for item in values:
        name_key, sep, raw = item.partition("=")
        name, dot, key = name_key.partition(".")
        if not sep or not dot or not name or not key:
            raise InvalidInputError(f"--param {item!r}: use PLUGIN.NAME=VALUE, e.g. -p advtrain.alpha=0.3")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        params.setdefault(name.strip(), {})[key.strip()] = value
    return params


_FLAGS = {"attack": "-a", "defense": "-d", "generator": "-g"}


def _check_params(registry: Registry, params: dict[str, dict[str, Any]], run: dict[str, list[str]]) -> None:
    """Refuse, before any work, a ``-p`` that names no plugin of this run, or a value its plugin's
    bounds refuse (the values the dataset decides are checked once it is loaded)."""
    in_run = {}
    for kind, names in run.items():
        for info in registry.resolve(kind, names):
            in_run.setdefault(info.name, info)
    for name, values in params.items():
        if name not in in_run:
            raise InvalidInputError(_not_in_run(registry, name, next(iter(values)), sorted(in_run)))
    for name, values in params.items():
        in_run[name].create(values)


def _not_in_run(registry: Registry, name: str, key: str, in_run: list[str]) -> str:
    """Why ``-p name.key=...`` names no plugin of this run, and what the user may have meant."""
    where = f"-p {name}.{key}"
    listing = f"this run's plugins: {', '.join(in_run)}"
    for kind, flag in _FLAGS.items():
        if name in registry.plugins[kind]:
            return f"{where}: {kind} {name!r} is not part of this run ({listing}): add {flag} {name}, or drop the -p"
    if name in registry.plugins["dataset"]:
        return f"{where}: {name!r} is a dataset; -p sets hyperparameters of this run's plugins ({listing})"
    installed = sorted({n for kind in _FLAGS for n in registry.plugins[kind]})
    close = difflib.get_close_matches(name, in_run, n=1, cutoff=0.5) or \
        difflib.get_close_matches(name, installed, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{where}: no attack, defense or generator is named {name!r}{hint} ({listing}){registry.selection_hint()}"


@cli.command()
@click.option("--attack", "-a", "attacks", multiple=True, metavar="NAME", help="Attack(s) to run; 'all' for every one.")
@click.option("--defense", "-d", "defenses", multiple=True, metavar="NAME", help="Defense(s) to attack; 'all' for every one.")
@click.option("--generator", "-g", "generators", multiple=True, metavar="NAME",
              help="Generator(s) to train and score (the generative track); 'all' for every one.")
@click.option("--samples", type=int, default=1000, show_default=True, help="Samples drawn from each generator.")
@click.option("--dataset", default="digits", show_default=True, help="Dataset plugin.")
@click.option("--norm", type=click.Choice(["linf", "l2"]), default=None, help="Threat model norm (default: the dataset's).")
@click.option("--eps", "eps_text", default=None, metavar="E[,E2..]", help="Perturbation budget(s) (default: the dataset's).")
@click.option("--targeted", is_flag=True, help="Targeted attacks: the host picks a seeded target class per sample.")
@click.option("--n", type=int, default=None, help="Number of test points (default: the whole test split).")
@click.option("--seed", type=int, default=None, help="Seed for training, targets and attacks (default 0).")
@click.option("--seeds", "seeds_text", default=None, metavar="S1,S2[,..]",
              help="Several seeds: train and evaluate every model once per seed (e.g. --seeds 0,1,2).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--batch-size", type=int, default=256, show_default=True, help="Attack and sampling batch size.")
@click.option("--queries", "query_budget", type=int, default=5000, show_default=True,
              help="Query budget per sample for score- and label-query attacks.")
@click.option("--param", "-p", "param_items", multiple=True, metavar="PLUGIN.NAME=VALUE",
              help="Set a plugin hyperparameter, e.g. -p advtrain.alpha=0.3 (repeatable).")
@click.option("--fast", is_flag=True,
              help="Fast path for the attack's passes: torch.compile, bfloat16 autocast, TF32 on CUDA.")
@click.option("--force", is_flag=True,
              help="Recompute even when an identical result is stored; the new run supersedes it.")
@click.option("--deterministic", is_flag=True,
              help="Seed everything and use torch's deterministic algorithms (identical reruns).")
@click.option("--timeout", type=float, default=None, metavar="SECONDS",
              help="Give up on an attack that runs longer than this (the pairing is marked errored).")
@click.option("--check", "run_checks", is_flag=True,
              help="Also run the costlier integrity checks of `arena check` on each new result.")
@click.option("--evaluation", type=click.Choice(["both", "adaptive", "plain"]), default="both", show_default=True,
              help="For models with non-differentiable transforms or randomness: the adaptive evaluation "
              "(BPDA, EOT; ranked), the plain one (model gradients, one draw), or both.")
@click.option("--eot-samples", type=int, default=DEFAULT_EOT_SAMPLES, show_default=True,
              help="Adaptive evaluation of a randomized model: gradients averaged per attack gradient (EOT).")
@click.option("--decision-draws", type=int, default=DEFAULT_DECISION_DRAWS, show_default=True,
              help="Adaptive evaluation of a randomized model: draws per prediction; correct only if all are.")
@db_option
def run(attacks, defenses, generators, samples, dataset, norm, eps_text, targeted, n, seed, seeds_text, device,
        batch_size, query_budget, param_items, fast, force, deterministic, timeout, run_checks, evaluation, eot_samples,
        decision_draws, db_url) -> None:
    """Evaluate attacks against defenses, or score generators, and store the results."""
    from .checks import check_run
    from .config import home
    from .progress import Reporter
    from .runner import Runner, Settings, resolve_device
    from .threat import ThreatModel

    attack_names, defense_names = _split(attacks), _split(defenses)
    generator_names = _split(generators)
    if (not attack_names or not defense_names) and (attack_names or defense_names or not generator_names):
        raise InvalidInputError("nothing to run: pass --attack and --defense (e.g. arena run --attack fgsm --defense "
                                "advtrain), or --generator (e.g. arena run --generator vae)")
    params = _parse_params(param_items)
    seeds = _parse_seeds(seed, seeds_text)
    if timeout is not None and not timeout > 0:
        raise InvalidInputError(f"--timeout {timeout:g} must be above 0 seconds")
    registry = _registry()
    _warn_problems(registry)
    _check_params(registry, params, {"attack": attack_names, "defense": defense_names, "generator": generator_names})
    if not attack_names:
        broken = False
        for seed in seeds:
            _make_deterministic(deterministic, seed)
            broken |= _run_generators(registry, generator_names, dataset, samples, seed, device, batch_size, params,
                                      force, db_url)
        if broken:
            sys.exit(1)
        return
    eps_values = _parse_eps(eps_text)
    data_plugin = registry.get("dataset", dataset).cls
    default = data_plugin.default_threat
    chosen_norm = norm or default.norm
    if eps_values is None:
        if chosen_norm != default.norm:
            raise InvalidInputError(f"--norm {chosen_norm} needs --eps: {dataset}'s default eps is for {default.norm}")
        eps_values = [default.eps]
    threats = [ThreatModel(chosen_norm, eps, targeted) for eps in eps_values]
    torch_device = resolve_device(device)
    store = _store(db_url)

    with Reporter(stderr) as reporter:
        runner = Runner(store, registry, home(), torch_device, reporter, force=force)
        outcomes = []
        for seed in seeds:  # the whole pipeline once per seed: every model trains once per seed
            _make_deterministic(deterministic, seed)
            outcomes += runner.robustness(
                dataset, attack_names, defense_names, threats,
                Settings(seed=seed, n=n, batch_size=batch_size, query_budget=query_budget, timeout=timeout,
                         fast=fast, evaluation=evaluation, eot_samples=eot_samples, decision_draws=decision_draws),
                params,
            )
        if run_checks:
            for outcome in outcomes:
                if outcome.ok and not outcome.reused:
                    check_run(runner, store.get_run(outcome.run.id))
            outcomes = [replace(o, run=store.get_run(o.run.id)) for o in outcomes]
    stdout.print(_summary(outcomes))
    for outcome in (o for o in outcomes if o.ok and o.run.flags):
        _print_flags(outcome)
    failed = [o for o in outcomes if not o.ok]
    for outcome in failed:
        first = (outcome.run.error or "").splitlines()[0]
        stderr.print(f"[red]{outcome.run.status}:[/] {markup(outcome.attack)} vs {markup(outcome.defense)} "
                     f"({markup(outcome.threat)}): {markup(first)} (details: arena show {outcome.run.id})",
                     highlight=False)
    broken = False
    if generator_names:
        for seed in seeds:
            _make_deterministic(deterministic, seed)
            broken |= _run_generators(registry, generator_names, dataset, samples, seed, device, batch_size, params,
                                      force, db_url)
    if failed or broken:
        sys.exit(1)


def _parse_seeds(seed: int | None, text: str | None) -> list[int]:
    """The seeds of a run: ``--seed S`` (default 0) or ``--seeds S1,S2,...``, never both."""
    if text is None:
        return [0 if seed is None else seed]
    if seed is not None:
        raise InvalidInputError("--seed and --seeds were both given: use --seed S for one seed or --seeds S1,S2,.. "
                                "for several")
    seeds = []
    for item in text.split(","):
        item = item.strip()
        try:
            value = int(item)
        except ValueError:
            raise InvalidInputError(f"--seeds {text!r}: {item!r} is not a whole number (use e.g. --seeds 0,1,2)") from None
        if value in seeds:
            raise InvalidInputError(f"--seeds {text!r}: seed {value} is listed twice")
        seeds.append(value)
    return seeds


def _make_deterministic(deterministic: bool, seed: int) -> None:
    if deterministic:
        from .runner import make_deterministic

        make_deterministic(seed)


#: How `arena run` introduces a result's flags of each severity: a warning marks the result suspect
#: ("flagged", as the leaderboard says), an info flag only says how it was obtained.
_SEVERITY_WORDS = {"warning": ("flagged", "yellow"), "info": ("note", "cyan")}


def _print_flags(outcome) -> None:
    """One line per severity of the outcome's flags: ``flagged:`` for warnings, ``note:`` for info."""
    for severity, (word, colour) in _SEVERITY_WORDS.items():
        codes = [f.get("code", "") for f in outcome.run.flags if f.get("severity", "warning") == severity]
        if codes:
            stderr.print(f"[{colour}]{word}:[/] {markup(outcome.attack)} vs {markup(outcome.defense)} "
                         f"({markup(outcome.threat)}): {markup(', '.join(codes))} "
                         f"(details: arena show {outcome.run.id})", highlight=False)


def _run_generators(registry, names, dataset, samples, seed, device, batch_size, params, force, db_url) -> bool:
    """The generative track of `arena run`: train or load each generator, score it, store it;
    whether any of them failed."""
    from .config import home
    from .generation import GenerativeSettings, GenerativeTrack
    from .generative_report import run_summary
    from .progress import Reporter
    from .runner import Runner, resolve_device

    torch_device = resolve_device(device)
    store = _store(db_url)
    with Reporter(stderr) as reporter:
        runner = Runner(store, registry, home(), torch_device, reporter, force=force)
        outcomes = GenerativeTrack(runner).run(
            dataset, names, GenerativeSettings(seed=seed, samples=samples, batch_size=batch_size), params
        )
    stdout.print(run_summary(outcomes))
    broken = [o for o in outcomes if not o.ok]
    for outcome in broken:
        first = (outcome.run.error or "").splitlines()[0]
        stderr.print(f"[red]{outcome.run.status}:[/] {markup(outcome.generator)}: {markup(first)} "
                     f"(details: arena show {outcome.run.id})", highlight=False)
    return bool(broken)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _threat_label(norm: str, eps: float, targeted: bool) -> str:
    return f"{norm} {eps:g}" + (" T" if targeted else "")


def _evaluation_label(evaluation: dict[str, Any] | None) -> str:
    """``plain``, or what the adaptive evaluation did: ``bpda``, ``eot``, ``bpda+eot``."""
    chosen = Evaluation.from_dict(evaluation)
    if not chosen.adaptive:
        return "plain"
    return "+".join(["bpda"] * chosen.bpda + ["eot"] * (chosen.eot_samples > 1 or chosen.decision_draws > 1))


def _summary(outcomes) -> Table:
    table = Table(title="Results", title_justify="left", header_style="bold", box=box.SIMPLE_HEAD,
                  pad_edge=False, collapse_padding=True)
    # The evaluation column only when some pairing needed an adaptive one: keeps the table narrow otherwise.
    adaptive = any(outcome.evaluation.adaptive for outcome in outcomes)
    seeded = len({outcome.run.seed for outcome in outcomes}) > 1  # a seed column for --seeds
    names = ["run", "attack", "defense", *["seed"] * seeded, "threat", *["eval"] * adaptive, "clean", "robust",
             "success", "size", "attack time", "training", ""]
    for name in names:
        table.add_column(name, justify="left" if name in ("attack", "defense", "threat", "eval", "") else "right",
                         no_wrap=True)
    for outcome in outcomes:
        run, result = outcome.run, outcome.run.robustness
        size = result.mean_linf if result.norm == "linf" else result.mean_l2
        note = cell(run.status, style="red") if not outcome.ok else cell("reused" if outcome.reused else "")
        table.add_row(
            str(run.id), cell(result.attack), cell(result.defense), *[str(run.seed)] * seeded,
            cell(_threat_label(result.norm, result.eps, result.targeted)),
            *[_evaluation_label(result.evaluation)] * adaptive, _pct(result.clean_accuracy),
            _pct(result.robust_accuracy), _pct(result.attack_success_rate),
            "—" if size is None else f"{size:.3f}", _seconds(outcome.attack_seconds), _training(outcome), note,
        )
    return table


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}s"


def _training(outcome) -> str:
    """The defense model's training time in this command, or ``cached`` when it was loaded."""
    if outcome.model_cached:
        return "cached"
    return _seconds(outcome.train_seconds)


@cli.command()
@click.option("--dataset", default=None, help="Only this dataset.")
@click.option("--norm", type=click.Choice(["linf", "l2"]), default=None, help="Only this threat-model norm.")
@click.option("--eps", "eps_text", default=None, metavar="E[,E2..]", help="Only these perturbation budgets.")
@click.option("--track", type=click.Choice(["robustness", "attacks", "generative"]), default=None,
              help="Only this track's tables (default: all).")
# Flagged results are always counted now (marked ⚑); the option stays so that scripts keep working.
@click.option("--include-flagged", is_flag=True, hidden=True)
@click.option("--format", "fmt", type=click.Choice(["table", "md", "csv", "json", "html"]), default="table",
              show_default=True)
@click.option("--output", "-o", type=click.Path(), default=None,
              help="Write to this file instead of standard output; with --format html, a folder for index.html.")
@db_option
def leaderboard(dataset, norm, eps_text, track, include_flagged, fmt, output, db_url) -> None:
    """Show the leaderboard: defenses by worst-case robust accuracy, attacks by success rate, arena
    ratings, and generators by sample quality and likelihood."""
    from arena_leaderboard import ROBUSTNESS_TRACKS, Filters, generative_views, robustness_views

    from .results import generative_rows, robustness_rows

    filters = Filters(dataset, norm, tuple(_parse_eps(eps_text) or ()), track)
    if fmt == "html" and not output:
        raise InvalidInputError("--format html writes a folder: add -o DIR (e.g. -o site/)")
    store = _store(db_url, writes=False)
    rows = []
    if filters.wants(ROBUSTNESS_TRACKS):
        stored = robustness_rows(store, _registry(), dataset=dataset, norm=norm, eps=filters.eps)
        rows = [row for row in stored if filters.matches(row)]
    outcomes = store.sample_outcomes([row["run_id"] for row in rows])
    rows = [row for row in rows if row["run_id"] in outcomes]  # the store warned of any it could not read
    # The terminal and the page leave the export-only views (runs and provenance) out: not built.
    board_views = robustness_views(rows, outcomes, examples=fmt == "html", exports=fmt not in ("table", "html"))
    board_views += generative_views(generative_rows(store, _registry(), dataset=dataset))
    board_views = filters.select(board_views)
    if fmt == "html":
        _write_page(board_views, output, f"{len(rows)} stored results")
    elif fmt == "table":
        _print_tables(board_views, output)
    else:
        from arena_leaderboard import render_csv, render_json, render_markdown

        _emit({"md": render_markdown, "csv": render_csv, "json": render_json}[fmt](board_views), output)


@cli.command()
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

    from .results import robustness_rows

    store = _store(db_url, writes=False)
    rows = robustness_rows(store, _registry(), dataset=dataset, norm=norm, eps=(eps,) if eps is not None else ())
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
        f"{_count(len(result.seeds), 'seed')} ({seeds}), {_count(result.points, 'test point')}: "
        f"{_count(result.pairs, 'pair')}",
        f"{a}: {_pct(result.first_value)}   {b}: {_pct(result.second_value)}",
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
    page.write_text(render_html(board_views, summary=summary, warn=_warn), encoding="utf-8")
    stdout.print(str(page), highlight=False, soft_wrap=True, markup=False)


def _emit(text: str, output: str | None) -> None:
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        click.echo(text, nl=not text.endswith("\n"))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Every stored result as a flat JSON list.")
@click.option("--history", is_flag=True, help="Include superseded runs (replaced by --force or by changed code).")
@click.option("--all", "include_all", is_flag=True, help="Include errored, refused and superseded runs.")
@click.option("--dataset", default=None, help="Only this dataset.")
@db_option
def results(as_json, history, include_all, dataset, db_url) -> None:
    """List stored results: the current run of each result (see --history)."""
    from .results import generative_rows, robustness_rows

    store, registry = _store(db_url, writes=False), _registry()
    failed, history = include_all or as_json, history or include_all
    rows = robustness_rows(store, registry, dataset=dataset, include_failed=failed, history=history)
    generated = generative_rows(store, registry, dataset=dataset, include_failed=failed, history=history)
    if as_json:
        from arena_leaderboard.provenance import (
            generative_command,
            install_command,
            robustness_command,
            third_party_packages,
        )

        for row in rows:  # failed runs too: the command retries them
            row["command"] = robustness_command(row)
        for row in generated:
            row["command"] = generative_command(row)
        for row in rows + generated:
            row["install"] = install_command(third_party_packages(row))
        _echo_json_list(sorted(rows + generated, key=lambda row: row["run_id"]))
        return
    if generated:
        from .generative_report import results_table  # imports the metrics (scikit-learn): only when needed

        stdout.print(results_table(generated))
        if not rows:
            return
    table = Table(title="Stored results", title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)
    superseded = any(row["superseded_by"] is not None for row in rows)  # listed with --history
    for name in ["run", "status", "dataset", "attack", "defense", "threat", "eval", "n", "clean", "robust", "success",
                 *["superseded by"] * superseded]:
        table.add_column(name)
    for row in rows:
        threat = _threat_label(row["norm"], row["eps"], row["targeted"])
        table.add_row(*map(cell, [
            row["run_id"], row["status"], row["dataset"], row["attack_label"], row["defense_label"], threat,
            _evaluation_label(row["evaluation"]), row["n"], _pct(row["clean_accuracy"]), _pct(row["robust_accuracy"]),
            _pct(row["attack_success_rate"]), *[row["superseded_by"] or ""] * superseded,
        ]))
    stdout.print(table)


def _echo_json_list(records: list[dict[str, Any]], batch: int = 200) -> None:
    """``json.dumps(records, indent=2)``, written a batch of records at a time: the same text
    without holding all of it (tens of megabytes for thousands of results) at once."""
    if not records:
        click.echo("[]")
        return
    click.echo("[")
    for start in range(0, len(records), batch):
        chunk = records[start : start + batch]
        # Strings in JSON escape their newlines, so every newline here starts a line to indent.
        text = ",\n".join("  " + json.dumps(record, indent=2).replace("\n", "\n  ") for record in chunk)
        click.echo(text + ("," if start + batch < len(records) else ""))
    click.echo("]")


@cli.command()
@click.argument("run_id", type=int)
@db_option
def show(run_id, db_url) -> None:
    """Show one run in detail."""
    from .results import result_row

    store = _store(db_url, writes=False)
    run = store.get_run(run_id)
    if run is None:
        raise InvalidInputError(f"no run {run_id} in the database: list them with `arena results`")
    row = result_row(run, _registry())
    table = Table(show_header=False, title=f"Run {run_id}", title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    skip = {"provenance", "error"}
    for key, value in row.items():
        if key in skip:
            continue
        if isinstance(value, float):
            value = f"{value:.6g}"
        elif isinstance(value, (dict, list)):
            value = json.dumps(value)
        table.add_row(cell(key), cell("—" if value is None else value))
    stdout.print(table)
    if run.superseded_by is not None:
        stdout.print(f"[yellow]Superseded by run {run.superseded_by}[/]: kept as history, not ranked and never "
                     "reused.", highlight=False)
    replaced = store.superseding(run.id)
    if replaced:
        stdout.print(f"Supersedes run{'s' * (len(replaced) > 1)} {', '.join(map(str, replaced))} "
                     "(see arena results --history).", highlight=False)
    provenance = Table(show_header=False, title="Provenance", title_justify="left")
    provenance.add_column(style="bold")
    provenance.add_column()
    for key, value in (run.provenance or {}).items():
        provenance.add_row(cell(key), cell(json.dumps(value) if isinstance(value, (dict, list)) else value))
    stdout.print(provenance)
    for role, path in (run.artifacts or {}).items():
        if str(path).endswith(".png"):
            stdout.print(f"Image ({terminal_safe(role)}): {terminal_safe(path)}", highlight=False, soft_wrap=True,
                         markup=False)
    if run.robustness is not None:
        _show_evaluations(store, run)
        _show_training(row["defense_key"])
    if run.samples:
        attacked = [s for s in run.samples if s.clean_correct]
        fooled = [s for s in attacked if s.success]
        stdout.print(f"Samples: {len(run.samples)} evaluated, {len(attacked)} clean-correct and attacked, "
                     f"{len(fooled)} fooled.")
    _picture_examples(run)
    if run.error:
        stdout.print(f"[red]{markup(run.status)}[/]:", highlight=False)
        stdout.print(terminal_safe(run.error, newlines=True), highlight=False, markup=False)


def _show_evaluations(store, run) -> None:
    """The pairing's results under each evaluation (adaptive and plain), when there are several."""
    from .results import evaluations_of_pairing

    if run.superseded_by is not None:  # history: its successor shows the pairing as ranked now
        return
    runs = evaluations_of_pairing(store, run)
    if len(runs) < 2 and not Evaluation.from_dict(run.robustness.evaluation).adaptive:
        return
    table = Table(title="Evaluations of this pairing", title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)
    for name in ["run", "evaluation", "clean", "robust", "success", "flags", "ranked"]:
        table.add_column(name)
    ranked = max(runs, key=lambda r: (Evaluation.from_dict(r.robustness.evaluation).adaptive, r.id))
    for other in sorted(runs, key=lambda r: r.id):
        result = other.robustness
        table.add_row(*map(cell, [
            other.id, Evaluation.from_dict(result.evaluation).describe(), _pct(result.clean_accuracy),
            _pct(result.robust_accuracy), _pct(result.attack_success_rate),
            ", ".join(f["code"] for f in other.flags or []), "yes" if other.id == ranked.id else "",
        ]))
    stdout.print(table)


def _show_training(defense_key: str) -> None:
    """The defense model's training history, from the record the model cache keeps beside it."""
    from .cache import ModelCache
    from .config import home
    from .progress import quiet

    record = ModelCache(home() / "models", quiet()).record(defense_key)
    history = (record or {}).get("history") or []
    if not history:
        return
    seconds = record.get("train_seconds")
    title = "Training" + (f" ({seconds:.1f} s)" if isinstance(seconds, (int, float)) else "")
    table = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)
    columns = list(dict.fromkeys(key for epoch in history for key in epoch))
    for name in columns:
        table.add_column(cell(name), justify="right")
    for epoch in history:
        table.add_row(*(cell(_history_cell(name, epoch.get(name))) for name in columns))
    stdout.print(table)


def _history_cell(name: str, value: Any) -> str:
    if value is None:
        return "—"
    if "accuracy" in name:
        return _pct(value)
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _picture_examples(run) -> None:
    """Clean / adversarial / amplified perturbation of the examples the run kept, as a PNG."""
    examples = (run.artifacts or {}).get("examples")
    if not examples or run.robustness is None:
        return
    from arena_leaderboard.figures import save_examples_png

    from .artifacts import UnreadableArtifact

    result = run.robustness
    title = f"{result.attack} vs {result.defense} · {result.norm} eps={result.eps:g}"
    try:
        picture = save_examples_png(examples, title)
    except UnreadableArtifact as exc:
        _warn(f"run {run.id}: {exc}; no picture of its examples (`arena run ... --force` writes it again)")
        return
    stdout.print(f"Examples: {terminal_safe(picture)}", highlight=False, soft_wrap=True, markup=False)


@cli.command()
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
    from .checks import check_run
    from .config import home
    from .progress import Reporter
    from .runner import Runner, resolve_device

    store = _store(db_url)
    run = store.get_run(run_id)
    if run is None:
        raise InvalidInputError(f"no run {run_id} in the database: list them with `arena results`")
    with Reporter(stderr) as reporter:
        runner = Runner(store, _registry(), home(), resolve_device(device), reporter)
        found = check_run(runner, run, samples)
    for name in ("unbounded", "convergence"):
        value = found[name]
        if isinstance(value, str):
            stdout.print(f"{name}: {terminal_safe(value)}", highlight=False, markup=False)
        elif name == "unbounded":
            stdout.print(f"unbounded: eps {value['eps']:g} leaves {_pct(value['robust_accuracy'])} robust accuracy "
                         f"(chance {_pct(value['chance'])}) on {found['samples']} samples", highlight=False)
        else:
            stdout.print(f"convergence: {markup(value['parameter'])} {value['steps']} → {2 * value['steps']} "
                         f"changes robust accuracy {_pct(value['robust_accuracy'])} → "
                         f"{_pct(value['robust_accuracy_doubled'])}", highlight=False)
    if found["flags"]:
        for flag in found["flags"]:
            word, colour = _SEVERITY_WORDS.get(flag.get("severity"), _SEVERITY_WORDS["warning"])
            stdout.print(f"[{colour}]{word}[/] {markup(flag['code'])}: {markup(flag['message'])}", highlight=False)
    else:
        stdout.print("no problems found")


@cli.group()
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
    from .artifacts import UnreadableArtifact, check_artifact
    from .config import database_url
    from .errors import StoreError
    from .store import integrity_check, open_store, shown_url, sqlite_path

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
                f"SQLite's integrity_check found {_count(len(found), 'problem')}", found)
    else:
        stdout.print("pages: not checked: SQLite's integrity_check is for SQLite files only", highlight=False)
    try:
        store = open_store(url, writes=False, warn=lambda message: None)  # the checks below say it all
    except StoreError as exc:
        stdout.print(f"rows: not read: {exc}", highlight=False, markup=False, soft_wrap=True)
        problems += 1
    else:
        scan = store.scan()
        read = ", ".join(f"{_count(n, table.replace('_', ' ').removesuffix('s'))}" for table, n in scan.rows.items())
        summary = (f"{read}: every value readable" if not scan.problems else
                   f"{read}: {_count(len(scan.problems), 'row')} with values that cannot be decoded "
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
        _report("files", f"{_count(len(scan.artifacts), 'file')} of stored runs: " +
                ("all readable" if not unreadable else f"{len(unreadable)} missing or unreadable "
                 "(`arena run ... --force` writes a run's files again)"), unreadable)
    if problems:
        stdout.print(f"{_count(problems, 'problem')} found", highlight=False)
        if path is not None:
            stdout.print(f"Stored rows are never rewritten by Arena: restore a backup of {path} (the store keeps "
                         f"{path.name}.schema-REV.bak before each migration), or fix the rows listed with sqlite3.",
                         highlight=False, markup=False, soft_wrap=True)
        sys.exit(1)
    stdout.print("no problems found")


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'s' * (n != 1)}"


def _report(part: str, summary: str, problems: list[str]) -> None:
    stdout.print(f"{part}: {summary}", highlight=False, markup=False, soft_wrap=True)
    for line in problems[:LISTED_PROBLEMS]:
        stdout.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
    if len(problems) > LISTED_PROBLEMS:
        stdout.print(f"  ... and {len(problems) - LISTED_PROBLEMS:,} more", highlight=False)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--verbose", "-v", is_flag=True, help="Also show each plugin's one-line description.")
def plugins(as_json, verbose) -> None:
    """List installed attacks, defenses, generators and datasets, and plugins that failed to load."""
    registry = _registry()
    _warn_selection(registry)
    entries = [info.as_dict() for info in registry.all()]
    problems = [
        {"package": p.package, "version": p.version, "entry_point": p.entry_point, "error": p.error}
        for p in registry.problems
    ]
    if as_json:
        click.echo(json.dumps({"plugins": entries, "problems": problems}, indent=2))
        return
    table = Table(title="Plugins", title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)
    for name in ["kind", "name", "package", "version", "capabilities"] + (["summary"] if verbose else []):
        table.add_column(name, overflow="fold")
    for entry in entries:
        cells = [entry["kind"], entry["name"], entry["package"], entry["version"],
                 _capabilities(entry["kind"], entry["capabilities"])]
        table.add_row(*map(cell, cells + ([entry["summary"]] if verbose else [])))
    stdout.print(table)
    if problems:
        broken = Table(title="Plugins that failed to load", title_justify="left", header_style="bold red")
        for name in ["package", "version", "entry point", "error"]:
            broken.add_column(name, overflow="fold")
        for p in problems:
            broken.add_row(*map(cell, [p["package"], p["version"], p["entry_point"], p["error"]]))
        stdout.print(broken)


def _capabilities(kind: str, caps: dict[str, Any]) -> str:
    if kind == "attack":
        return f"{caps['access']}, {'/'.join(caps['norms'])}, {'/'.join(caps['modes'])}"
    if kind == "defense":
        return "deterministic" if caps.get("deterministic", True) else "randomized"
    if kind == "generator":
        completion = ", completion" if caps.get("completion") else ""
        return f"likelihood: {caps.get('likelihood') or 'none'}{completion}"
    if kind == "dataset":
        threat = caps["default_threat"]
        return (f"{'x'.join(map(str, caps['shape']))}, {caps['classes']} classes, {caps['levels']} levels, "
                f"{threat['norm']} {threat['eps']:g}")
    return ", ".join(f"{k}: {v}" for k, v in caps.items())


def _register_plugin_commands() -> None:
    registry = get_registry()
    if registry.manager is None:
        return
    for impl in registry.manager.hook.register_commands.get_hookimpls():
        try:
            impl.function(**({"cli": cli} if "cli" in impl.argnames else {}))
        except Exception as exc:  # a broken plugin command must not break the CLI
            stderr.print(f"[yellow]warning:[/] plugin {markup(impl.plugin_name)} failed to add commands: {markup(exc)}",
                         highlight=False)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        _register_plugin_commands()
    except ArenaError as exc:
        stderr.print(f"Error: {terminal_safe(exc)}", highlight=False, markup=False)
        sys.exit(1)
    except Exception:
        traceback.print_exc()
        sys.exit(1)
    cli.main(args=argv, prog_name="arena")


if __name__ == "__main__":
    main()
