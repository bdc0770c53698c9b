"""What running each attack in its own worker process costs (arena/isolation.py).

The same attack attacks the same model (the dataset's `standard` defense from Arena's model
cache) on the same points, two ways, interleaved round after round in one process:

- in-process: the attack gets the host's objects directly, as before isolation;
- isolated: the attack runs in its worker process as `arena run` runs it, the worker that served
  the attack's previous pairing taking the next (sending the attack and the model copy, each
  batch's round trip, every query of a query attack answered by the host, and the
  end-of-pairing model check are all counted);
- fresh worker: the same with a new worker for the pairing (its start, and its kernels' first
  use at every batch shape, counted too): what an attack's first pairing in a run costs.

Printed per attack: the median seconds of a whole pairing each way and the ratios to in-process;
the target is at most 1.10 on digits on a CPU. The worker's start-up is printed on its own.

    python benchmarks/isolation.py --dataset digits
    python benchmarks/isolation.py --dataset mnist5k --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from arena import ThreatModel, WhiteBox
from arena.access import Access, ScoreOracle
from arena.isolation import AttackWorker, release_workers
from arena.host import resolve_device
from arena.threat import check_adversarial
from arena_plugins.attacks.fgsm import FGSM
from arena_plugins.attacks.pgd import PGD
from arena_plugins.attacks.square import Square

from attacks import standard_model, synchronize

#: Each attack and its query budget (Square runs until its budget is spent).
ATTACKS = {"fgsm": (FGSM, 1), "pgd-10": (lambda: PGD(steps=10), 1), "square-100": (Square, 100)}


def batches(x: torch.Tensor, y: torch.Tensor, size: int):
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


def in_process(attack, model, data, threat, budget: int, device: torch.device) -> list[float]:
    """One pairing in the host's process; the seconds of each batch."""
    seconds = []
    for x, y in data:
        synchronize(device)
        started = time.perf_counter()
        if attack.access == Access.WHITE_BOX:
            access = WhiteBox(model)
        else:
            access = ScoreOracle(model, len(x), budget)
        check_adversarial(x, attack.perturb(access, x, y, threat), threat)
        synchronize(device)
        seconds.append(time.perf_counter() - started)
    return seconds


def isolated(attack, model, data, threat, budget: int, device: torch.device) -> list[float]:
    """One pairing through a worker, as `arena run` does it; the seconds of each batch (the
    worker's start and the end-of-pairing check are in the pairing's total only)."""
    white_box = attack.access == Access.WHITE_BOX
    seconds = []
    with AttackWorker(attack, model if white_box else None, {}, device, seed=0) as worker:
        for x, y in data:
            synchronize(device)
            started = time.perf_counter()
            oracle = None if white_box else ScoreOracle(model, len(x), budget)
            x_adv, _, _ = worker.perturb(x, y, threat, None, oracle)
            check_adversarial(x, x_adv, threat)
            synchronize(device)
            seconds.append(time.perf_counter() - started)
        worker.finish()
    return seconds


class _Idle:
    access = Access.WHITE_BOX

    def perturb(self, access, x, y, threat, target=None):
        return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    device = resolve_device(args.device)
    model, loaded = standard_model(args.dataset, device)
    x, y = loaded.splits.x_test, loaded.splits.y_test
    data = batches(x, y, args.batch)
    threat = loaded.plugin.default_threat
    threat = ThreatModel(threat.norm, threat.eps)
    print(f"{args.dataset}: {len(x)} points in batches of {args.batch}, {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    # The first worker also starts the fork server (once per process): not a per-pairing cost.
    isolated(_Idle(), model, data[:1], threat, 1, device)
    start_up = []
    for _ in range(args.rounds):
        release_workers()  # a fresh worker each time, not the idle one of the last round
        started = time.perf_counter()
        isolated(_Idle(), model, data[:1], threat, 1, device)
        start_up.append(time.perf_counter() - started)
    print(f"worker start, one idle batch and the model check: {1000 * statistics.median(start_up):.0f} ms (median)")
    print(f"{'attack':<12}{'in-process s':>14}{'isolated s':>12}{'ratio':>8}{'fresh worker s':>16}{'ratio':>8}")
    ways = {"in-process": in_process, "isolated": isolated, "fresh": isolated}
    for name, (make, budget) in ATTACKS.items():
        totals: dict[str, list[float]] = {way: [] for way in ways}
        for _ in range(args.rounds + 1):
            for way, run in ways.items():
                if way == "fresh":
                    release_workers()
                synchronize(device)
                started = time.perf_counter()
                run(make(), model, data, threat, budget, device)
                synchronize(device)
                totals[way].append(time.perf_counter() - started)
        # The first round warms the host's kernels and starts the attack's worker: left out.
        inside, outside, fresh = (statistics.median(totals[way][1:]) for way in ways)
        print(f"{name:<12}{inside:>14.3f}{outside:>12.3f}{outside / inside:>7.2f}x{fresh:>16.3f}{fresh / inside:>7.2f}x")

if __name__ == "__main__":
    main()
