"""`arena new KIND NAME`: a package of each kind, installed with pip, passes its own generated
tests (arena.testing's conformance checks and fixtures) and runs through `arena run`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from arena.scaffold import scaffold

from .conftest import pip_install_target, run_arena

RUNS = {  # what `arena run` of each kind's plugin looks like
    "attack": ["-a", "new-attack", "-d", "standard", "-p", "standard.epochs=2", "--n", "20"],
    "defense": ["-a", "fgsm", "-d", "new-defense", "-p", "new-defense.epochs=2", "--n", "20"],
    "generator": ["-g", "new-generator", "--samples", "64"],
    "dataset": ["-a", "fgsm", "-d", "standard", "-p", "standard.epochs=1", "--n", "20"],
}


@pytest.mark.parametrize("kind", sorted(RUNS))
def test_a_scaffolded_package_installs_passes_its_tests_and_runs(kind, tmp_path):
    name = f"new-{kind}"
    created = run_arena("new", kind, name, "--dir", str(tmp_path / "src"))
    assert created.returncode == 0, created.stderr
    root = tmp_path / "src" / f"arena-{name}"
    assert {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} == {
        "pyproject.toml", "README.md", f"src/arena_{name.replace('-', '_')}/__init__.py",
        f"tests/test_{name.replace('-', '_')}.py"}
    target = tmp_path / "site"
    pip_install_target(root, target)
    env = {**os.environ, "PYTHONPATH": str(target), "ARENA_HOME": str(tmp_path / "home")}
    env.pop("ARENA_DB", None)
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                            str(root / "tests")], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert "2 passed" in tests.stdout

    listed = json.loads(run_arena("plugins", "--json", pythonpath=target).stdout)
    (entry,) = [p for p in listed["plugins"] if p["name"] == name]
    assert entry["kind"] == kind and entry["package"] == f"arena-{name}" and entry["checks"] == "not run"
    extra = ["--dataset", name] if kind == "dataset" else ["--dataset", "digits-tiny"]
    db = tmp_path / "runs.db"
    done = run_arena("run", *RUNS[kind], *extra, "--db", str(db), pythonpath=target,
                     env={"ARENA_HOME": str(tmp_path / "home")})
    assert done.returncode == 0, done.stderr
    results = json.loads(run_arena("results", "--json", "--db", str(db), pythonpath=target).stdout)
    assert results and all(r["status"] == "ok" for r in results)
    checked = run_arena("plugins", "check", name, *(["-p", f"{name}.epochs=2"] if kind == "defense" else []),
                        pythonpath=target, env={"ARENA_HOME": str(tmp_path / "home")})
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = json.loads(run_arena("plugins", "--json", pythonpath=target,
                                  env={"ARENA_HOME": str(tmp_path / "home")}).stdout)
    assert [p["checks"] for p in listed["plugins"] if p["name"] == name] == ["passed"]


def test_new_refuses_a_bad_name_and_an_existing_folder(tmp_path):
    bad = run_arena("new", "attack", "My Attack", "--dir", str(tmp_path))
    assert bad.returncode == 1 and "plugin name 'My Attack': use lower-case letters" in bad.stderr
    scaffold("attack", "twice", tmp_path)
    again = run_arena("new", "attack", "twice", "--dir", str(tmp_path))
    assert again.returncode == 1 and "already exists" in again.stderr and "nothing was written" in again.stderr


@pytest.mark.parametrize(("name", "says"), [("none", "shadows Python's or Arena's own"),
                                            ("plugins", "shadows Python's or Arena's own"),
                                            ("fgsm", "is installed already")])
def test_new_refuses_names_that_would_break_or_shadow(tmp_path, name, says):
    bad = run_arena("new", "attack", name, "--dir", str(tmp_path))
    assert bad.returncode == 1 and says in bad.stderr and not any(tmp_path.iterdir())
