"""The honest judge: an installed package of cheating plugins changes nothing the host decides."""

from __future__ import annotations

import json

import pytest
import torch

from arena.access import Access, ScoreOracle
from arena.isolation import AttackWorker, ProtocolError, decode, send
from arena.store import open_store
from arena.threat import ThreatModel

from .conftest import FIXTURES, pip_install_target, run_arena

CHEATS = ["cheat-inplace", "cheat-liar", "cheat-eps", "cheat-zero-weights", "cheat-train-mode", "cheat-frames",
          "cheat-closure", "cheat-transfer", "cheat-budget"]
CHEATING_DEFENSES = ["cheat-late-random", "cheat-drifting"]


@pytest.fixture(scope="module")
def cheats(tmp_path_factory):
    target = tmp_path_factory.mktemp("cheats-site")
    pip_install_target(FIXTURES / "arena-cheats", target)
    return target


def _outcomes(db: str) -> dict[tuple[str, str, str], list[tuple]]:
    """Per-sample outcomes of every ok fgsm run, by (attack, defense, evaluation mode)."""
    store = open_store(db)
    found = {}
    for run in store.runs(track="robustness", status="ok"):
        result = run.robustness
        if result.attack != "fgsm" or result.defense in CHEATING_DEFENSES:
            continue
        samples = store.get_run(run.id).samples
        key = (result.attack, result.defense, (result.evaluation or {}).get("mode", "plain"))
        found[key] = sorted((s.index, s.clean_pred, s.adv_pred, s.robust, round(s.linf, 6)) for s in samples)
    return found


def test_cheating_plugins_gain_nothing_and_honest_results_are_untouched(cheats, tmp_path):
    cheated, alone = f"sqlite:///{tmp_path / 'cheated.db'}", f"sqlite:///{tmp_path / 'alone.db'}"
    # fgsm runs first against `standard`, then after every cheater against `bit-depth`, which
    # wraps the same standard model.
    ran = run_arena("run", "-a", ",".join(["fgsm", *CHEATS]), "-d", "standard,bit-depth",
                    "--n", "60", "--queries", "40", "--db", cheated, pythonpath=cheats)
    assert ran.returncode == 1, ran.stderr  # the cheaters' pairings fail; the command goes on
    defended = run_arena("run", "-a", "fgsm", "-d", ",".join(CHEATING_DEFENSES), "--n", "60", "--db", cheated,
                         pythonpath=cheats)
    assert defended.returncode == 1, defended.stderr  # the drifting defense fails its pairings
    honest = run_arena("run", "-a", "fgsm", "-d", "standard,bit-depth", "--n", "60", "--db", alone,
                       pythonpath=cheats)
    assert honest.returncode == 0, honest.stderr

    rows = json.loads(run_arena("results", "--json", "--all", "--db", cheated, pythonpath=cheats).stdout)
    by_pairing: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        by_pairing.setdefault((row["attack"], row["defense"]), []).append(row)

    # No cheating result is stored as ok and unflagged.
    for (attack, defense), results in by_pairing.items():
        if attack in CHEATS or defense in CHEATING_DEFENSES:
            for row in results:
                warned = any(f.get("severity", "warning") == "warning" for f in row["flags"])
                assert row["status"] != "ok" or warned, (attack, defense, row["status"], row["flags"])
    # Against bit-depth's plain evaluation the gradient is zero, so some cheaters move nothing
    # and are honestly stored (flagged not-adaptive); each cheat fails every evaluation it affects.
    errors: dict[tuple[str, str], str] = {}
    for row in rows:
        errors[(row["attack"], row["defense"])] = errors.get((row["attack"], row["defense"]), "") + (row["error"] or "")
    for defense in ("standard", "bit-depth"):
        assert "above eps 0.2" in errors[("cheat-inplace", defense)]
        assert "above eps 0.2" in errors[("cheat-liar", defense)]
        assert "above eps 0.2" in errors[("cheat-eps", defense)]
        assert "changed its copy of the model" in errors[("cheat-zero-weights", defense)]
        assert "training mode" in errors[("cheat-train-mode", defense)]
        assert "no model found" in errors[("cheat-frames", defense)]
        assert "no model in the oracle's closure" in errors[("cheat-closure", defense)]
        assert "neither the target nor the test set" in errors[("cheat-transfer", defense)]
        assert "more than 40 queries" in errors[("cheat-budget", defense)]
    # Randomness that appears after the probe is caught while judging and evaluated with EOT.
    late = by_pairing[("fgsm", "cheat-late-random")]
    assert {r["evaluation"]["mode"] for r in late} == {"adaptive", "plain"}
    assert all("randomized-late" in {f["code"] for f in r["flags"]} for r in late)
    assert "changed while it was attacked and judged" in errors[("fgsm", "cheat-drifting")]

    # The honest fgsm results, before and after the cheaters, equal the ones computed alone.
    computed_alone = _outcomes(alone)
    assert set(computed_alone) == {("fgsm", "standard", "plain"), ("fgsm", "bit-depth", "plain"),
                                   ("fgsm", "bit-depth", "adaptive")}
    assert _outcomes(cheated) == computed_alone
    fgsm_standard = next(r for r in by_pairing[("fgsm", "standard")])
    assert fgsm_standard["status"] == "ok" and fgsm_standard["flags"] == []


def test_messages_are_read_without_trusting_them():
    import multiprocessing

    host, worker = multiprocessing.Pipe()
    tensors = [torch.rand(3, 1, 8, 8), torch.tensor([1, 2, 3]), torch.tensor([True, False])]
    send(worker, "result", {"forward": 3}, tensors)
    op, meta, received = decode(host.recv_bytes())
    assert (op, meta) == ("result", {"forward": 3})
    assert all(torch.equal(a, b) and type(b) is torch.Tensor for a, b in zip(tensors, received))
    header = json.dumps({"op": "result", "meta": {}, "arrays": [["float32", [2, 2]]]}).encode()
    for bad in (
        len(header).to_bytes(4, "little") + header + b"\0" * 12,  # too few bytes
        len(header).to_bytes(4, "little") + header + b"\0" * 20,  # trailing bytes
        b"\x05\0\0\0{'op'",  # not JSON
        len(header).to_bytes(4, "little") + header.replace(b"float32", b"object") + b"\0" * 16,
    ):
        with pytest.raises(ProtocolError):
            decode(bad)


class _Shift(torch.nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :10] * 3.0


class _Querying:
    access = Access.SCORE_QUERY

    def perturb(self, access, x, y, threat, target=None):
        scores = access(x)
        return (x + threat.eps * torch.sign(scores.sum() - 1e9) * torch.ones_like(x)).clamp(0, 1)


class _Mutating:
    access = Access.WHITE_BOX

    def perturb(self, access, x, y, threat, target=None):
        access.model.train()
        return x


def test_a_query_attack_is_answered_and_counted_by_the_host():
    x = torch.rand(4, 1, 8, 8)
    oracle = ScoreOracle(_Shift(), 4, budget=5)
    with AttackWorker(_Querying(), None, {}, torch.device("cpu"), seed=0) as worker:
        x_adv, forward, backward = worker.perturb(x, torch.zeros(4, dtype=torch.long),
                                                  ThreatModel("linf", 0.1), None, oracle)
    assert oracle.queries.tolist() == [1, 1, 1, 1]  # counted by the host, not the worker
    assert type(x_adv) is torch.Tensor and torch.allclose(x_adv, (x - 0.1).clamp(0, 1))


def test_a_worker_that_changes_its_model_copy_is_reported_and_the_host_model_is_untouched():
    model = _Shift().eval()
    with AttackWorker(_Mutating(), model, {}, torch.device("cpu"), seed=0) as worker:
        worker.perturb(torch.rand(2, 1, 8, 8), torch.zeros(2, dtype=torch.long), ThreatModel(), None, None)
        assert worker.finish() == ["target: a module is in training mode"]
    assert not model.training
