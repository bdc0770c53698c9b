"""How long the leaderboard takes for thousands of stored results (not run in CI).

Writes synthetic robustness results shaped like a real sweep into a SQLite results database
through the real schema: real attack and defense plugins (several hyperparameter variants of
some), 10 defense configurations trained with 2 seeds each, linf and l2 budgets, targeted and
not; every run with 360 per-sample outcomes (packed bits and sample rows, as ``arena run``
stores them, drawn from a Bradley–Terry model with per-sample difficulty), the provenance dict
``arena run`` records (environment, plugin packages and code hashes), a warning flag on about 3%
of the runs, and a kept-examples file ``runs/KEY.safetensors`` (8 images) actually written.

Then times, in-process, each stage of ``arena leaderboard`` (loading rows and outcomes, building
every view, rendering each format), and end to end, each in a fresh subprocess with its wall
time and peak memory (RSS), the three commands a user runs: ``arena leaderboard`` (terminal),
``arena results --json`` and ``arena leaderboard --format html -o DIR``.

    python benchmarks/leaderboard.py                     # 10,000 results
    python benchmarks/leaderboard.py --results 2400      # a smaller campaign
    python benchmarks/leaderboard.py --db /tmp/b.db      # keep (and reuse) the database
    python benchmarks/leaderboard.py --commands-only     # only the three commands

Each command runs ``--command-repeat`` times (default 5; the first read of a fresh database is
one of them): the median wall time is printed with the range, the largest peak RSS.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from rich.console import Console
from safetensors.numpy import save_file
from sqlalchemy import insert

from arena.errors import ArenaError
from arena.plugins import get_registry
from arena.results import robustness_rows
from arena.store import RobustnessResult, Run, open_store
from arena_leaderboard import render_csv, render_json, render_markdown, render_rich, robustness_views

POINTS, EXAMPLES, SEEDS = 360, 8, (0, 1)
THREATS = [(norm, eps, targeted) for norm, budgets in (("linf", (0.05, 0.1, 0.15, 0.2, 0.3)), ("l2", (0.5, 1.0, 1.5, 2.0, 3.0)))
           for targeted in (False, True) for eps in budgets]
DEFENSES = ["standard", "advtrain", "pgd-at", "trades", "fast-at", "bit-depth", "median-filter", "dropout",
            "random-noise", "ensemble"]
ATTACKS = ["pgd", "apgd", "fgsm", "fgm", "bim", "mifgsm", "square", "hopskipjump", "transfer", "ensemble-transfer",
           "noise"]
ACCESS = {"square": "score-query", "hopskipjump": "label-query", "transfer": "zero-query",
          "ensemble-transfer": "zero-query", "noise": "zero-query"}
#: Campaign sizes: (attack configurations, threat models); x 10 defenses x 2 seeds.
SIZES = {2400: (12, 10), 10_000: (25, 20)}


def _sha(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _defaults(kind: str, name: str) -> dict:
    try:
        return dict(get_registry().get(kind, name).cls.parameter_defaults())
    except ArenaError:
        return {}


def attack_configs(count: int) -> list[tuple[str, dict]]:
    """``count`` attack configurations: each attack with its defaults, then variants of the
    iterative ones (their first integer hyperparameter doubled, quadrupled, ...)."""
    configs = [(name, _defaults("attack", name)) for name in ATTACKS]
    factor = 2
    while len(configs) < count:
        for name in ATTACKS:
            params = _defaults("attack", name)
            whole = [k for k, v in params.items() if isinstance(v, int) and not isinstance(v, bool) and v > 1]
            if whole and len(configs) < count:
                configs.append((name, {**params, whole[0]: params[whole[0]] * factor}))
        factor *= 2
    return configs[:count]


def provenance(seed: int, attack: str, defense: str) -> dict:
    """What ``arena run`` records about the environment, the plugins and their code."""
    plugins = {kind: {"name": name, "package": "arena-bench", "version": "0.1.0", "code_sha256": _sha(kind, name)}
               for kind, name in (("dataset", "digits"), ("attack", attack), ("defense", defense))}
    return {
        "arena_version": "0.1.0", "git_revision": _sha("revision")[:40], "python": "3.11.7", "torch": "2.13.0+cpu",
        "cuda": None, "platform": "Linux-6.18.44-x86_64-with-glibc2.36", "device": "cpu", "device_name": "x86_64",
        "deterministic_algorithms": False, "torch_threads": 2, "seed": seed, "batch_size": 256, "fast": False,
        "dataset_hash": _sha("digits"), "checkpoint_sha256": _sha("checkpoint", defense, seed), "plugins": plugins,
        "plugin_defaults": {"attack": _defaults("attack", attack), "defense": _defaults("defense", defense)},
        "attack_seconds": 3.3,
    }


def write_results(store, path: Path, size: int, runs_dir: Path, seed: int = 0) -> int:
    """Store a campaign of ``size`` results (see ``SIZES``), their sample rows and examples files."""
    attack_count, threat_count = SIZES[size]
    attacks = attack_configs(attack_count)
    defenses = [(name, _defaults("defense", name)) for name in DEFENSES]
    rng = np.random.default_rng(seed)
    attack_strength = rng.normal(0.0, 1.0, len(attacks))
    defense_strength = rng.normal(0.0, 1.0, len(defenses))
    difficulty = rng.normal(0.0, 1.0, POINTS)  # some test points are easy to fool for everyone
    clean = rng.random((len(defenses), len(SEEDS), POINTS)) < 0.97
    start = datetime.now(timezone.utc) - timedelta(days=7)
    runs_dir.mkdir(parents=True, exist_ok=True)
    runs, results, samples = [], [], []
    run_id = 0
    for t, (norm, eps, targeted) in enumerate(THREATS[:threat_count]):
        budget = eps / (0.2 if norm == "linf" else 2.0)
        for d, (defense, defense_params) in enumerate(defenses):
            for s, model_seed in enumerate(SEEDS):
                for a, (attack, attack_params) in enumerate(attacks):
                    run_id += 1
                    logit = (attack_strength[a] - defense_strength[d] + difficulty + np.log(budget)
                             - (1.0 if targeted else 0.0))
                    robust = clean[d, s] & (rng.random(POINTS) >= 1 / (1 + np.exp(-logit)))
                    correct = int(clean[d, s].sum())
                    key = _sha(run_id)
                    kept = np.flatnonzero(clean[d, s] & ~robust)[:EXAMPLES]
                    x = rng.random((len(kept), 1, 8, 8), dtype=np.float32)
                    delta = np.clip(rng.normal(0, eps / 2, x.shape), -eps, eps).astype(np.float32)
                    examples = runs_dir / f"{key}.safetensors"
                    save_file({"index": kept.astype(np.int64), "x": x, "x_adv": np.clip(x + delta, 0, 1),
                               "label": rng.integers(0, 10, len(kept)), "adv_pred": rng.integers(0, 10, len(kept))},
                              str(examples))
                    query = ACCESS.get(attack, "white-box") in ("score-query", "label-query")
                    runs.append({
                        "id": run_id, "key": key, "track": "robustness", "status": "ok",
                        "created_at": start + timedelta(seconds=40 * run_id), "dataset": "digits",
                        "dataset_hash": _sha("digits"), "seed": model_seed, "n": POINTS, "device": "cpu",
                        "duration_s": float(rng.uniform(2, 60)),
                        "flags": [] if rng.random() > 0.03 else [{
                            "code": "zero-gradients", "severity": "warning",
                            "message": "the loss gradient was zero on 41% of the attacked points: gradient masking?"}],
                        "provenance": provenance(model_seed, attack, defense),
                        "artifacts": {"examples": str(examples)}, "error": None, "lineage": _sha("lineage", run_id),
                        "superseded_by": None,
                    })
                    results.append({
                        "run_id": run_id, "attack": attack, "attack_package": "arena-bench", "attack_version": "0.1.0",
                        "attack_access": ACCESS.get(attack, "white-box"), "attack_params": attack_params,
                        "defense": defense, "defense_package": "arena-bench", "defense_version": "0.1.0",
                        "defense_params": defense_params, "defense_key": _sha("model", defense, model_seed),
                        "norm": norm, "eps": eps, "targeted": targeted,
                        "query_budget": 1000 if query else None, "clean_accuracy": correct / POINTS,
                        "robust_accuracy": float(robust.mean()), "attack_success_rate": 1 - int(robust.sum()) / correct,
                        "mean_linf": eps, "median_linf": eps, "mean_l2": eps * 6, "median_l2": eps * 6,
                        "queries_mean": 420.0 if query else None, "queries_max": 1000 if query else None,
                        "forward_passes": POINTS * 10, "backward_passes": 0 if query else POINTS * 10,
                        "evaluation": {"mode": "plain", "bpda": False, "eot_samples": 1, "decision_draws": 1},
                        "robust_bits": np.packbits(robust, bitorder="little").tobytes(),
                    })
                    linf = np.where(clean[d, s] & ~robust, eps, 0.0)
                    samples += zip([run_id] * POINTS, range(POINTS), [0] * POINTS, [None] * POINTS, [0] * POINTS,
                                   (~clean[d, s] | ~robust).astype(int).tolist(), clean[d, s].astype(int).tolist(),
                                   (clean[d, s] & ~robust).astype(int).tolist(), robust.astype(int).tolist(),
                                   linf.tolist(), (linf * 6).tolist(), [None] * POINTS)
        print(f"  generated threat model {t + 1}/{threat_count}", end="\r", flush=True)
    print()
    with store.session() as session:
        session.execute(insert(Run), runs)
        session.execute(insert(RobustnessResult), results)
    with sqlite3.connect(path) as connection:  # 3.6 million sample rows: straight through sqlite3
        connection.executemany(
            'INSERT INTO samples (run_id, "index", label, target, clean_pred, adv_pred, clean_correct, success, robust, '
            "linf, l2, queries) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", samples)
    return run_id


def timed(label: str, function, repeat: int, results: dict):
    """Median wall time (kept in ``results``) and CPU time of ``function`` over ``repeat`` calls."""
    walls, cpus, value = [], [], None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        value = function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    results[label] = statistics.median(walls)
    print(f"{label:<34} {results[label]:8.3f} s wall {statistics.median(cpus):8.3f} s CPU   (median of {repeat})")
    return value


def command(label: str, args: list[str], db: str, timeout: float, repeat: int = 1) -> tuple[float, float] | None:
    """Median wall seconds (with the range over ``repeat`` fresh processes) and the largest peak
    RSS (MB) of ``arena ARGS --db DB``, output to a file.

    Started through ``/usr/bin/time`` (a small process) where there is one: a child forked
    straight from this one would count this process's memory in its peak.
    """
    arena = shutil.which("arena", path=str(Path(sys.executable).parent)) or "arena"
    env = {**os.environ, "COLUMNS": "120"}
    timer = Path("/usr/bin/time")
    walls, peaks, size = [], [], 0
    for _ in range(repeat):
        with tempfile.TemporaryFile() as output, tempfile.NamedTemporaryFile("r") as report:
            prefix = [str(timer), "-f", "%M", "-o", report.name] if timer.exists() else []
            start = time.perf_counter()
            process = subprocess.Popen([*prefix, arena, *args, "--db", db], stdout=output, stderr=subprocess.PIPE,
                                       env=env)
            try:
                _, errors = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
                print(f"{label:<44} over {timeout:.0f} s: stopped")
                return None
            walls.append(time.perf_counter() - start)
            size = output.tell()
            if process.returncode:
                raise SystemExit(f"{label} exited with {process.returncode}: {errors.decode()[-2000:]}")
            kib = int(report.read().split()[-1]) if prefix else resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            peaks.append(kib / 1024)
    wall, rss = statistics.median(walls), max(peaks)
    spread = f" ({min(walls):.2f}-{max(walls):.2f}, {repeat} runs)" if repeat > 1 else ""
    print(f"{label:<44} {wall:8.2f} s wall{spread} {rss:6.0f} MB peak RSS   ({size / 1e6:.1f} MB of output)")
    return wall, rss


def commands(db: str, timeout: float, repeat: int = 1) -> None:
    """The three commands a user runs, end to end (start-up included), and the same
    leaderboard on an empty database measured alongside: the start-up floor, as a ratio that
    holds on a machine faster or slower (or busier) than this one."""
    site, empty = tempfile.mkdtemp(), tempfile.mkdtemp()
    floor = command("arena leaderboard, empty database", ["leaderboard"], f"sqlite:///{empty}/empty.db", timeout,
                    repeat)
    timed = [
        command("arena leaderboard", ["leaderboard"], db, timeout, repeat),
        command("arena results --json", ["results", "--json"], db, timeout, repeat),
        command("arena leaderboard --format html -o DIR", ["leaderboard", "--format", "html", "-o", site], db,
                timeout, repeat),
    ]
    if floor is not None:
        ratios = ", ".join(f"{wall / floor[0]:.1f}" for wall, _ in filter(None, timed))
        print(f"as multiples of the empty-database start-up ({floor[0]:.2f} s): {ratios}")
    shutil.rmtree(site, ignore_errors=True)
    shutil.rmtree(empty, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, choices=sorted(SIZES), default=10_000, help="campaign size")
    parser.add_argument("--db", type=Path, default=None, help="SQLite file to write (reused when it exists); the "
                        "examples files go to runs/ next to it")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--html", action="store_true", help="also time the HTML page in-process")
    parser.add_argument("--commands-only", action="store_true", help="only the three commands, end to end")
    parser.add_argument("--command-repeat", type=int, default=5,
                        help="fresh processes per command (the median is printed, with the range)")
    parser.add_argument("--timeout", type=float, default=600.0, help="stop a command after this many seconds")
    args = parser.parse_args()

    path = args.db or Path(tempfile.mkdtemp()) / "bench.db"
    fresh = not path.exists()
    store = open_store(f"sqlite:///{path}")
    if fresh:
        start = time.perf_counter()
        count = write_results(store, path, args.results, path.parent / "runs")
        print(f"wrote {count} results with {count * POINTS} per-sample outcomes and {count} examples files in "
              f"{time.perf_counter() - start:.1f} s")

    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall times stretch with it)")
    commands(f"sqlite:///{path}", args.timeout, args.command_repeat)
    if args.commands_only:
        return
    times: dict[str, float] = {}
    rows = timed("load rows (store)", lambda: robustness_rows(store, get_registry()), args.repeat, times)
    outcomes = timed("load sample outcomes (store)", lambda: store.sample_outcomes([r["run_id"] for r in rows]),
                     args.repeat, times)
    print(f"{len(rows)} results, {sum(len(robust) for _, robust in outcomes.values())} per-sample outcomes")
    views = timed("build views (boards, ratings, ...)", lambda: robustness_views(rows, outcomes), args.repeat, times)

    def terminal() -> str:
        console = Console(file=io.StringIO(), width=80)
        for renderable in render_rich(views):
            console.print(renderable)
        return console.file.getvalue()

    timed("render terminal tables", terminal, args.repeat, times)
    for name, render in (("markdown", render_markdown), ("csv", render_csv), ("json", render_json)):
        timed(f"render {name}", lambda render=render: render(views), args.repeat, times)
    rendering = times["build views (boards, ratings, ...)"] + times["render terminal tables"]
    print(f"rows in memory to terminal tables: {rendering:.3f} s wall for {len(rows)} results ({len(views)} views)")
    # What `arena leaderboard --norm linf --eps 0.2` shows: one threat model's 500 results.
    one = [row for row in rows if (row["norm"], row["eps"], row["targeted"]) == ("linf", 0.2, False)]

    def one_board() -> str:
        console = Console(file=io.StringIO(), width=80)
        for renderable in render_rich(robustness_views(one, store.sample_outcomes([r["run_id"] for r in one]))):
            console.print(renderable)
        return console.file.getvalue()

    timed(f"one threat model ({len(one)} results)", one_board, args.repeat, times)
    print(f"one threat model, outcomes to terminal tables: {times[f'one threat model ({len(one)} results)']:.3f} s")
    if args.html:
        from arena_leaderboard.html import render_html

        page = timed("render html page", lambda: render_html(robustness_views(rows, outcomes, examples=True)), 1, times)
        print(f"html page: {len(page) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
