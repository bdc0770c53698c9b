"""The wheel users install holds every module of the source tree (a package left out of
pyproject's list works in an editable install and breaks `pip install arena-bench`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Source folder -> the import name it installs under (pyproject's package-dir).
INSTALLED_AS = {"arena": "arena", "plugins": "arena_plugins", "leaderboard": "arena_leaderboard"}


def test_the_wheel_holds_every_module_and_data_file(tmp_path):
    # From a copy without build leftovers: a stale build/ folder would fill the gaps.
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in INSTALLED_AS:
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("arena_bench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"{INSTALLED_AS[folder]}/{path.relative_to(ROOT / folder).as_posix()}"
        for folder in INSTALLED_AS
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and path.suffix in (".py", ".mako") and "__pycache__" not in path.parts
    }
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel (add their packages to pyproject's [tool.setuptools] packages): {missing}"
    assert "arena/cli/__init__.py" in names and "arena/executors/local.py" in names
