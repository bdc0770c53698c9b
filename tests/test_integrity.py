"""Integrity gates: flags on suspicious results, the costly checks, and refusing bad output."""

from __future__ import annotations

import pytest
import torch

from arena.integrity import cross_run_flags, is_suspect, probe_model, run_flags
from arena.models import cnn

from . import broken_plugins
from .broken_plugins import Noisy, Quantized, Softmaxed


@pytest.fixture
def model():
    torch.manual_seed(0)
    return cnn((1, 8, 8), 10).eval().requires_grad_(False)


def test_model_probes(model):
    x, y = torch.rand(64, 1, 8, 8), torch.randint(0, 10, (64,))
    plain = probe_model(model, x, y)
    assert not plain.randomized and not plain.outputs_probabilities and plain.zero_gradient_fraction == 0
    assert plain.flags(white_box=True) == []
    assert probe_model(Softmaxed(model), x, y).outputs_probabilities
    quantized = probe_model(Quantized(model), x, y)
    assert quantized.zero_gradient_fraction == 1.0
    assert [f.code for f in quantized.flags(white_box=True)] == ["zero-gradients"]
    assert quantized.flags(white_box=False) == []  # a query attack does not rely on gradients
    noisy = probe_model(Noisy(model), x, y)
    (flag,) = noisy.flags(white_box=True)
    assert flag.code == "randomized" and flag.severity == "info" and not is_suspect([flag.as_dict()])
    assert not noisy.nondifferentiable and noisy.bpda_zero_gradient_fraction is None


def _row(run_id, attack, eps, robust, access="white-box", n=100, defense="d", steps=None):
    return {"run_id": run_id, "status": "ok", "dataset": "digits", "defense_key": defense, "defense_label": defense,
            "attack_label": attack, "attack_params": {} if steps is None else {"steps": steps},
            "attack_access": access, "norm": "linf", "eps": eps, "targeted": False, "n": n, "robust_accuracy": robust}


def test_eps_sweeps_must_not_rise():
    rows = [_row(1, "a", 0.1, 0.60), _row(2, "a", 0.2, 0.30), _row(3, "a", 0.3, 0.45), _row(4, "a", 0.4, 0.305)]
    flags = cross_run_flags(rows)
    assert set(flags) == {3}  # 0.305 is within one sample of 0.30
    assert flags[3][0].code == "eps-non-monotone" and "0.3" in flags[3][0].message


def test_black_box_beating_an_iterative_white_box_attack_flags_it():
    rows = [_row(1, "fgsm", 0.2, 0.50), _row(2, "square", 0.2, 0.20, access="score-query"),
            _row(3, "pgd", 0.2, 0.205, steps=40), _row(4, "fgsm", 0.2, 0.10, defense="other"),
            _row(5, "noise", 0.2, 0.80, access="zero-query", defense="other"),
            _row(6, "pgd(steps=5)", 0.2, 0.35, steps=5)]
    flags = cross_run_flags(rows)
    # One-step FGSM (1) beaten by Square is expected; PGD within one sample (3) is not beaten.
    assert set(flags) == {6}
    assert flags[6][0].code == "blackbox-beats-whitebox" and "square (score-query)" in flags[6][0].message


def test_unbounded_attack_must_reach_chance():
    assert run_flags("linf", 1.0, (1, 8, 8), 10, robust_accuracy=0.05) == []
    (flag,) = run_flags("linf", 1.0, (1, 8, 8), 10, robust_accuracy=0.4)
    assert flag.code == "unbounded-not-chance"
    assert run_flags("linf", 0.3, (1, 8, 8), 10, robust_accuracy=0.4) == []
    assert run_flags("l2", 8.0, (1, 8, 8), 10, robust_accuracy=0.4)[0].code == "unbounded-not-chance"


def test_broken_defenses_are_flagged_through_the_cli(arena):
    broken_plugins.install()
    result = arena("run", "-a", "fgsm", "-d", "softmaxed,quantized,noisy,standard", "--n", "100")
    assert result.exit_code == 0, result.stderr
    rows = arena.json("results", "--json")
    flags = {(r["defense"], r["evaluation"]["mode"]): {f["code"] for f in r["flags"]} for r in rows}
    assert flags == {
        ("softmaxed", "plain"): {"probabilities-output"},
        ("quantized", "plain"): {"zero-gradients"},  # declares no transform: nothing to take straight through
        ("noisy", "adaptive"): {"randomized", "eot"},
        ("noisy", "plain"): {"randomized", "not-adaptive"},
        ("standard", "plain"): set(),
    }
    assert not is_suspect(next(r["flags"] for r in rows if r["evaluation"]["mode"] == "adaptive"))
    # Warnings are "flagged" (marked suspect), info flags only a "note".
    assert "flagged: fgsm vs quantized (linf eps=0.2 untargeted): zero-gradients" in result.stderr
    assert "note: fgsm vs noisy (linf eps=0.2 untargeted): randomized, eot (details" in result.stderr
    assert "flagged: fgsm vs noisy (linf eps=0.2 untargeted): not-adaptive (details" in result.stderr
    assert "note: fgsm vs standard" not in result.stderr and "flagged: fgsm vs standard" not in result.stderr
    shown = arena("show", str(next(r["run_id"] for r in arena.json("results", "--json") if r["defense"] == "quantized")))
    assert "zero-gradients" in shown.stdout


def test_a_defense_falsely_declared_deterministic_is_flagged(arena):
    broken_plugins.install()
    result = arena("run", "-a", "fgsm", "-d", "noisy-undeclared,noisy", "--n", "50", "--evaluation", "adaptive")
    assert result.exit_code == 0, result.stderr
    flags = {r["defense"]: {f["code"]: f["severity"] for f in r["flags"]} for r in arena.json("results", "--json")}
    # Evaluated with EOT either way; only the false declaration is a warning.
    assert flags["noisy-undeclared"] == {"undeclared-randomness": "warning", "randomized": "info", "eot": "info"}
    assert flags["noisy"] == {"randomized": "info", "eot": "info"}
    assert "flagged: fgsm vs noisy-undeclared (linf eps=0.2 untargeted): undeclared-randomness" in result.stderr
    boards = arena.json("leaderboard", "--format", "json")
    (flagged,) = [b for b in boards if b["table"] == "flagged"]
    assert [e["defense_label"] for e in flagged["entries"]] == ["noisy-undeclared (arena-broken-fixtures 0.1)"]
    assert "deterministic = False" in flagged["entries"][0]["message"]


def test_noise_beating_an_iterative_attack_on_a_masked_defense_is_flagged_and_counted(arena):
    broken_plugins.install()
    # BIM sees zero gradients on the quantized model and cannot move; random corners can.
    result = arena("run", "-a", "bim,fgsm,random-corners", "-d", "quantized", "--n", "100", "--eps", "0.3")
    assert result.exit_code == 0, result.stderr
    rows = {r["attack"]: r for r in arena.json("results", "--json")}
    assert rows["bim"]["attack_success_rate"] < 0.05
    assert rows["random-corners"]["robust_accuracy"] < rows["bim"]["robust_accuracy"]
    assert {f["code"] for f in rows["bim"]["flags"]} == {"zero-gradients", "blackbox-beats-whitebox"}
    # Single-step FGSM beaten by a black-box attack is expected: only its own probe flag.
    assert {f["code"] for f in rows["fgsm"]["flags"]} == {"zero-gradients"}
    assert rows["random-corners"]["flags"] == []
    # The flagged results are listed again, and counted: the defense's worst case includes the
    # random corners' verified examples, and its entry is marked suspect.
    boards = arena.json("leaderboard", "--format", "json")
    (flagged,) = [b for b in boards if b["table"] == "flagged"]
    assert {(e["attack_label"], frozenset(e["flags"])) for e in flagged["entries"]} == {
        ("bim", frozenset({"zero-gradients", "blackbox-beats-whitebox"})), ("fgsm", frozenset({"zero-gradients"}))}
    (defense,) = next(b for b in boards if b["table"] == "defenses")["entries"]
    assert defense["suspect"] and defense["worst_case"] <= rows["random-corners"]["robust_accuracy"]
    attacks = next(b for b in boards if b["table"] == "attacks")
    corners = "random-corners (arena-broken-fixtures 0.1)"  # a plugin from outside Arena names its package
    assert {e["attack"] for e in attacks["entries"]} == {"bim", "fgsm", corners}


def test_check_catches_an_attack_that_has_not_converged(arena):
    broken_plugins.install()
    result = arena("run", "-a", "timid-pgd", "-d", "standard", "--n", "100", "--check")
    assert result.exit_code == 0, result.stderr
    (row,) = arena.json("results", "--json")
    assert "not-converged" in {f["code"] for f in row["flags"]}
    checks = row["provenance"]["checks"]
    assert checks["convergence"]["steps"] == 2
    assert checks["convergence"]["robust_accuracy_doubled"] < checks["convergence"]["robust_accuracy"]
    # Two tiny steps cannot cross the image even when the budget is unbounded.
    assert checks["unbounded"]["robust_accuracy"] > 0.1 and "unbounded-check-failed" in {f["code"] for f in row["flags"]}


def test_check_catches_masked_gradients_with_an_unbounded_attack(arena):
    broken_plugins.install()
    assert arena("run", "-a", "fgsm", "-d", "quantized,standard", "--n", "100").exit_code == 0
    rows = {r["defense"]: r for r in arena.json("results", "--json")}
    masked = arena("check", str(rows["quantized"]["run_id"]))
    assert masked.exit_code == 0 and "unbounded-check-failed" in masked.stdout, masked.stderr
    healthy = arena("check", str(rows["standard"]["run_id"]))
    assert healthy.exit_code == 0 and "no problems found" in healthy.stdout
    assert "not applicable" in healthy.stdout  # FGSM is not iterative
    flags = {r["defense"]: {f["code"] for f in r["flags"]} for r in arena.json("results", "--json")}
    assert "unbounded-check-failed" in flags["quantized"] and flags["standard"] == set()


def test_nan_output_is_refused_and_a_hanging_attack_times_out(arena):
    broken_plugins.install()
    result = arena("run", "-a", "nans,sleeper,fgsm", "-d", "standard", "--n", "30", "--timeout", "3")
    assert result.exit_code == 1
    assert "refused: nans vs standard" in result.stderr and "NaN" in result.stderr
    assert "error: sleeper vs standard" in result.stderr and "did not finish within 3 s" in result.stderr
    rows = {r["attack"]: r for r in arena.json("results", "--json")}
    assert (rows["nans"]["status"], rows["sleeper"]["status"], rows["fgsm"]["status"]) == ("refused", "error", "ok")
