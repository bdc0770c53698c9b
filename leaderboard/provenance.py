"""The runs behind a leaderboard, with what it takes to reproduce each: a view for the exports.

Every ranked or flagged result gets a row with its run key, the versions and hashes its
provenance recorded, the ``pip install`` line of the third-party plugin packages behind it, and
the ``arena run`` command that recomputes it (every hyperparameter spelled out, so that changed
plugin defaults cannot change the result). The view goes to the
Markdown, CSV and JSON exports; the terminal and the HTML page leave it out.
"""

from __future__ import annotations

import json
import shlex
from typing import Any, Iterable, Mapping

from arena.plugins import DISTRIBUTION

from .render import Column, View

#: Provenance fields copied into each row (see ``arena.store.REQUIRED_PROVENANCE``).
PROVENANCE_FIELDS = ("arena_version", "git_revision", "python", "torch", "cuda", "device",
                     "deterministic_algorithms", "dataset_hash", "checkpoint_sha256")

_COLUMNS = [
    Column("run", "run_id", "int"),
    Column("key", "key"),
    Column("result", "label"),
    Column("arena", "arena_version"),
    Column("git", "git_revision"),
    Column("torch", "torch"),
    Column("device", "device"),
    Column("dataset sha256", "dataset_hash"),
    Column("checkpoint sha256", "checkpoint_sha256"),
    Column("install first", "install"),
    Column("reproduce with", "command"),
]
#: The plugin kinds whose package a row records, in the order their packages are listed.
_KINDS = ("attack", "defense", "generator", "dataset")


def with_package(label: str, package: str | None, version: str | None) -> str:
    """``label (package version)`` for a plugin from a third-party package; ``label`` for
    Arena's own plugins (and rows that recorded no package)."""
    if not package or package == DISTRIBUTION:
        return label
    return f"{label} ({package} {version})" if version else f"{label} ({package})"


def third_party_packages(row: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (package, version) of every third-party plugin behind a result: its attack, defense
    or generator, and its dataset."""
    recorded = (row.get("provenance") or {}).get("plugins") or {}
    found = []
    for kind in _KINDS:
        source = recorded.get(kind) if isinstance(recorded.get(kind), Mapping) else {}
        package = row.get(f"{kind}_package") or source.get("package")
        version = row.get(f"{kind}_version") or source.get("version") or ""
        if isinstance(package, str) and package and package != DISTRIBUTION and (package, version) not in found:
            found.append((package, str(version)))
    return found


def install_command(packages: Iterable[tuple[str, str]]) -> str | None:
    """``pip install package==version ...``, or None when there is nothing to install."""
    requirements = [f"{package}=={version}" if version else package for package, version in packages]
    return shlex.join(["pip", "install", *requirements]) if requirements else None


def _param_options(plugin: str, params: Mapping[str, Any] | None) -> list[str]:
    options = []
    for name, value in sorted((params or {}).items()):
        options += ["-p", f"{plugin}.{name}={json.dumps(value, separators=(',', ':'))}"]
    return options


def _common_options(row: Mapping[str, Any], provenance: Mapping[str, Any]) -> list[str]:
    options = ["--dataset", row["dataset"], "--seed", str(row["seed"])]
    if provenance.get("deterministic_algorithms"):
        options.append("--deterministic")
    return options


def robustness_command(row: Mapping[str, Any]) -> str:
    """The ``arena run`` command that recomputes a robustness result (same run key)."""
    provenance = row.get("provenance") or {}
    evaluation = row.get("evaluation") or {"mode": "plain"}
    args = ["arena", "run", "-a", row["attack"], "-d", row["defense"], *_common_options(row, provenance),
            "--norm", row["norm"], "--eps", repr(float(row["eps"])), "--n", str(row["n"])]
    if row.get("targeted"):
        args.append("--targeted")
    if row.get("query_budget") is not None:
        args += ["--queries", str(row["query_budget"])]
    if provenance.get("batch_size") is not None:
        args += ["--batch-size", str(provenance["batch_size"])]
    if provenance.get("fast"):
        args.append("--fast")
    args += ["--evaluation", evaluation["mode"]]
    if evaluation["mode"] == "adaptive":
        args += ["--eot-samples", str(evaluation["eot_samples"]), "--decision-draws", str(evaluation["decision_draws"])]
    args += _param_options(row["attack"], row.get("attack_params"))
    args += _param_options(row["defense"], row.get("defense_params"))
    return shlex.join(args)


def generative_command(row: Mapping[str, Any]) -> str:
    """The ``arena run`` command that recomputes a generative result (same run key)."""
    provenance = row.get("provenance") or {}
    args = ["arena", "run", "-g", row["generator"], *_common_options(row, provenance),
            "--samples", str(row["samples"])]
    if provenance.get("batch_size") is not None:  # part of the key: it changes the sampling batches
        args += ["--batch-size", str(provenance["batch_size"])]
    args += _param_options(row["generator"], row.get("generator_params"))
    return shlex.join(args)


def _provenance_row(row: Mapping[str, Any], label: str, command: str) -> dict[str, Any]:
    provenance = row.get("provenance") or {}
    record = {"run_id": row["run_id"], "key": row["key"], "label": label, "command": command,
              "install": install_command(third_party_packages(row))}
    record.update({name: provenance.get(name) for name in PROVENANCE_FIELDS})
    record["plugins"] = provenance.get("plugins")
    return record


def _by_dataset(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    datasets: dict[str, list[Mapping[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: r["run_id"]):
        datasets.setdefault(row["dataset"], []).append(row)
    return dict(sorted(datasets.items()))


def robustness_runs_views(rows: Iterable[Mapping[str, Any]]) -> list[View]:
    """Per dataset, the robustness runs behind the rankings (and the flagged ones), oldest first."""
    return [_robustness_runs_view(dataset, runs) for dataset, runs in _by_dataset(rows).items()]


def _robustness_runs_view(dataset: str, rows: list[Mapping[str, Any]]) -> View:
    records = []
    for row in rows:
        target = " targeted" if row.get("targeted") else ""
        attack = with_package(row["attack_label"], row.get("attack_package"), row.get("attack_version"))
        defense = with_package(row["defense_label"], row.get("defense_package"), row.get("defense_version"))
        label = f"{attack} → {defense} ({row['norm']} {row['eps']:g}{target})"
        records.append(_provenance_row(row, label, robustness_command(row)))
    notes = ["Each command recomputes its result under the same run key (models come from the cache or are retrained)."]
    return View(f"Runs and provenance — {dataset}", "runs", {"dataset": dataset}, _columns(rows), records,
                tracks=("robustness", "attacks"), notes=notes + _install_notes(rows), export_only=True)


def _columns(rows: list[Mapping[str, Any]]) -> list[Column]:
    """The provenance columns; "install first" only where a third-party plugin is behind some run."""
    if any(third_party_packages(row) for row in rows):
        return list(_COLUMNS)
    return [column for column in _COLUMNS if column.key != "install"]


def _install_notes(rows: list[Mapping[str, Any]]) -> list[str]:
    """One line that installs every third-party plugin package behind these runs."""
    packages = sorted({package for row in rows for package in third_party_packages(row)})
    command = install_command(packages)
    return [f"Third-party plugins behind these runs; install them before the commands: {command}"] if command else []


def generative_runs_views(rows: Iterable[Mapping[str, Any]]) -> list[View]:
    """Per dataset, the generative runs behind the generator tables, oldest first."""
    return [
        View(f"Generator runs and provenance — {dataset}", "generator-runs", {"dataset": dataset}, _columns(runs),
             [_provenance_row(row, with_package(row["generator_label"], row.get("generator_package"),
                                                row.get("generator_version")), generative_command(row))
              for row in runs],
             tracks=("generative",), notes=_install_notes(runs), export_only=True)
        for dataset, runs in _by_dataset(rows).items()
    ]
