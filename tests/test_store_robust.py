"""One bad stored row, file or page costs only itself: real results through the CLI, damaged
with raw sqlite3 and plain file writes, then read and written again through the CLI."""

from __future__ import annotations

import gc
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from arena.artifacts import local_path
from arena.cli import cli
from arena.store import open_store, shown_url

# An eps no other test uses: these runs' examples files (named by run key in the session's
# shared ARENA_HOME) are then this module's alone.
EPS = "0.17"


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def checkpoint(path: Path) -> None:
    """Move everything from the write-ahead log into the database file itself."""
    gc.collect()  # engines of earlier in-process commands close their connections
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


@pytest.fixture(scope="module")
def stored(tmp_path_factory, arena_home) -> Path:
    """FGSM and noise against the standard model on all 360 points: two runs, 720 sample rows."""
    path = tmp_path_factory.mktemp("robust") / "results.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ARENA_HOME", str(arena_home))
        result = invoke("run", "-a", "fgsm,noise", "-d", "standard", "--eps", EPS, "--db", str(path))
    assert result.exit_code == 0, result.output + result.stderr
    checkpoint(path)
    return path


@pytest.fixture
def copy(stored, tmp_path) -> Path:
    """This test's own copy of the stored results."""
    path = tmp_path / "results.db"
    shutil.copyfile(stored, path)
    return path


def results_json(path: Path) -> dict[int, dict]:
    result = invoke("results", "--json", "--db", str(path))
    assert result.exit_code == 0, result.output + result.stderr
    return {row["run_id"]: row for row in json.loads(result.stdout)}


def run_id_of(path: Path, attack: str) -> int:
    with sqlite3.connect(path) as conn:
        (run_id,) = conn.execute("SELECT run_id FROM robustness_results WHERE attack = ?", (attack,)).fetchone()
    return run_id


def no_traceback(result) -> None:
    assert "Traceback" not in result.output + result.stderr


@pytest.mark.parametrize(
    "table, column, value, says",
    [
        ("runs", "flags", "{not json", "flags is not valid JSON"),
        ("runs", "provenance", "[1, 2]", "provenance is a JSON array, not a JSON object"),
        ("robustness_results", "attack_params", "3", "attack_params is a JSON number, not a JSON object"),
        ("robustness_results", "robust_accuracy", "very high", "robust_accuracy holds text 'very high', not a number"),
    ],
)
def test_a_bad_value_skips_its_run_with_a_warning_and_nothing_else(copy, table, column, value, says):
    before = results_json(copy)
    bad, good = run_id_of(copy, "fgsm"), run_id_of(copy, "noise")
    key = "id" if table == "runs" else "run_id"
    with sqlite3.connect(copy) as conn:
        conn.execute(f"UPDATE {table} SET {column} = ? WHERE {key} = ?", (value, bad))
        raw = conn.execute(f"SELECT * FROM {table} WHERE {key} = ?", (bad,)).fetchone()
    warning = f"warning: run {bad}: {says}"

    board = invoke("leaderboard", "--format", "json", "--db", str(copy))
    assert board.exit_code == 0 and warning in board.stderr and "arena db check" in board.stderr
    no_traceback(board)
    (runs,) = [view for view in json.loads(board.stdout) if view["table"] == "runs"]
    assert [entry["run_id"] for entry in runs["entries"]] == [good]
    assert "noise" in invoke("leaderboard", "--db", str(copy)).stdout

    listed = invoke("results", "--json", "--db", str(copy))
    assert listed.exit_code == 0 and warning in listed.stderr
    assert {row["run_id"]: row for row in json.loads(listed.stdout)} == {good: before[good]}
    assert invoke("results", "--db", str(copy)).exit_code == 0

    # Another pairing runs and is stored; recomputing the cross-run flags skips the bad row.
    again = invoke("run", "-a", "fgsm", "-d", "standard", "--n", "30", "--eps", "0.05", "--db", str(copy))
    assert again.exit_code == 0, again.output + again.stderr
    assert warning in again.stderr
    after = results_json(copy)
    assert after[good] == before[good] and len(after) == 2 and bad not in after

    shown = invoke("show", str(bad), "--db", str(copy))  # the bad run itself: one line, no traceback
    assert shown.exit_code == 1 and f"Error: run {bad}: {says}" in shown.stderr
    no_traceback(shown)

    checked = invoke("db", "check", "--db", str(copy))
    assert checked.exit_code == 1 and f"run {bad}" in checked.stdout and says in checked.stdout
    with sqlite3.connect(copy) as conn:  # what was stored is still there, as it was
        assert conn.execute(f"SELECT * FROM {table} WHERE {key} = ?", (bad,)).fetchone() == raw


def test_a_bad_sample_outcome_skips_only_its_run(copy):
    bad = run_id_of(copy, "fgsm")
    with sqlite3.connect(copy) as conn:
        conn.execute("UPDATE robustness_results SET robust_bits = 'xyz' WHERE run_id = ?", (bad,))
        conn.execute("UPDATE samples SET robust = 'maybe' WHERE run_id = ? AND \"index\" = 7", (bad,))
    store = open_store(f"sqlite:///{copy}", warn=(warnings := []).append)
    outcomes = store.sample_outcomes([bad, run_id_of(copy, "noise")])
    assert list(outcomes) == [run_id_of(copy, "noise")] and len(outcomes[run_id_of(copy, "noise")][1]) == 360
    assert warnings == [f"run {bad}: sample 7 robust holds text 'maybe', not true or false; skipped "
                        "(arena db check lists such rows)"]
    board = invoke("leaderboard", "--db", str(copy))
    assert board.exit_code == 0 and f"run {bad}: sample 7 robust" in board.stderr and "noise" in board.stdout


def test_a_damaged_examples_file_costs_only_its_picture(copy, tmp_path):
    victim = run_id_of(copy, "fgsm")  # the strongest attack: its examples are the page's picture
    stored = results_json(copy)[victim]["artifacts"]["examples"]
    examples = tmp_path / "examples.safetensors"
    shutil.copyfile(local_path(stored), examples)  # a run stored with an absolute path, as before the store
    with sqlite3.connect(copy) as conn:
        conn.execute("UPDATE runs SET artifacts = ? WHERE id = ?", (json.dumps({"examples": str(examples)}), victim))
    whole = examples.read_bytes()

    for damage in (whole[: len(whole) // 2], b"not a safetensors file" * 10):
        examples.write_bytes(damage)
        page = invoke("leaderboard", "--format", "html", "-o", str(tmp_path / "site"), "--db", str(copy))
        assert page.exit_code == 0, page.output + page.stderr
        no_traceback(page)
        assert f"warning: run {victim}: the examples file {examples} cannot be read" in page.stderr
        html = (tmp_path / "site" / "index.html").read_text()
        assert "noise" in html and "fgsm" in html and ">unreadable</td>" in html

        shown = invoke("show", str(victim), "--db", str(copy))
        assert shown.exit_code == 0, shown.output + shown.stderr
        assert f"Run {victim}" in shown.stdout and "Examples:" not in shown.stdout
        assert f"warning: run {victim}: the examples file {examples} cannot be read" in shown.stderr

        checked = invoke("db", "check", "--db", str(copy))
        assert checked.exit_code == 1
        assert f"run {victim}: examples: the examples file {examples} cannot be read" in checked.stdout

    examples.unlink()
    checked = invoke("db", "check", "--db", str(copy))
    assert checked.exit_code == 1 and f"the examples file {examples} is missing" in checked.stdout
    examples.write_bytes(whole)
    checked = invoke("db", "check", "--db", str(copy))
    assert checked.exit_code == 0, checked.stdout
    assert "every value readable" in checked.stdout and "no problems found" in checked.stdout


def test_a_damaged_page_is_reported_and_never_written(copy):
    with sqlite3.connect(copy) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    assert pages >= 8  # several pages of samples
    with open(copy, "r+b") as handle:  # garbage over one page in the middle (page 1 is the header)
        handle.seek((pages // 2) * page_size)
        handle.write(bytes(range(256)) * (page_size // 256))
    assert _quick_check_fails(copy)
    before = copy.read_bytes()

    checked = invoke("db", "check", "--db", str(copy))
    assert checked.exit_code == 1
    assert "pages: SQLite's integrity_check found" in checked.stdout and "found" in checked.stdout.splitlines()[-2]
    no_traceback(checked)

    refused = invoke("run", "-a", "noise", "-d", "standard", "--n", "30", "--eps", "0.05", "--db", str(copy))
    assert refused.exit_code == 1
    (line,) = [line for line in refused.stderr.splitlines() if line.strip()]
    assert line.startswith(f"Error: {copy} is damaged (SQLite's quick_check: ")
    assert "refusing to write to it" in line and "arena db check" in line
    no_traceback(refused)
    assert copy.read_bytes() == before

    read = invoke("leaderboard", "--db", str(copy))  # reads what SQLite still can, with a warning
    no_traceback(read)
    assert f"warning: {copy} is damaged" in read.stderr
    assert copy.read_bytes() == before


def _quick_check_fails(path: Path) -> bool:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            return conn.execute("PRAGMA quick_check").fetchall() != [("ok",)]
    except sqlite3.DatabaseError:  # SQLite may give up on the page before it can report on it
        return True


@pytest.mark.parametrize("url", ["postgresql://u:s3cret@127.0.0.1:1/x", "postgresql://u:s3cret@127.0.0.1:port/x",
                                 "mysql+pymysql://u:s3cret@127.0.0.1:1/x"])
def test_a_password_in_a_database_url_is_never_shown(url):
    for args in (["results"], ["leaderboard"], ["run", "-a", "fgsm", "-d", "standard"], ["db", "check"]):
        result = invoke(*args, "--db", url)
        assert result.exit_code != 0
        assert "s3cret" not in result.output + result.stderr
        assert "***" in result.output + result.stderr
        no_traceback(result)
    assert shown_url(url) == url.replace("s3cret", "***")
