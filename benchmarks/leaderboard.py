"""How long the leaderboard takes for 10,000 stored results (not run in CI).

Writes 10,000 synthetic robustness results (20 attacks x 25 defenses x 20 threat models, 360
per-sample outcomes each, drawn from a Bradley–Terry model with per-sample difficulty) into a
SQLite results database through the real schema, then times each stage of ``arena
leaderboard``: loading rows and per-sample outcomes from the store, building every view (with
arena ratings and their bootstrap), and rendering each format.

    python benchmarks/leaderboard.py                  # terminal, md, csv, json
    python benchmarks/leaderboard.py --html           # and the HTML page with its figures
    python benchmarks/leaderboard.py --db /tmp/b.db   # keep (and reuse) the database
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from rich.console import Console
from sqlalchemy import insert

from arena.results import robustness_rows
from arena.store import RobustnessResult, Run, Sample, open_store
from arena_leaderboard import render_csv, render_json, render_markdown, render_rich, robustness_views

ATTACKS, DEFENSES, POINTS = 20, 25, 360
THREATS = [(norm, eps, targeted) for norm, budgets in (("linf", (0.05, 0.1, 0.15, 0.2, 0.3)), ("l2", (0.5, 1.0, 1.5, 2.0, 3.0)))
           for eps in budgets for targeted in (False, True)]


def write_results(store, seed: int = 0) -> int:
    """Store ATTACKS x DEFENSES x len(THREATS) results with per-sample outcomes; returns the count."""
    rng = np.random.default_rng(seed)
    attack_strength = rng.normal(0.0, 1.0, ATTACKS)
    defense_strength = rng.normal(0.0, 1.0, DEFENSES)
    difficulty = rng.normal(0.0, 1.0, POINTS)  # some test points are easy to fool for everyone
    clean = rng.random((DEFENSES, POINTS)) < 0.97
    now = datetime.now(timezone.utc)
    runs, results, samples = [], [], []
    run_id = 0
    for t, (norm, eps, targeted) in enumerate(THREATS):
        budget = eps / (0.2 if norm == "linf" else 2.0)
        for d in range(DEFENSES):
            for a in range(ATTACKS):
                run_id += 1
                logit = attack_strength[a] - defense_strength[d] + difficulty + np.log(budget) - (1.0 if targeted else 0.0)
                robust = clean[d] & (rng.random(POINTS) >= 1 / (1 + np.exp(-logit)))
                correct = int(clean[d].sum())
                runs.append({
                    "id": run_id, "key": hashlib.sha256(str(run_id).encode()).hexdigest(), "track": "robustness",
                    "status": "ok", "created_at": now, "dataset": "digits", "dataset_hash": "0" * 64, "seed": 0,
                    "n": POINTS, "device": "cpu", "duration_s": 1.0,
                    "flags": [] if run_id % 97 else [{"code": "zero-gradients", "severity": "warning", "message": "synthetic"}],
                    "provenance": {}, "artifacts": {}, "error": None,
                })
                results.append({
                    "run_id": run_id, "attack": f"attack{a:02d}", "attack_package": "bench", "attack_version": "1",
                    "attack_access": "white-box", "attack_params": {}, "defense": f"defense{d:02d}",
                    "defense_package": "bench", "defense_version": "1", "defense_params": {},
                    "defense_key": hashlib.sha256(f"defense{d}".encode()).hexdigest(), "norm": norm, "eps": eps,
                    "targeted": targeted, "query_budget": None, "clean_accuracy": correct / POINTS,
                    "robust_accuracy": float(robust.mean()), "attack_success_rate": 1 - int(robust.sum()) / correct,
                    "mean_linf": eps, "median_linf": eps, "mean_l2": eps, "median_l2": eps, "queries_mean": None,
                    "queries_max": None, "forward_passes": POINTS, "backward_passes": POINTS,
                    "robust_bits": np.packbits(robust, bitorder="little").tobytes(),
                })
                samples += [
                    {"run_id": run_id, "index": i, "label": 0, "target": None, "clean_pred": 0, "adv_pred": 0 if r else 1,
                     "clean_correct": c, "success": c and not r, "robust": r, "linf": eps, "l2": eps, "queries": None}
                    for i, (c, r) in enumerate(zip(clean[d].tolist(), robust.tolist()))
                ]
        print(f"  generated threat model {t + 1}/{len(THREATS)}", end="\r", flush=True)
    with store.session() as session:
        session.execute(insert(Run), runs)
        session.execute(insert(RobustnessResult), results)
        for start in range(0, len(samples), 200_000):
            session.execute(insert(Sample), samples[start : start + 200_000])
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=None, help="SQLite file to write (reused when it exists)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--html", action="store_true", help="also time the HTML page (matplotlib figures)")
    args = parser.parse_args()

    path = args.db or Path(tempfile.mkdtemp()) / "bench.db"
    fresh = not path.exists()
    store = open_store(f"sqlite:///{path}")
    if fresh:
        start = time.perf_counter()
        count = write_results(store)
        print(f"wrote {count} results with {count * POINTS} per-sample outcomes in {time.perf_counter() - start:.1f} s")

    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall times stretch with it)")
    times: dict[str, float] = {}
    rows = timed("load rows (store)", lambda: robustness_rows(store), args.repeat, times)
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
