"""Leaderboard views from stored rows: matrix, curves, ratings, flags, filters and renderers."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from arena_leaderboard import Column, Figure, Filters, View, render_csv, render_json, render_markdown, render_rich
from arena_leaderboard import robustness_views
from arena_leaderboard.html import render_html
from arena_leaderboard.render import heat_colour

from .synthetic_results import POINTS, sweep

SNAPSHOT = Path(__file__).parent / "snapshots" / "leaderboard-80-columns.txt"


def by_table(views, table, eps=None):
    return [v for v in views if v.table == table and (eps is None or v.group.get("eps") == eps)]


@pytest.fixture
def results():
    return sweep()


def test_matrix_holds_every_pairs_robust_accuracy(results):
    rows, outcomes = results
    (matrix,) = by_table(robustness_views(rows, outcomes), "matrix", eps=0.1)
    stored = {(r["defense_label"], r["attack_label"]): r["robust_accuracy"] for r in rows if r["eps"] == 0.1}
    assert [c.key for c in matrix.columns] == ["defense", "attack:fgsm", "attack:noise"]  # strongest attack first
    assert [r["defense"] for r in matrix.rows] == ["advtrain", "standard"]
    for row in matrix.rows:
        for attack in ("fgsm", "noise"):
            assert row[f"attack:{attack}"] == stored[(row["defense"], attack)]
    assert matrix.figure.kind == "heatmap" and matrix.figure.columns == ["attack:fgsm", "attack:noise"]


def test_curves_are_the_per_sample_worst_case_at_each_eps(results):
    rows, outcomes = results
    (curves,) = by_table(robustness_views(rows, outcomes), "curves")
    assert curves.group == {"dataset": "digits", "norm": "linf", "targeted": False}
    assert curves.figure.x == [0.0, 0.1, 0.2]
    for row in curves.rows:
        runs = [r for r in rows if r["defense_label"] == row["defense"]]
        assert row["clean_accuracy"] == runs[0]["clean_accuracy"]
        for eps in (0.1, 0.2):
            robust = np.array([outcomes[r["run_id"]][1] for r in runs if r["eps"] == eps])
            assert row[f"eps:{eps:g}"] == pytest.approx(robust.all(axis=0).mean())
            assert row[f"eps:{eps:g}"] < min(r["robust_accuracy"] for r in runs if r["eps"] == eps)
    # A single eps per threat model draws no curve.
    single_rows, single_outcomes = sweep(eps_values=(0.1,))
    assert not by_table(robustness_views(single_rows, single_outcomes), "curves")


def test_worst_case_and_rating_rank_defenses_alike(results):
    rows, outcomes = results
    views = robustness_views(rows, outcomes)
    for eps in (0.1, 0.2):
        (defenses,) = by_table(views, "defenses", eps)
        (ratings,) = by_table(views, "ratings", eps)
        by_worst_case = [r["defense"] for r in defenses.rows]
        by_rating = [r["player"] for r in ratings.rows if r["side"] == "defense"]
        assert by_worst_case == by_rating == ["advtrain", "standard"]
        assert [r["player"] for r in ratings.rows if r["side"] == "attack"] == ["fgsm", "noise"]
        assert all(r["rating_low"] <= r["rating"] <= r["rating_high"] for r in ratings.rows)


def test_flagged_results_are_counted_and_marked_never_dropped(results):
    rows, outcomes = results
    suspect = next(r for r in rows if r["attack_label"] == "fgsm" and r["defense_label"] == "standard" and r["eps"] == 0.1)
    suspect["flags"] = [{"code": "zero-gradients", "severity": "warning", "message": "input gradients are all zero"}]
    note = next(r for r in rows if r["attack_label"] == "noise" and r["defense_label"] == "advtrain" and r["eps"] == 0.1)
    note["flags"] = [{"code": "randomized", "severity": "info", "message": "evaluated with EOT"}]

    views = robustness_views(rows, outcomes)
    (defenses,) = by_table(views, "defenses", 0.1)
    standard = next(r for r in defenses.rows if r["defense"] == "standard")
    # The flagged result's adversarial examples still count: the worst case is over both attacks.
    assert standard["attacks_faced"] == 2 and standard["suspect"] and standard["flags"] == ["zero-gradients"]
    mine = [r for r in rows if r["defense_label"] == "standard" and r["eps"] == 0.1]
    robust = np.array([outcomes[r["run_id"]][1] for r in mine])
    assert standard["worst_case"] == pytest.approx(robust.all(axis=0).mean())
    assert standard["worst_case"] <= min(r["robust_accuracy"] for r in mine)
    (ratings,) = by_table(views, "ratings", 0.1)
    assert next(r for r in ratings.rows if r["player"] == "fgsm")["matches"] == 2 * POINTS
    (flagged,) = by_table(views, "flagged")  # listed again, with the reason
    assert [(r["run_id"], r["flags"], r["message"]) for r in flagged.rows] == [
        (suspect["run_id"], ["zero-gradients"], "input gradients are all zero")
    ]
    advtrain = next(r for r in defenses.rows if r["defense"] == "advtrain")
    assert advtrain["flags"] == ["randomized"] and not advtrain["suspect"]  # an info flag only informs
    assert any(c.kind == "mark" for c in defenses.columns)
    assert "⚑" in render_markdown([defenses])


def test_filters_pick_rows_views_and_tracks(results):
    rows, outcomes = results
    l2_rows, l2_outcomes = sweep(eps_values=(1.0,), norm="l2", first_id=100)
    views = robustness_views(rows + l2_rows, {**outcomes, **l2_outcomes})
    boards = [v for v in views if v.table != "runs"]  # the provenance table spans the dataset's threat models
    assert {v.group.get("norm") for v in Filters(norm="l2").select(boards)} == {"l2"}
    assert {v.group.get("eps") for v in Filters(eps=(0.2,)).select(boards)} == {0.2, None}  # curves span eps
    assert {v.table for v in Filters(track="attacks").select(views)} == {"attacks", "ratings", "matrix", "runs"}
    assert {v.table for v in Filters(track="robustness").select(views)} == {"defenses", "ratings", "matrix", "curves",
                                                                           "runs"}
    assert Filters(track="generative").select(views) == []
    assert Filters(dataset="mnist5k").select(views) == []
    assert not Filters(eps=(0.1,)).matches(rows[-1]) and Filters(eps=(0.2,)).matches(rows[-1])


def test_a_view_from_another_track_slots_into_every_format(results, tmp_path):
    """Renderers and filters know no particular view: a generative table needs no change to them."""
    generators = View(
        "Generators — digits", "generators", {"dataset": "digits"},
        [Column("generator", "generator"), Column("bits/dim", "bpd", "number"),
         Column("FID", "fid", "number", interval=("fid_low", "fid_high")),
         Column("samples", "grid", "image")],
        [{"generator": "pixelcnn", "bpd": 1.234, "fid": 3.21, "fid_low": 2.9, "fid_high": 3.6, "grid": None}],
        figure=Figure("lines", "generator", ["bpd"], x=[0.0]),
    )
    assert generators.tracks == ("generative",)
    rows, outcomes = results
    views = robustness_views(rows, outcomes) + [generators]
    assert Filters(track="generative", dataset="digits", norm="linf").select(views) == [generators]
    assert "| pixelcnn | 1.23 | 3.21 (2.9–3.6) |" in render_markdown([generators])
    records = list(csv.DictReader(io.StringIO(render_csv(views))))
    assert {"fid_low", "fid_high", "rating_low", "rating_high"} <= set(records[0])
    assert records[-1]["table"] == "generators" and records[-1]["fid_high"] == "3.6"
    payload = json.loads(render_json([generators]))
    assert payload[0]["tracks"] == ["generative"] and payload[0]["entries"][0]["fid_high"] == 3.6
    page = render_html(views)
    assert 'data-track="generative"' in page and "pixelcnn" in page and "3.21 (2.9–3.6)" in page


def test_terminal_tables_match_the_snapshot_at_80_columns(results):
    rows, outcomes = results
    rows[2]["flags"] = [{"code": "zero-gradients", "severity": "warning", "message": "input gradients are all zero"}]
    console = Console(record=True, width=80, color_system="truecolor", file=io.StringIO())
    for table in render_rich(robustness_views(rows, outcomes)):
        console.print(table)
        console.print()
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    if os.environ.get("ARENA_UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(text, encoding="utf-8")
    assert text == SNAPSHOT.read_text(encoding="utf-8"), "run with ARENA_UPDATE_SNAPSHOTS=1 after a deliberate change"


def test_heat_cells_are_coloured_on_one_scale(results):
    rows, outcomes = results
    (matrix,) = by_table(robustness_views(rows, outcomes), "matrix", eps=0.2)
    (rendered,) = render_rich([matrix])
    table = rendered.renderables[1]
    coloured = {table.plain[span.start : span.end].strip(): span.style.bgcolor.triplet
                for span in table.spans if getattr(span.style, "bgcolor", None) is not None}
    values = [row[key] for key in ("attack:fgsm", "attack:noise") for row in matrix.rows]
    assert len(coloured) == len(set(values)) and set(coloured) == {f"{100 * v:.1f}%" for v in values}
    for value in values:
        red, green, blue = heat_colour(value)
        assert coloured[f"{100 * value:.1f}%"] == (red, green, blue)
    assert heat_colour(0.0)[0] > heat_colour(0.0)[1] and heat_colour(1.0)[1] > heat_colour(1.0)[0]


def test_a_view_wider_than_the_terminal_is_split_into_pages():
    attacks = [f"attack-{i:02d}" for i in range(14)]
    columns = [Column("defense", "defense")] + [Column(a, a, "percent", heat=True) for a in attacks]
    rows = [{"defense": f"defense-{d}", **{a: (i + d) / 20 for i, a in enumerate(attacks)}} for d in range(3)]
    rendered = render_rich([View("A wide matrix", "matrix", {}, columns, rows)], width=80)
    console = Console(record=True, width=80, file=io.StringIO())
    for renderable in rendered:
        console.print(renderable)
    text = console.export_text()
    assert len(rendered) >= 2 and text.count("A wide matrix (continued)") == len(rendered) - 1
    assert max(len(line) for line in text.splitlines()) <= 80
    assert all(text.count(attack) == 1 for attack in attacks)
    assert text.count("defense-2") == len(rendered)  # the label column on every page, never cut


def test_a_long_label_wraps_and_is_never_cut():
    label = "ensemble-transfer(surrogates=lenet+mlp+resnet, steps=40, momentum=0.9, note=a very long label)"
    columns = [Column("attack", "attack"), Column("robust", "robust", "percent")]
    rendered = render_rich([View("Attacks", "attacks", {}, columns, [{"attack": label, "robust": 0.5}])], width=60)
    console = Console(record=True, width=60, file=io.StringIO())
    for renderable in rendered:
        console.print(renderable)
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 60 and len(rendered) == 1
    body = lines[lines.index(next(line for line in lines if "───" in line)) + 1 :]
    assert len(body) >= 2 and body[0].rstrip().endswith("50.0%")  # the value on the label's first line
    assert "".join(line.replace("50.0%", "") for line in body).replace(" ", "") == label.replace(" ", "")


def test_results_of_two_checkpoints_of_one_model_are_never_merged(results):
    """One model key trained twice (two workers without a shared model cache): the worst case
    counts only the newest checkpoint's results, not the union of both."""
    import copy

    rows, outcomes = results
    rows = copy.deepcopy(rows)
    at = [r for r in rows if r["eps"] == 0.1 and r["defense_label"] == "standard"]
    fgsm, noise = (next(r for r in at if r["attack_label"] == name) for name in ("fgsm", "noise"))
    (view,) = by_table(robustness_views(rows, outcomes), "defenses", eps=0.1)
    (before,) = [e for e in view.rows if e["defense"] == "standard"]
    assert before["attacks_faced"] == 2
    fgsm["provenance"] = {**fgsm["provenance"], "checkpoint_sha256": "a" * 64}
    noise["provenance"] = {**noise["provenance"], "checkpoint_sha256": "b" * 64}
    newest = max((fgsm, noise), key=lambda r: r["run_id"])
    (view,) = by_table(robustness_views(rows, outcomes), "defenses", eps=0.1)
    (after,) = [e for e in view.rows if e["defense"] == "standard"]
    assert after["attacks_faced"] == 1  # only the newest checkpoint's attack
    assert after["worst_case"] == newest["robust_accuracy"]
