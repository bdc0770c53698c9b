"""How long the commands that only read take to start (not run in CI).

Each command runs in a fresh subprocess, ``--repeat`` times (median wall time); the figure is
also given as a ratio to ``python -c "import click, rich"``, measured side by side in the same
run, since the interpreter and the CLI libraries are the floor of any command. For each command
the script also says whether torch or any plugin module (``arena_plugins``) was imported.

The database holds a few real results: ``arena run -a fgsm -d standard --n 32`` runs once first
(not timed) in a temporary ARENA_HOME.

    python benchmarks/startup.py
    python benchmarks/startup.py --repeat 9
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

#: Reports, at exit, whether torch or a plugin module was imported by the command.
PROBE = (
    "import atexit, sys\n"
    "def report():\n"
    "    names = sorted(sys.modules)\n"
    "    print('IMPORTED', int('torch' in sys.modules), int(any(n.startswith('arena_plugins') for n in names)),"
    " file=sys.stderr)\n"
    "atexit.register(report)\n"
    "from arena.cli import main\n"
    "main(sys.argv[1:])\n"
)


def timed(argv: list[str], env: dict[str, str], repeat: int) -> tuple[float, str]:
    seconds, imported = [], ""
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        seconds.append(time.perf_counter() - started)
        if done.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr}")
        for line in done.stderr.splitlines():
            if line.startswith("IMPORTED"):
                torch, plugins = line.split()[1:]
                imported = ", ".join(name for name, flag in (("torch", torch), ("plugins", plugins)) if flag == "1")
    return statistics.median(seconds), imported or "neither"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "ARENA_HOME": home}
        env.pop("ARENA_DB", None)
        setup = subprocess.run([sys.executable, "-c", PROBE, "run", "-a", "fgsm", "-d", "standard", "--n", "32"],
                               env=env, capture_output=True, text=True)
        if setup.returncode != 0:
            raise SystemExit(f"arena run failed:\n{setup.stderr}")
        floor, _ = timed([sys.executable, "-c", "import click, rich"], env, args.repeat)
        print(f"python -c 'import click, rich': {floor:.3f} s (the floor)")
        print(f"{'command':<28} {'seconds':>8} {'× floor':>8}  imports")
        commands = [["--help"], ["leaderboard"], ["results"], ["results", "--json"], ["show", "1"],
                    ["leaderboard", "--format", "json"], ["plugins"], ["run", "--help"]]
        for command in commands:
            seconds, imported = timed([sys.executable, "-c", PROBE, *command], env, args.repeat)
            print(f"arena {' '.join(command):<22} {seconds:8.3f} {seconds / floor:8.1f}  {imported}")


if __name__ == "__main__":
    main()
