"""The CONTRIBUTING tutorial, built and run exactly as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .conftest import pip_install_target, run_arena

CONTRIBUTING = Path(__file__).parent.parent / "CONTRIBUTING.md"


def tutorial_files(folder: str = "") -> dict[str, str]:
    """The code blocks marked ```LANG file=NAME (the first tutorial's package), or, with
    ``folder``, file=FOLDER/NAME (another tutorial's package)."""
    text = CONTRIBUTING.read_text()
    blocks = dict(re.findall(r"```\w+ file=(\S+)\n(.*?)```", text, flags=re.S))
    prefix = f"{folder}/" if folder else ""
    return {name[len(prefix):]: content for name, content in blocks.items()
            if name.startswith(prefix) and "/" not in name[len(prefix):]}


def _install(files: dict[str, str], package: Path, site: Path) -> None:
    package.mkdir()
    for name, content in files.items():
        (package / name).write_text(content)
    pip_install_target(package, site)


def test_tutorial_plugin_installs_and_runs(tmp_path):
    files = tutorial_files()
    assert set(files) == {"arena_margin.py", "pyproject.toml"}
    site = tmp_path / "site"
    _install(files, tmp_path / "arena-margin", site)

    listed = json.loads(run_arena("plugins", "--json", pythonpath=site).stdout)
    margin = next(p for p in listed["plugins"] if p["name"] == "margin-fgsm")
    assert (margin["package"], margin["version"]) == ("arena-margin", "0.1.0")
    assert margin["hyperparameters"] == {"step": 1.0}
    assert margin["bounds"] == {"step": "a number in (0, inf)"}

    db = str(tmp_path / "r.db")
    ran = run_arena("run", "-a", "margin-fgsm,fgsm", "-d", "standard", "--n", "100", "--db", db, pythonpath=site)
    assert ran.returncode == 0, ran.stderr
    rows = {r["attack"]: r for r in json.loads(run_arena("results", "--json", "--db", db, pythonpath=site).stdout)}
    # The margin loss is a real attack: it fools the undefended model about as well as FGSM.
    assert rows["margin-fgsm"]["attack_success_rate"] > 0.5
    assert abs(rows["margin-fgsm"]["robust_accuracy"] - rows["fgsm"]["robust_accuracy"]) < 0.2

    refused = run_arena("run", "-a", "margin-fgsm", "-d", "standard", "--n", "20", "-p", "margin-fgsm.step=2",
                        "--db", db, pythonpath=site)
    assert refused.returncode == 1 and "refused" in refused.stderr and "above eps 0.2" in refused.stderr

    out_of_bounds = run_arena("run", "-a", "margin-fgsm", "-d", "standard", "-p", "margin-fgsm.step=0",
                              "--db", db, pythonpath=site)
    assert out_of_bounds.returncode == 1
    assert out_of_bounds.stderr.strip() == "Error: attack 'margin-fgsm': step=0 is not above 0"


def test_dataset_and_generator_tutorial_installs_and_runs(tmp_path):
    files = tutorial_files("arena-bars")
    assert set(files) == {"arena_bars.py", "pyproject.toml"}
    site = tmp_path / "site"
    _install(files, tmp_path / "arena-bars", site)

    listed = json.loads(run_arena("plugins", "--json", pythonpath=site).stdout)
    bars = {p["name"]: p for p in listed["plugins"] if p["package"] == "arena-bars"}
    assert set(bars) == {"bars", "pixel-marginals"}
    assert bars["bars"]["capabilities"]["shape"] == [1, 8, 8]

    db = str(tmp_path / "r.db")
    args = ("run", "-g", "pixel-marginals", "--dataset", "bars", "--samples", "200", "--db", db)
    ran = run_arena(*args, pythonpath=site)
    assert ran.returncode == 0, ran.stderr
    (row,) = json.loads(run_arena("results", "--json", "--db", db, pythonpath=site).stdout)
    # Each pixel is lit less than half the time: below the uniform 1 bit per pixel.
    assert row["likelihood"] == "exact" and 0 < row["bits_per_dim"] < row["uniform_bits_per_dim"]
    assert row["fid"] is not None and row["status"] == "ok"
    # From the cache, only build() runs: the fitted buffer comes back and gives the same numbers.
    again = run_arena(*args, "--force", pythonpath=site)
    assert again.returncode == 0, again.stderr
    rows = json.loads(run_arena("results", "--json", "--db", db, pythonpath=site).stdout)
    assert [r["bits_per_dim"] for r in rows] == [row["bits_per_dim"]]
    assert rows[0]["fid"] == row["fid"]
