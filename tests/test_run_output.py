"""What `arena run` prints: whole tables and plain progress in a pipe, attack and training time
apart, notes for skipped pairings."""

from __future__ import annotations

import json
import re

from .conftest import run_arena


def _row(stdout: str, *cells: str) -> str:
    (line,) = [line for line in stdout.splitlines() if all(cell in line for cell in cells)]
    return line


def test_piped_output_is_whole_with_plain_progress_and_times_apart(arena, tmp_path):
    db = str(tmp_path / "r.db")
    # A model no other test trains (one epoch, its own seed).
    args = ("run", "-a", "fgsm", "-d", "standard", "--eps", "0.15", "--n", "40", "--seed", "4242",
            "-p", "standard.epochs=1", "--db", db)
    ran = run_arena(*args, env={"COLUMNS": ""})
    assert ran.returncode == 0, ran.stderr
    # Wider than 80 columns, and nothing cut to fit them.
    assert "…" not in ran.stdout and "…" not in ran.stderr
    assert max(len(line) for line in ran.stdout.splitlines()) > 80
    header = _row(ran.stdout, "run", "attack", "defense", "threat")
    assert re.search(r"attack time\s+training", header)
    rows = {r["defense"]: r for r in json.loads(run_arena("results", "--json", "--db", db).stdout)
            if r["evaluation"]["mode"] == "plain"}
    standard = _row(ran.stdout, " standard(epochs=1) ")  # the hyperparameters set, as the leaderboard labels it
    assert "linf 0.15" in standard
    # The attack's own time, and apart from it the time this command spent training the model.
    attack_seconds = rows["standard"]["provenance"]["attack_seconds"]
    assert re.search(rf"{attack_seconds:.1f}s\s+\d+\.\ds\s*$", standard), standard
    assert "cached" not in standard
    # Progress comes as plain lines: the training and each attack end with a line of their own.
    assert re.search(r"training standard on digits: done 1/1 .*in \d+\.\ds", ran.stderr), ran.stderr
    assert re.search(r"fgsm → standard \(linf eps=0\.15 untargeted\): done 1/1 in \d+\.\ds", ran.stderr)
    assert "\x1b" not in ran.stderr + ran.stdout

    # Computed again from the cached model: no training time.
    again = arena("run", *args[1:-2], "--force")
    assert again.exit_code == 0, again.stderr
    assert re.search(r"\d+\.\ds\s+cached\s*$", _row(again.stdout, " standard(epochs=1) ")), again.stdout


def test_an_attack_without_the_norm_is_skipped_not_fatal(arena):
    result = arena("run", "-a", "fgsm,fgm", "-d", "standard", "--norm", "l2", "--eps", "1.0", "--n", "20")
    assert result.exit_code == 0, result.stderr
    assert ("note: attack 'fgsm' does not support norm l2 (it supports linf): skipping its pairings"
            in result.stderr)
    assert [r["attack"] for r in arena.json("results", "--json")] == ["fgm"]
    # Only when no pairing at all can run is it an error, naming why.
    alone = arena("run", "-a", "fgsm", "-d", "standard", "--norm", "l2", "--eps", "1.0", "--n", "20")
    assert alone.exit_code == 1
    assert alone.stderr.strip() == ("Error: no attack can run under the requested threat model: attack 'fgsm' "
                                    "does not support norm l2 (it supports linf)")
