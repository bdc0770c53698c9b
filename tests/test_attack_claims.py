"""The claims of the field, reproduced through the CLI on digits against the `standard` defense."""

from __future__ import annotations

import json

import pytest


def _by_attack(arena, *args):
    result = arena("run", *args)
    assert result.exit_code == 0, result.output + result.stderr
    return {row["attack"]: row for row in arena.json("results", "--json")}


def test_iterative_beats_single_step_and_white_box_beats_transfer_beats_noise(arena):
    rows = _by_attack(arena, "-a", "fgsm,pgd,mifgsm,apgd,transfer,noise", "-d", "standard", "--n", "200",
                      "-p", "apgd.iterations=25")
    robust = {name: row["robust_accuracy"] for name, row in rows.items()}
    assert robust["pgd"] <= robust["fgsm"]  # iterative beats single-step
    assert max(robust["pgd"], robust["mifgsm"], robust["apgd"]) <= robust["transfer"] <= robust["noise"]
    assert robust["noise"] < rows["noise"]["clean_accuracy"] + 1e-9
    assert rows["transfer"]["attack_access"] == "zero-query" and rows["noise"]["forward_passes"] == 0
    # The transfer attack's passes all went through its surrogate, none through the target.
    assert rows["transfer"]["backward_passes"] == 10 * round(rows["transfer"]["clean_accuracy"] * rows["transfer"]["n"])
    assert all(row["provenance"]["attack_seconds"] > 0 for row in rows.values())


def test_unbounded_pgd_fools_everything(arena):
    rows = _by_attack(arena, "-a", "pgd", "-d", "standard", "--eps", "1.0", "-p", "pgd.steps=10")
    assert rows["pgd"]["robust_accuracy"] <= 0.01


@pytest.mark.parametrize("attack, norm, eps", [("square", "linf", "0.2"), ("hopskipjump", "l2", "2.0")])
def test_query_attacks_stay_within_their_budget_and_report_it(arena, db, attack, norm, eps):
    from arena.store import open_store

    rows = _by_attack(arena, "-a", attack, "-d", "standard", "--norm", norm, "--eps", eps, "--queries", "150",
                      "--n", "40")
    row = rows[attack]
    assert row["query_budget"] == 150 and row["attack_access"] in ("score-query", "label-query")
    assert 1 <= row["queries"] <= row["queries_max"] <= 150
    assert row["robust_accuracy"] < row["clean_accuracy"]
    samples = open_store(db).get_run(row["run_id"]).samples
    attacked = [s for s in samples if s.clean_correct]
    assert all(1 <= s.queries <= 150 for s in attacked)
    assert all(s.queries == 0 for s in samples if not s.clean_correct)


def test_targeted_pgd_success_means_the_target_class(arena, db):
    from arena.store import open_store

    rows = _by_attack(arena, "-a", "pgd", "-d", "standard", "--targeted", "--n", "100", "-p", "pgd.steps=10",
                      "-p", "pgd.step_size=0.25")
    samples = open_store(db).get_run(rows["pgd"]["run_id"]).samples
    fooled = [s for s in samples if s.clean_correct and s.adv_pred != s.label]
    assert fooled and all(s.success == (s.adv_pred == s.target) for s in fooled)
    assert sum(s.success for s in samples) >= 0.4 * sum(s.clean_correct for s in samples)  # 48 of 97 measured


def test_fast_path_leaves_robust_accuracy_unchanged(arena):
    # On a CPU the fast path is torch.compile plus bfloat16 autocast (TF32 exists only on CUDA):
    # reduced precision may move a borderline sample, never the result beyond noise.
    args = ("-a", "pgd", "-d", "standard", "-p", "pgd.steps=10", "-p", "pgd.step_size=0.25", "--eps", "0.1")
    plain = _by_attack(arena, *args)["pgd"]
    rows = arena.json("results", "--json")
    result = arena("run", *args, "--fast")
    assert result.exit_code == 0, result.output + result.stderr
    (fast,) = [row for row in arena.json("results", "--json") if row["run_id"] not in {r["run_id"] for r in rows}]
    assert fast["provenance"]["fast"] is True and plain["provenance"]["fast"] is False
    assert plain["robust_accuracy"] < plain["clean_accuracy"] - 0.2
    assert abs(fast["robust_accuracy"] - plain["robust_accuracy"]) <= 0.03
    # Another evaluation, kept apart: it neither replaces the float32 result nor is compared with it.
    assert fast["attack_label"] == plain["attack_label"] + " [fast]"
    boards = arena.json("leaderboard", "--format", "json")
    attacks = next(b for b in boards if b["table"] == "attacks")
    assert {e["attack"] for e in attacks["entries"]} == {plain["attack_label"], fast["attack_label"]}
    assert not [f for r in arena.json("results", "--json") for f in r["flags"] if f["code"] == "eps-non-monotone"]


@pytest.mark.parametrize("held_out", ["cnn", "mlp", "lenet"])
def test_ensemble_transfer_beats_every_single_surrogate_on_a_held_out_architecture(arena, held_out):
    """Liu et al. 2017: targeted examples transfer better from an ensemble of architectures than from
    any one of them. Each architecture is the black box once; the other two are the surrogates."""
    surrogates = [a for a in ("cnn", "mlp", "lenet") if a != held_out]
    steps = ["steps=40", "step_size=0.05"]
    members = json.dumps(surrogates)
    params = ["-p", f"standard.architecture={held_out}", "-p", f"ensemble-transfer.surrogates={members}"]
    params += [arg for step in steps for arg in ("-p", f"ensemble-transfer.{step}")]
    common = ["-d", "standard", "--targeted", "--eps", "0.3"]
    ensemble = _by_attack(arena, "-a", "ensemble-transfer", *common, *params)["ensemble-transfer"]
    singles = {}
    for surrogate in surrogates:
        single = ["-p", f"standard.architecture={held_out}", "-p", f"transfer.surrogate={surrogate}"]
        single += [arg for step in steps for arg in ("-p", f"transfer.{step}")]
        singles[surrogate] = _by_attack(arena, "-a", "transfer", *common, *single, "--force")["transfer"]
    assert ensemble["attack_params"]["fusion"] == "logits"
    for surrogate, row in singles.items():
        assert row["attack_params"]["surrogate"] == surrogate
        assert ensemble["attack_success_rate"] > row["attack_success_rate"], (surrogate, row["attack_success_rate"])
