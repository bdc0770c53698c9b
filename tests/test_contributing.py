"""The CONTRIBUTING tutorial, built and run exactly as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .conftest import pip_install_target, run_arena

CONTRIBUTING = Path(__file__).parent.parent / "CONTRIBUTING.md"


def tutorial_files() -> dict[str, str]:
    text = CONTRIBUTING.read_text()
    return dict(re.findall(r"```\w+ file=(\S+)\n(.*?)```", text, flags=re.S))


def test_tutorial_plugin_installs_and_runs(tmp_path):
    files = tutorial_files()
    assert set(files) == {"arena_margin.py", "pyproject.toml"}
    package = tmp_path / "arena-margin"
    package.mkdir()
    for name, content in files.items():
        (package / name).write_text(content)
    site = tmp_path / "site"
    pip_install_target(package, site)

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
