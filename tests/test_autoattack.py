"""`arena run -a autoattack`: AutoAttack's standard version through the CLI, and the leaderboard's
"AutoAttack (standard)" column next to the worst case over all attacks."""

from __future__ import annotations

import numpy as np
import torch
import torchattacks

from arena.judging import predict
from arena.plugins import get_registry
from arena.host import Host
from arena.presets import AUTOATTACK
from arena.store import open_store
from arena_leaderboard.robustness import robustness_boards

from .synthetic_results import result_row

EPS, N = 0.1, 40


def _defense_view(arena, *args):
    views = arena.json("leaderboard", "--format", "json", *args)
    return next(v for v in views if v["table"] == "defenses")


def test_autoattack_runs_the_standard_version_and_the_board_reports_it(arena, db, arena_home):
    result = arena("run", "-a", "autoattack", "-a", "square", "-a", "fgsm", "-d", "standard", "--eps", str(EPS),
                   "--n", str(N), "--queries", "200")
    assert result.exit_code == 0, result.output + result.stderr
    rows = {row["attack_label"]: row for row in arena.json("results", "--json")}
    # The preset's four configurations, whatever --queries says; the plain square keeps --queries.
    assert set(rows) == {"apgd", "apgd-t", "fab", "square(rescale_schedule=False)", "square [200 queries]", "fgsm"}
    assert rows["apgd"]["attack_params"]["loss"] == "ce" and rows["apgd"]["attack_params"]["restarts"] == 1
    assert rows["apgd-t"]["attack_params"]["target_classes"] == 9
    fab = rows["fab"]["attack_params"]
    assert (fab["iterations"], fab["target_classes"], fab["alpha_max"], fab["eta"], fab["beta"]) == (100, 9, 0.1, 1.05, 0.9)
    assert rows["square(rescale_schedule=False)"]["query_budget"] == 5000
    assert rows["square [200 queries]"]["query_budget"] == 200
    assert "square(rescale_schedule=False)" in result.stdout  # the run's own table tells the two apart

    view = _defense_view(arena)
    assert "autoattack" in view["columns"]
    (entry,) = view["entries"]
    # The column is the per-sample worst case over exactly the preset's four runs.
    members = [rows[label]["run_id"] for label in ("apgd", "apgd-t", "fab", "square(rescale_schedule=False)")]
    outcomes = open_store(db).sample_outcomes(members)
    verdict = np.logical_and.reduce([np.asarray(outcomes[run][1], dtype=bool) for run in members])
    assert entry["autoattack"] == verdict.mean() and entry["autoattack_n"] == N
    assert entry["worst_case"] <= entry["autoattack"] < entry["clean_accuracy"] - 0.2
    assert "AutoAttack (standard)" in arena("leaderboard").stdout

    # The same points against torchattacks' attacks at AutoAttack's published settings, chained as
    # AutoAttack chains them: Arena's preset is not weaker, and decides the points alike.
    registry = get_registry()
    host = Host(registry, arena_home)
    data = host.dataset("digits")
    model = host.plugin_model(registry.get("defense", "standard"), {}, data, seed=0).model
    x, y = data.splits.x_test[:N], data.splits.y_test[:N]
    still = (predict(model, x, 512) == y).numpy()
    for attack in (torchattacks.APGD(model, eps=EPS, steps=100, loss="ce", seed=0),
                   torchattacks.APGDT(model, eps=EPS, steps=100, n_classes=10, seed=0),
                   torchattacks.FAB(model, eps=EPS, steps=100, multi_targeted=True, n_classes=10, seed=0),
                   torchattacks.Square(model, eps=EPS, n_queries=5000, resc_schedule=False, seed=0)):
        rows_left = torch.as_tensor(np.flatnonzero(still))
        x_adv = attack(x[rows_left], y[rows_left])
        inside = (x_adv - x[rows_left]).flatten(1).abs().amax(1) <= EPS + 1e-6
        fooled = (predict(model, x_adv, 512) != y[rows_left]) & inside
        still[rows_left[fooled].numpy()] = False
    assert verdict.sum() <= still.sum() + 1
    assert int((verdict != still).sum()) <= 2


def test_the_column_needs_all_four_and_preset_hyperparameters_are_fixed(arena):
    result = arena("run", "-a", "apgd", "-a", "fab", "-d", "standard", "--eps", str(EPS), "--n", "20")
    assert result.exit_code == 0, result.output + result.stderr
    view = _defense_view(arena)
    assert "autoattack" not in view["columns"] and view["entries"][0]["autoattack"] is None

    refused = arena("run", "-a", "autoattack", "-d", "standard", "-p", "apgd.loss=dlr", "--n", "20")
    assert refused.exit_code == 1
    message = refused.stderr.strip()
    assert len(message.splitlines()) == 1 and "-a autoattack" in message and "add -a apgd" in message
    # Named on its own too, apgd runs with the -p beside the preset's APGD-CE.
    plan = arena.json("run", "-a", "autoattack", "-a", "apgd", "-d", "standard", "-p", "apgd.loss=dlr", "--n", "20",
                      "--plan", "--json")
    evaluated = sorted(job["label"].split(" vs ")[0] for job in plan["jobs"] if job["kind"] == "evaluate")
    assert evaluated == ["apgd", "apgd(loss=dlr)", "apgd-t", "fab", "square(rescale_schedule=False)"]


def test_preset_members_match_only_their_configuration():
    apgd = AUTOATTACK.members[0]
    row = {"attack": "apgd", "attack_package": "arena-bench", "fast": False, "query_budget": None,
           "attack_params": {"loss": "ce", "iterations": 100, "restarts": 1, "rho": 0.75, "momentum": 0.75,
                             "early_stop": True}}
    assert apgd.matches(row)
    assert not apgd.matches({**row, "attack_params": {**row["attack_params"], "loss": "dlr"}})
    assert not apgd.matches({**row, "fast": True})  # reduced precision is another evaluation
    assert not apgd.matches({**row, "attack_package": "someone-elses-apgd"})
    square = AUTOATTACK.members[3]
    stored = {"attack": "square", "attack_package": "arena-bench", "attack_params": {"p_init": 0.8,
              "rescale_schedule": False}, "query_budget": 5000}
    assert square.matches(stored) and not square.matches({**stored, "query_budget": 1000})


def test_the_column_is_the_worst_case_over_the_presets_runs_only():
    index = np.arange(10)
    clean = index < 9
    members = {  # attack, params, query budget, points it leaves robust
        "apgd": ({"loss": "ce", "iterations": 100, "restarts": 1, "rho": 0.75, "momentum": 0.75}, None, index >= 2),
        "apgd-t": ({"iterations": 100, "restarts": 1, "target_classes": 9, "rho": 0.75, "momentum": 0.75}, None,
                   index != 3),
        "fab": ({"iterations": 100, "restarts": 1, "target_classes": 9, "alpha_max": 0.1, "eta": 1.05, "beta": 0.9},
                None, index != 4),
        "square(rescale_schedule=False)": ({"p_init": 0.8, "rescale_schedule": False}, 5000, index != 5),
    }
    rows, outcomes = [], {}
    for run_id, (label, (params, budget, robust)) in enumerate(members.items(), 1):
        rows.append(result_row(run_id, label.split("(")[0], "pgd-at", 0.2, clean, robust, attack_label=label,
                               attack_params=params, query_budget=budget, attack_package="arena-bench"))
        outcomes[run_id] = (index, robust & clean)
    # Another attack fools one more point: the worst case counts it, AutoAttack's column does not.
    rows.append(result_row(5, "hopskipjump", "pgd-at", 0.2, clean, index != 6, query_budget=5000))
    # The same Square at another budget is another configuration: it neither replaces nor joins the preset's.
    rows.append(result_row(6, "square", "pgd-at", 0.2, clean, index != 7,
                           attack_label="square(rescale_schedule=False) [1,000 queries]",
                           attack_params={"p_init": 0.8, "rescale_schedule": False}, query_budget=1000))
    outcomes[5], outcomes[6] = (index, (index != 6) & clean), (index, (index != 7) & clean)
    (board,) = robustness_boards(rows, outcomes)
    (entry,) = board.defenses
    # Robust against all four: points 0-8 minus 0, 1 (apgd), 3, 4, 5 -> 2, 6, 7, 8 of 10.
    assert entry.autoattack == 0.4 and entry.autoattack_n == 10
    assert entry.worst_case == 0.2  # 6 and 7 fall to the other two
    rows[1]["attack_params"] = {**rows[1]["attack_params"], "target_classes": 3}  # no longer AutoAttack's APGD-T
    (board,) = robustness_boards(rows, outcomes)
    assert board.defenses[0].autoattack is None
