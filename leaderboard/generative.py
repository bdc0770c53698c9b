"""The generative track: one table per dataset and reference classifier, generators ranked by FID.

Sample-quality scores depend on the reference classifier whose features define them, so rows
are grouped by its weights' SHA-256 (and by the number of real images) and never compared
across groups. Likelihoods are shown with their kind: exact, a bound, or none.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from .provenance import generative_runs_views, with_package
from .render import Column, View

COLUMNS = [
    Column("#", "rank", "int"),
    Column("generator", "generator"),
    Column("bits/dim", "bits_per_dim", "number"),
    Column("kind", "likelihood"),
    Column("FID", "fid", "number"),
    Column("95% CI", "fid_interval"),
    Column("KID", "kid", "number"),
    Column("prec.", "precision", "number"),
    Column("recall", "recall", "number"),
    Column("IS", "inception_score", "number"),
]
#: Row fields kept in every entry besides the columns (JSON output carries them).
DETAILS = ("fid_low", "fid_high", "density", "coverage", "likelihoods", "uniform_bits_per_dim", "samples",
           "reference_n", "classifier_sha256", "classifier_accuracy", "train_seconds", "run_id", "seed")


def _latest(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The newest completed run of each generator configuration."""
    latest: dict[tuple[str, int, int], Mapping[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r["run_id"]):
        if row["status"] == "ok":
            latest[(row["generator_label"], row["seed"], row["samples"])] = row
    return list(latest.values())


def _entry(row: Mapping[str, Any]) -> dict[str, Any]:
    interval = None
    if row["fid_low"] is not None and row["fid_high"] is not None:
        interval = f"{row['fid_low']:.3g}–{row['fid_high']:.3g}"
    kind = row["likelihood"] or "none"  # which bounds: in the entry's "likelihoods"
    label = with_package(row["generator_label"], row.get("generator_package"), row.get("generator_version"))
    label += f" seed {row['seed']}" if row["seed"] else ""
    label += f" n={row['samples']}" if row.get("_mixed_n") else ""
    return {
        "generator": label,
        "bits_per_dim": row["bits_per_dim"],
        "likelihood": kind,
        "fid": row["fid"],
        "fid_interval": interval,
        "kid": row["kid"],
        "precision": row["precision"],
        "recall": row["recall"],
        "inception_score": row["inception_score"],
        **{key: row.get(key) for key in DETAILS},
    }


def generative_views(rows: Iterable[Mapping[str, Any]]) -> list[View]:
    """One view per (dataset, reference classifier, real-image count), generators by FID."""
    groups: dict[tuple[str, str, int], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["classifier_sha256"], row["reference_n"]), []).append(row)
    result, shown = [], []
    for (dataset, classifier, reference_n), members in sorted(groups.items()):
        latest = _latest(members)
        if not latest:
            continue
        shown += latest
        mixed = len({row["samples"] for row in latest}) > 1
        entries = [_entry({**row, "_mixed_n": mixed}) for row in latest]
        entries.sort(key=lambda e: (e["fid"] is None, e["fid"] if e["fid"] is not None else 0.0, e["generator"]))
        for rank, entry in enumerate(entries, 1):
            entry["rank"] = rank
        group = {"dataset": dataset, "classifier_sha256": classifier, "reference_n": reference_n}
        title = f"Generators — {dataset} · reference classifier {classifier[:12]}"
        result.append(View(title, "generators", group, list(COLUMNS), entries, tracks=("generative",)))
    result += generative_runs_views(shown)
    return result
