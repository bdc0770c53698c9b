"""What running each attack in its own worker process costs (arena/isolation.py).

The same attack attacks the same model (the dataset's `standard` defense from Arena's model
cache) on the same points, two ways, interleaved round after round in one process:

- in-process: the attack gets the host's objects directly, as before isolation;
- isolated: the attack runs in a worker process (one per pairing, as `arena run` does): the
  worker's start, sending the attack and the model copy, each batch's round trip, every query
  of a query attack answered by the host, and the end-of-pairing model check are all counted.

Printed per attack: the median seconds of a whole pairing each way and their ratio, then the
isolated pairing's batches alone (without the worker's start and end-of-pairing check) and their
ratio to in-process: the per-batch overhead, whose target is at most 1.10 on digits on a CPU.
The worker's start-up is printed on its own.

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
from arena.isolation import AttackWorker
from arena.runner import resolve_device
from arena.threat import check_adversarial
from arena_plugins.attacks.fgsm import FGSM
from arena_plugins.attacks.pgd import PGD
from arena_plugins.attacks.square import Square

from attacks import standard_model, synchronize

#: Each attack and its query budget (Square runs until its budget is spent).
ATTACKS = {"fgsm": (FGSM, 1), "pgd-10": (lambda: PGD(steps=10), 1), "square-100": (Square, 100)}


def batches(x: torch.Tensor, y: torch.Tensor, size: int):
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


def in_process(attack, model, data, threat, budget: int) -> None:
    for x, y in data:
        torch.manual_seed(0)
        if attack.access == Access.WHITE_BOX:
            access = WhiteBox(model)
        else:
            access = ScoreOracle(model, len(x), budget)
        check_adversarial(x, attack.perturb(access, x, y, threat), threat)


def isolated(attack, model, data, threat, budget: int, device: torch.device) -> float:
    """One pairing through a worker; returns the seconds of its batches alone (the steady state,
    without the worker's start and the end-of-pairing check)."""
    white_box = attack.access == Access.WHITE_BOX
    with AttackWorker(attack, model if white_box else None, {}, device, seed=0) as worker:
        synchronize(device)
        started = time.perf_counter()
        for x, y in data:
            oracle = None if white_box else ScoreOracle(model, len(x), budget)
            x_adv, _, _ = worker.perturb(x, y, threat, None, oracle)
            check_adversarial(x, x_adv, threat)
        synchronize(device)
        batches_only = time.perf_counter() - started
        worker.finish()
    return batches_only


class _Idle:
    access = Access.WHITE_BOX

    def perturb(self, access, x, y, threat, target=None):
        return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=256)
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
        started = time.perf_counter()
        isolated(_Idle(), model, data[:1], threat, 1, device)
        start_up.append(time.perf_counter() - started)
    print(f"worker start, one idle batch and the model check: {1000 * statistics.median(start_up):.0f} ms (median)")
    print(f"{'attack':<12}{'in-process s':>14}{'isolated s':>12}{'ratio':>8}{'batches only s':>16}{'ratio':>8}")
    for name, (make, budget) in ATTACKS.items():
        times: dict[str, list[float]] = {"in-process": [], "isolated": [], "batches": []}
        for _ in range(args.rounds):
            for way in ("in-process", "isolated"):
                attack = make()
                synchronize(device)
                started = time.perf_counter()
                if way == "in-process":
                    in_process(attack, model, data, threat, budget)
                else:
                    times["batches"].append(isolated(attack, model, data, threat, budget, device))
                synchronize(device)
                times[way].append(time.perf_counter() - started)
        inside, outside, loop = (statistics.median(times[w]) for w in ("in-process", "isolated", "batches"))
        print(f"{name:<12}{inside:>14.3f}{outside:>12.3f}{outside / inside:>7.2f}x{loop:>16.3f}{loop / inside:>7.2f}x")

if __name__ == "__main__":
    main()
