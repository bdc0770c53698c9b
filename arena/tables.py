"""Every terminal table of the ``arena`` commands, in one place (rich, no torch).

The tracks' summaries after ``arena run``, their ``arena results`` tables, and the tables of
``arena show``. Cells that carry plugin text go through :func:`arena.text.cell`.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from rich import box
from rich.table import Table

from .evaluation import Evaluation
from .text import cell


def pct(value: float | None) -> str:
    return "—" if value is None else _unsigned_zero(f"{100 * value:.1f}") + "%"


def number(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else _unsigned_zero(f"{value:.{digits}g}")


def _unsigned_zero(text: str) -> str:
    """A value that rounds to zero is shown without a sign (never ``-0`` or ``-0.0``)."""
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}s"


def threat_label(norm: str, eps: float, targeted: bool) -> str:
    return f"{norm} {eps:g}" + (" T" if targeted else "")


def evaluation_label(evaluation: dict[str, Any] | None) -> str:
    """``plain``, or what the adaptive evaluation did: ``bpda``, ``eot``, ``bpda+eot``."""
    chosen = Evaluation.from_dict(evaluation)
    if not chosen.adaptive:
        return "plain"
    return "+".join(["bpda"] * chosen.bpda + ["eot"] * (chosen.eot_samples > 1 or chosen.decision_draws > 1))


def _table(title: str, **options: Any) -> Table:
    return Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, **options)


def _note(outcome: Any) -> Any:
    return cell(outcome.run.status, style="red") if not outcome.ok else cell("reused" if outcome.reused else "")


# -- robustness -------------------------------------------------------------------------------

def pairing_summary(outcomes: list[Any]) -> Table:
    """What `arena run` prints for the pairings it evaluated."""
    table = _table("Results", pad_edge=False, collapse_padding=True)
    # The evaluation column only when some pairing needed an adaptive one: keeps the table narrow otherwise.
    adaptive = any(outcome.evaluation.adaptive for outcome in outcomes)
    seeded = len({outcome.run.seed for outcome in outcomes}) > 1  # a seed column for --seeds
    names = ["run", "attack", "defense", *["seed"] * seeded, "threat", *["eval"] * adaptive, "clean", "robust",
             "success", "size", "attack time", "training", ""]
    for name in names:
        table.add_column(name, justify="left" if name in ("attack", "defense", "threat", "eval", "") else "right",
                         no_wrap=True)
    from .results import robustness_label

    for outcome in outcomes:
        run, result = outcome.run, outcome.run.robustness
        size = result.mean_linf if result.norm == "linf" else result.mean_l2
        table.add_row(
            str(run.id), cell(robustness_label(run, "attack")), cell(robustness_label(run, "defense")),
            *[str(run.seed)] * seeded,
            cell(threat_label(result.norm, result.eps, result.targeted)),
            *[evaluation_label(result.evaluation)] * adaptive, pct(result.clean_accuracy),
            pct(result.robust_accuracy), pct(result.attack_success_rate),
            "—" if size is None else f"{size:.3f}", seconds(_attack_seconds(run)), _training(outcome), _note(outcome),
        )
    return table


def _attack_seconds(run: Any) -> float | None:
    """The attack's own wall time (without training or judging), where the run recorded it."""
    value = (run.provenance or {}).get("attack_seconds")
    return float(value) if isinstance(value, (int, float)) else None


def _training(outcome: Any) -> str:
    """The defense model's training time in this command, or ``cached`` when it was loaded."""
    if outcome.details.get("model_cached"):
        return "cached"
    return seconds(outcome.details.get("train_seconds"))


def robustness_results(rows: list[dict[str, Any]]) -> Table:
    """What `arena results` lists for robustness runs."""
    table = _table("Stored results")
    superseded = any(row["superseded_by"] is not None for row in rows)  # listed with --history
    for name in ["run", "status", "dataset", "attack", "defense", "threat", "eval", "n", "clean", "robust", "success",
                 *["superseded by"] * superseded]:
        table.add_column(name)
    for row in rows:
        threat = threat_label(row["norm"], row["eps"], row["targeted"])
        table.add_row(*map(cell, [
            row["run_id"], row["status"], row["dataset"], row["attack_label"], row["defense_label"], threat,
            evaluation_label(row["evaluation"]), row["n"], pct(row["clean_accuracy"]), pct(row["robust_accuracy"]),
            pct(row["attack_success_rate"]), *[row["superseded_by"] or ""] * superseded,
        ]))
    return table


def evaluations(runs: list[Any]) -> Table:
    """`arena show`: the pairing's results under each evaluation (adaptive and plain)."""
    table = _table("Evaluations of this pairing")
    for name in ["run", "evaluation", "clean", "robust", "success", "flags", "ranked"]:
        table.add_column(name)
    ranked = max(runs, key=lambda r: (Evaluation.from_dict(r.robustness.evaluation).adaptive, r.id))
    for other in sorted(runs, key=lambda r: r.id):
        result = other.robustness
        table.add_row(*map(cell, [
            other.id, Evaluation.from_dict(result.evaluation).describe(), pct(result.clean_accuracy),
            pct(result.robust_accuracy), pct(result.attack_success_rate),
            ", ".join(f["code"] for f in other.flags or []), "yes" if other.id == ranked.id else "",
        ]))
    return table


def training(record: Mapping[str, Any]) -> Table | None:
    """`arena show`: a defense model's training history, from its model-cache record."""
    history = record.get("history") or []
    if not history:
        return None
    spent = record.get("train_seconds")
    title = "Training" + (f" ({spent:.1f} s)" if isinstance(spent, (int, float)) else "")
    table = _table(title)
    columns = list(dict.fromkeys(key for epoch in history for key in epoch))
    for name in columns:
        table.add_column(cell(name), justify="right")
    for epoch in history:
        table.add_row(*(cell(_history_cell(name, epoch.get(name))) for name in columns))
    return table


def _history_cell(name: str, value: Any) -> str:
    if value is None:
        return "—"
    if "accuracy" in name:
        return pct(value)
    return f"{value:.3g}" if isinstance(value, float) else str(value)


# -- generative -------------------------------------------------------------------------------

def generator_summary(outcomes: list[Any]) -> Table:
    """What `arena run` prints for the generators it scored."""
    table = _table("Generators", pad_edge=False, collapse_padding=True)
    seeded = len({outcome.run.seed for outcome in outcomes}) > 1  # a seed column for --seeds
    for name in ["run", "generator", *["seed"] * seeded, "bits/dim", "FID", "FID test", "coverage", "copies",
                 "prec.", "recall", "IS", "time", ""]:
        table.add_column(name, justify="left" if name in ("generator", "") else "right", no_wrap=True)
    for outcome in outcomes:
        run, result = outcome.run, outcome.run.generative
        table.add_row(
            str(run.id), cell(result.generator), *[str(run.seed)] * seeded, number(result.bits_per_dim),
            number(result.fid), number(result.fid_test), number(result.coverage_test, 2),
            pct(result.memorised_pixels),
            number(result.precision, 2), number(result.recall, 2), number(result.inception_score),
            f"{run.duration_s:.1f}s", _note(outcome),
        )
    return table


def generative_results(rows: list[dict[str, Any]]) -> Table:
    """What `arena results` lists for generative runs."""
    table = _table("Stored generative results", pad_edge=False, collapse_padding=True)
    superseded = any(row.get("superseded_by") is not None for row in rows)  # listed with --history
    for name in ["run", "status", "dataset", "generator", "samples", "bits/dim", "kind", "FID", "IS",
                 *["superseded by"] * superseded]:
        table.add_column(name, no_wrap=name != "generator")
    for row in rows:
        table.add_row(*map(cell, [
            row["run_id"], row["status"], row["dataset"], row["generator_label"], row["samples"],
            number(row["bits_per_dim"]), row["likelihood"] or "none", number(row["fid"]),
            number(row["inception_score"]), *[row.get("superseded_by") or ""] * superseded,
        ]))
    return table


# -- any track --------------------------------------------------------------------------------

def generic_summary(title: str, outcomes: list[Any], metrics: Iterable[str]) -> Table:
    """`arena run`'s summary of a track that stores generic results (a subject and metrics)."""
    names = list(metrics)
    table = _table(title, pad_edge=False, collapse_padding=True)
    for name in ["run", "subject", *names, ""]:
        table.add_column(cell(name), justify="left" if name in ("subject", "") else "right", no_wrap=True)
    for outcome in outcomes:
        values = (outcome.run.result.metrics or {}) if outcome.run.result is not None else {}
        table.add_row(str(outcome.run.id), cell(outcome.label), *(cell(_generic(values.get(n))) for n in names),
                      _note(outcome))
    return table


def generic_results(title: str, rows: list[dict[str, Any]], metrics: Iterable[str]) -> Table:
    """`arena results` for a track that stores generic results."""
    names = list(metrics)
    table = _table(title)
    for name in ["run", "status", "dataset", "subject", *names]:
        table.add_column(cell(name))
    for row in rows:
        values = row.get("metrics") or {}
        table.add_row(*map(cell, [row["run_id"], row["status"], row["dataset"], row.get("subject_label", ""),
                                  *(_generic(values.get(n)) for n in names)]))
    return table


def _generic(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def key_values(title: str, values: Mapping[str, Any], formatted: bool = True) -> Table:
    """`arena show`: two columns, a field and its value (``formatted``: floats to 6 digits and
    missing values as a dash; else as stored, containers as JSON)."""
    table = Table(show_header=False, title=title, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in values.items():
        if not formatted:
            table.add_row(cell(key), cell(json.dumps(value) if isinstance(value, (dict, list)) else value))
            continue
        if isinstance(value, float):
            value = f"{value:.6g}"
        elif isinstance(value, (dict, list)):
            value = json.dumps(value)
        table.add_row(cell(key), cell("—" if value is None else value))
    return table


def plan_table(jobs: list[Any]) -> Table:
    """`arena run --plan`: every job, its key, what it needs and whether it is stored."""
    table = _table(f"Plan: {len(jobs)} jobs, {sum(job.stored for job in jobs)} already stored")
    for name in ["#", "track", "kind", "job", "key", "needs", "stored"]:
        table.add_column(name, no_wrap=name != "job")
    position = {job.key: index for index, job in enumerate(jobs, 1) if job.key}
    for index, job in enumerate(jobs, 1):
        key = (job.key or "after its needs")[:12] + ("" if job.keys_final else " …")
        needs = ", ".join(str(position.get(need, need[:8])) for need in job.needs)
        table.add_row(str(index), cell(job.track), cell(job.kind), cell(job.label), key, needs,
                      "yes" if job.stored else "")
    if not all(job.keys_final for job in jobs):
        table.caption = ("…: the keys of what it stores are decided by a job it needs (e.g. whether a defense needs "
                         "an adaptive evaluation is known once its model is trained); --json gives every key")
        table.caption_justify = "left"
    return table


# -- arena plugins ----------------------------------------------------------------------------

#: How ``arena plugins`` shows a third-party plugin's conformance checks.
CHECK_MARKS = {"passed": "passed", "failed": "FAILED: arena plugins check {name}",
               "not run": "not run: arena plugins check {name}"}


def plugins_table(entries: list[dict[str, Any]], verbose: bool = False) -> Table:
    """The installed plugins; where third-party ones are installed, with the state of their
    conformance checks (built-in plugins are checked by Arena's own tests)."""
    table = _table("Plugins")
    checks = any(not entry["builtin"] for entry in entries)
    for name in ["kind", "name", "package", "version", "capabilities"] + (["checks"] if checks else []) \
            + (["summary"] if verbose else []):
        table.add_column(name, overflow="fold")
    for entry in entries:
        cells = [entry["kind"], entry["name"], entry["package"], entry["version"],
                 _capabilities(entry["kind"], entry["capabilities"])]
        if checks:
            cells.append("" if entry["builtin"] else CHECK_MARKS[entry.get("checks", "not run")].format(
                name=entry["name"]))
        table.add_row(*map(cell, cells + ([entry["summary"]] if verbose else [])))
    return table


def conformance_table(report: list[tuple[Any, list[Any]]]) -> Table:
    """``arena plugins check``: one row per check of each plugin."""
    table = _table("Conformance checks")
    for name in ["plugin", "check", "result", "how to fix"]:
        table.add_column(name, overflow="fold")
    for info, results in report:
        for result in results:
            table.add_row(cell(f"{info.kind} {info.name}"), cell(result.check),
                          "[green]passed[/]" if result.passed else "[red]FAILED[/]", cell(result.message))
    return table


def tracks_table(tracks: list[dict[str, Any]]) -> Table:
    return _listing("Tracks", ["track", "leaderboard --track", "summary"],
                    ([t["name"], ", ".join(t["boards"]), t["summary"]] for t in tracks))


def executors_table(executors: list[dict[str, Any]]) -> Table:
    return _listing("Executors (arena run --executor NAME)", ["executor", "needs", "summary"],
                    ([e["name"], f"pip install 'arena-bench[{e['extra']}]'" if e["extra"] else "", e["summary"]]
                     for e in executors))


def presets_table(presets: list[dict[str, Any]]) -> Table:
    return _listing("Attack presets (arena run -a NAME)", ["preset", "attacks", "summary"],
                    ([p["name"], ", ".join(m["attack"] for m in p["attacks"]), p["summary"]] for p in presets))


def _listing(title: str, names: list[str], rows: Any) -> Table:
    table = _table(title)
    for name in names:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*map(cell, row))
    return table


def problems_table(problems: list[dict[str, Any]]) -> Table:
    broken = Table(title="Plugins that failed to load", title_justify="left", header_style="bold red")
    for name in ["package", "version", "entry point", "error"]:
        broken.add_column(name, overflow="fold")
    for p in problems:
        broken.add_row(*map(cell, [p["package"], p["version"], p["entry_point"], p["error"]]))
    return broken


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
