"""The generative track: generators ranked by FID against the test split, one table per dataset,
reference classifier, real-image count and sample count.

Sample-quality scores depend on the reference classifier whose features define them, and FID
is biased by the number of samples, so rows are grouped by the classifier's model key (its
recipe, dataset and seed; the checkpoint hash for results stored before it was recorded), the
real-image count and the sample count, and never compared across groups. A configuration run
with several seeds is one entry: mean ± sample standard deviation over the seeds. Scores against
the training split are shown beside those against the test split, with the share of samples
that copy a training image; a flagged result (memorised, worse than noise) is listed, marked,
and not ranked. Likelihoods are shown with their kind: exact, a bound, or none.
"""

from __future__ import annotations

import statistics
from typing import Any, Iterable, Mapping

from arena.integrity import is_suspect

from .provenance import generative_runs_views, with_package
from .render import Column, View

#: Scores averaged over seeds (their standard deviation over seeds goes in ``NAME_seed_std``).
AVERAGED = ("bits_per_dim", "bits_per_dim_train", "fid_test", "fid", "kid_test", "kid", "precision_test",
            "recall_test", "density_test", "coverage_test", "precision", "recall", "density", "coverage",
            "memorised", "memorised_pixels", "heldout_memorised", "heldout_memorised_pixels", "test_copies",
            "test_copies_pixels", "inception_score", "noise_fid_test")
#: Row fields of the newest seed kept in every entry (JSON output carries them).
DETAILS = ("fid_low", "fid_high", "fid_test_low", "fid_test_high", "kid_std", "kid_test_std", "likelihoods",
           "uniform_bits_per_dim", "samples", "reference_n", "test_n", "classifier_sha256", "classifier_key",
           "classifier_accuracy", "train_seconds", "run_id", "seed", "batch_size")
#: Generators pictured beside their nearest training images on the page (plus every flagged one).
NEIGHBOUR_ENTRIES = 6


def _columns(seeded: bool, flagged: bool) -> list[Column]:
    spread = (lambda key: f"{key}_seed_std") if seeded else (lambda key: None)  # noqa: E731
    columns = [
        Column("#", "rank", "int"),
        Column("generator", "generator"),
        Column("bits/dim", "bits_per_dim", "number", spread=spread("bits_per_dim")),
        Column("kind", "likelihood"),
        Column("FID test", "fid_test", "number", spread=spread("fid_test")),
        Column("95% CI", "fid_test_interval"),
        Column("FID train", "fid", "number", spread=spread("fid")),
        # One seed: KID's spread over its subsets; several: over the seeds.
        Column("KID test", "kid_test", "number", spread=spread("kid_test") or "kid_test_std"),
        Column("prec.", "precision_test", "number"),
        Column("recall", "recall_test", "number"),
        Column("density", "density_test", "number"),
        Column("coverage", "coverage_test", "number", spread=spread("coverage_test")),
        Column("copies", "memorised_pixels", "percent"),
        Column("IS", "inception_score", "number"),
    ]
    if seeded:
        columns.append(Column("seeds", "seeds", "int"))
    if flagged:
        columns += [Column("flags", "flags"), Column("", "suspect", "mark")]
    return columns


def _latest(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The newest completed run of each generator configuration and seed."""
    latest: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r["run_id"]):
        if row["status"] == "ok":
            latest[(_config(row), row["seed"])] = row
    return list(latest.values())


def _config(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """What identifies a generator configuration apart from its seed."""
    return (row["generator_label"], row.get("generator_package"), row.get("generator_version"), row["samples"],
            row.get("batch_size"))


def _mean_std(values: list[Any]) -> tuple[float | None, float | None]:
    numbers = [float(v) for v in values if isinstance(v, (int, float))]
    if not numbers:
        return None, None
    return statistics.fmean(numbers), statistics.stdev(numbers) if len(numbers) > 1 else None


def _entry(runs: list[Mapping[str, Any]]) -> dict[str, Any]:
    newest = max(runs, key=lambda r: r["run_id"])
    entry: dict[str, Any] = {key: newest.get(key) for key in DETAILS}
    for key in AVERAGED:
        entry[key], entry[f"{key}_seed_std"] = _mean_std([run.get(key) for run in runs])
    label = with_package(newest["generator_label"], newest.get("generator_package"), newest.get("generator_version"))
    seeds = sorted(run["seed"] for run in runs)
    if len(runs) == 1 and newest["seed"]:
        label += f" seed {newest['seed']}"
    low, high = newest.get("fid_test_low"), newest.get("fid_test_high")
    flags = sorted({flag["code"] for run in runs for flag in run.get("flags") or [] if isinstance(flag, dict)})
    entry.update({
        "generator": label,
        "likelihood": newest["likelihood"] or "none",  # which bounds: in the entry's "likelihoods"
        "fid_test_interval": f"{low:.3g}–{high:.3g}" if len(runs) == 1 and low is not None and high is not None
        else None,
        "seeds": len(seeds),
        "seed_list": seeds,
        "runs": sorted(run["run_id"] for run in runs),
        "flags": flags,
        "suspect": any(is_suspect(run.get("flags")) for run in runs),
        "neighbours": (newest.get("artifacts") or {}).get("neighbours"),
        "run": newest["run_id"],
    })
    return entry


def _group_key(row: Mapping[str, Any]) -> tuple[str, str, str, int, int]:
    """Results compare only under one reference classifier (its model key and its weights),
    with as many real images and as many samples."""
    return (row["dataset"], row.get("classifier_key") or "", row["classifier_sha256"], row["reference_n"],
            row["samples"])


def generative_views(rows: Iterable[Mapping[str, Any]], examples: bool = False) -> list[View]:
    """One view per (dataset, reference classifier, real-image count, sample count),
    generators by FID against the test split; with ``examples``, a view of samples beside their
    nearest training images (pictures, for the HTML page)."""
    groups: dict[tuple[str, str, str, int, int], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(_group_key(row), []).append(row)
    result, shown, pictured = [], [], []
    for (dataset, classifier_key, classifier_sha, reference_n, samples), members in sorted(groups.items()):
        classifier = classifier_key or classifier_sha
        latest = _latest(members)
        if not latest:
            continue
        shown += latest
        configs: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
        for row in latest:
            configs.setdefault(_config(row), []).append(row)
        entries = [_entry(runs) for runs in configs.values()]
        if len({config[-1] for config in configs}) > 1:  # batch sizes differ: say which is which
            for entry in entries:
                entry["generator"] += f" bs={entry['batch_size']}"
        ranked = sorted((e for e in entries if not e["suspect"]),
                        key=lambda e: (e["fid_test"] is None, e["fid_test"] or 0.0, e["fid"] or 0.0, e["generator"]))
        flagged = sorted((e for e in entries if e["suspect"]), key=lambda e: e["generator"])
        for rank, entry in enumerate(ranked, 1):
            entry["rank"] = rank
        for entry in flagged:
            entry["rank"] = None
        seeded = any(entry["seeds"] > 1 for entry in entries)
        group = {"dataset": dataset, "classifier_key": classifier_key or None, "classifier_sha256": classifier_sha,
                 "reference_n": reference_n, "samples": samples}
        heldout = next((e["heldout_memorised_pixels"] for e in entries if e["heldout_memorised_pixels"] is not None),
                       None)
        yardstick = f" ({100 * heldout:.0f}% for the held-out test images)" if heldout is not None else ""
        notes = [f"n = {samples} samples per generator, compared with {reference_n} training and the test images "
                 "in the reference classifier's features; ranked by FID against the test split.",
                 "copies: share of samples within half the distance between their nearest training image and "
                 f"its nearest other training image (pixel space; after Alaa et al. 2022){yardstick}."]
        if any(entry["fid_test"] is None for entry in entries):
            notes.append("— against the test split: results stored before those scores were recorded; they rank "
                         "after the others, by FID against the training split.")
        notes.append("KID: mean ± standard deviation over 100 subsets of the samples and the test images."
                     if not seeded else
                     "Several seeds: mean ± sample standard deviation over the seeds (KID's too).")
        if flagged:
            notes.append("⚑ flagged (memorised: samples copy training images; worse-than-noise): listed, not ranked.")
        title = f"Generators — {dataset} · n={samples} · reference classifier {classifier[:12]}"
        result.append(View(title, "generators", group, _columns(seeded, bool(flagged)), ranked + flagged,
                           tracks=("generative",), notes=notes))
        pictured.append((group, ranked[:NEIGHBOUR_ENTRIES] + flagged))
    if examples:
        result += [_neighbours_view(group, entries) for group, entries in pictured
                   if any(entry["neighbours"] for entry in entries)]
    result += generative_runs_views(shown)
    return result


def _neighbours_view(group: dict[str, Any], entries: list[dict[str, Any]]) -> View:
    columns = [Column("generator", "generator"), Column("FID test", "fid_test", "number"),
               Column("copies", "memorised_pixels", "percent"),
               Column("samples beside their nearest training images", "neighbours", "image")]
    rows = [{key: entry[key] for key in ("generator", "fid_test", "memorised_pixels", "neighbours", "run")}
            for entry in entries if entry["neighbours"]]
    notes = ["Pairs: a sample, then the training image nearest to it in pixel space (newest seed)."]
    return View(f"Samples and their nearest training images — {group['dataset']} · n={group['samples']}",
                "neighbours", group, columns, rows, tracks=("generative",), notes=notes)
