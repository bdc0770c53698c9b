"""Attack throughput against torchattacks, adversarial-robustness-toolbox and foolbox.

Every library attacks the same model (the `standard` defense of the dataset, from Arena's model
cache), on the same batch and device; the contenders of one attack run interleaved, round after
round, in one process, and each reports the median of its rounds. Printed per contender: images
per second, its speed relative to each peer, and its time over the bare cost of the passes the
attack needs (k forward+backward passes of the batch for k gradient steps; k forward passes for
k queries), so 1.00x means no overhead beyond the model itself.

    pip install -e ".[bench]" && pip install --no-deps torchattacks
    python benchmarks/attacks.py --dataset digits --batch 256
    python benchmarks/attacks.py --dataset mnist5k --batch 512 --device cuda --fast
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from arena import ThreatModel, WhiteBox
from arena.access import ScoreOracle
from arena.config import home
from arena.fast import FastModel, tf32_matmul
from arena import Arena
from arena.host import resolve_device
from arena_plugins.attacks.apgd import APGD
from arena_plugins.attacks.fgsm import FGSM
from arena_plugins.attacks.pgd import PGD
from arena_plugins.attacks.square import Square

PGD_STEPS, APGD_STEPS, SQUARE_QUERIES = 10, 20, 100


def standard_model(dataset: str, device: torch.device):
    bench = Arena(db=f"sqlite:///{home() / 'bench.db'}", device=str(device))
    data = bench.host.dataset(dataset)
    model = bench.host.plugin_model(bench.registry.get("defense", "standard"), {}, data, seed=0).model
    return model, data


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_passes(model, x, y, backward: bool) -> Callable[[int], None]:
    """k forward (and backward, for the input gradient) passes of the batch, nothing else."""

    def run(k: int) -> None:
        for _ in range(k):
            if backward:
                xg = x.detach().requires_grad_(True)
                torch.autograd.grad(F.cross_entropy(model(xg), y), xg)
            else:
                with torch.no_grad():
                    model(x)

    return run


def contenders(name: str, model, x, y, eps: float, fast_model) -> dict[str, Callable[[], object]]:
    """The same attack in each library, as a call of no arguments."""
    threat = ThreatModel("linf", eps)
    runs: dict[str, Callable[[], object]] = {}
    import torchattacks

    art = _art_classifier(model, x) if _has("art") else None
    fmodel = _foolbox_model(model) if _has("foolbox") else None
    if name == "fgsm":
        runs["arena"] = lambda: FGSM().perturb(WhiteBox(model), x, y, threat)
        if fast_model is not None:
            runs["arena --fast"] = lambda: FGSM().perturb(WhiteBox(fast_model), x, y, threat)
        peer = torchattacks.FGSM(model, eps=eps)
        runs["torchattacks"] = lambda: peer(x, y)
        if art is not None:
            from art.attacks.evasion import FastGradientMethod

            attack = FastGradientMethod(art, eps=eps, batch_size=len(x))
            runs["art"] = lambda: attack.generate(x.cpu().numpy(), y.cpu().numpy())
        if fmodel is not None:
            import foolbox

            runs["foolbox"] = lambda: foolbox.attacks.FGSM()(fmodel, x, y, epsilons=eps)
    elif name == f"pgd-{PGD_STEPS}":
        step = 0.25 * eps
        for early in (False, True):
            attack = PGD(steps=PGD_STEPS, step_size=0.25, early_stop=early)
            label = "arena" + (" early-stop" if early else "")
            runs[label] = lambda attack=attack: attack.perturb(WhiteBox(model), x, y, threat)
        if fast_model is not None:
            attack = PGD(steps=PGD_STEPS, step_size=0.25, early_stop=False)
            runs["arena --fast"] = lambda: attack.perturb(WhiteBox(fast_model), x, y, threat)
        peer = torchattacks.PGD(model, eps=eps, alpha=step, steps=PGD_STEPS)
        runs["torchattacks"] = lambda: peer(x, y)
        if art is not None:
            from art.attacks.evasion import ProjectedGradientDescentPyTorch

            attack = ProjectedGradientDescentPyTorch(art, eps=eps, eps_step=step, max_iter=PGD_STEPS,
                                                     batch_size=len(x), verbose=False)
            runs["art"] = lambda: attack.generate(x.cpu().numpy(), y.cpu().numpy())
        if fmodel is not None:
            import foolbox

            fb = foolbox.attacks.LinfPGD(abs_stepsize=step, steps=PGD_STEPS, random_start=True)
            runs["foolbox"] = lambda: fb(fmodel, x, y, epsilons=eps)
    elif name == f"apgd-{APGD_STEPS}":
        for early in (False, True):
            attack = APGD(iterations=APGD_STEPS, early_stop=early)
            runs["arena" + (" early-stop" if early else "")] = lambda attack=attack: attack.perturb(
                WhiteBox(model), x, y, threat)
        peer = torchattacks.APGD(model, eps=eps, steps=APGD_STEPS)
        runs["torchattacks"] = lambda: peer(x, y)
        if art is not None:
            from art.attacks.evasion import AutoProjectedGradientDescent

            attack = AutoProjectedGradientDescent(art, eps=eps, eps_step=2 * eps, max_iter=APGD_STEPS, nb_random_init=1,
                                                  batch_size=len(x), loss_type="cross_entropy", verbose=False)
            runs["art"] = lambda: attack.generate(x.cpu().numpy(), y.cpu().numpy())
    elif name == f"square-{SQUARE_QUERIES}":
        runs["arena"] = lambda: Square().perturb(ScoreOracle(model, len(x), SQUARE_QUERIES), x, y, threat)
        peer = torchattacks.Square(model, eps=eps, n_queries=SQUARE_QUERIES)
        runs["torchattacks"] = lambda: peer(x, y)
        if art is not None:
            from art.attacks.evasion import SquareAttack

            attack = SquareAttack(art, eps=eps, max_iter=SQUARE_QUERIES, nb_restarts=1, batch_size=len(x), verbose=False)
            runs["art"] = lambda: attack.generate(x.cpu().numpy(), y.cpu().numpy())
    return runs


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _art_classifier(model, x):
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                             nb_classes=10, clip_values=(0.0, 1.0), device_type=x.device.type)


def _foolbox_model(model):
    import foolbox

    return foolbox.PyTorchModel(model, bounds=(0, 1))


def passes_needed(name: str) -> tuple[int, bool]:
    """The passes an attack needs: (count, with backward)."""
    if name == "fgsm":
        return 1, True
    if name.startswith(("pgd", "apgd")):
        return int(name.split("-")[1]), True
    return int(name.split("-")[1]), False


def timed(fn: Callable[[], object], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--attacks", default=f"fgsm,pgd-{PGD_STEPS},apgd-{APGD_STEPS},square-{SQUARE_QUERIES}")
    parser.add_argument("--fast", action="store_true", help="also time Arena's fast path (arena.fast)")
    args = parser.parse_args()

    device = resolve_device(args.device)
    model, data = standard_model(args.dataset, device)
    x, y = data.splits.x_test[: args.batch], data.splits.y_test[: args.batch]
    if len(x) < args.batch:  # repeat the test split to fill a large batch
        reps = -(-args.batch // len(x))
        x, y = x.repeat(reps, 1, 1, 1)[: args.batch], y.repeat(reps)[: args.batch]
    eps = data.plugin.default_threat.eps
    fast_model = FastModel(model, device) if args.fast else None
    print(f"{args.dataset}, batch {len(x)}, {device} ({torch.get_num_threads()} threads), eps {eps}, "
          f"median of {args.rounds} interleaved rounds")
    with tf32_matmul(device, enabled=args.fast):
        for name in args.attacks.split(","):
            runs = contenders(name, model, x, y, eps, fast_model)
            count, backward = passes_needed(name)
            runs = {"bare passes": lambda: bare_passes(model, x, y, backward)(count), **runs}
            for fn in runs.values():  # warm-up (and compilation)
                fn()
            seconds: dict[str, list[float]] = {label: [] for label in runs}
            for round_ in range(args.rounds):
                labels = list(runs)
                for label in labels[round_ % len(labels):] + labels[: round_ % len(labels)]:
                    torch.manual_seed(round_)
                    seconds[label].append(timed(runs[label], device))
            report(name, {label: statistics.median(values) for label, values in seconds.items()}, len(x), count,
                   backward)


def report(name: str, median: dict[str, float], batch: int, count: int, backward: bool) -> None:
    bare = median.pop("bare passes")
    peers = [label for label in median if not label.startswith("arena")]
    kind = "fwd+bwd" if backward else "fwd"
    print(f"\n{name}: bare cost {count} {kind} passes = {bare * 1e3:.1f} ms ({batch / bare:,.0f} img/s)")
    header = f"  {'library':<20}{'img/s':>10}{'x bare':>9}" + "".join(f"{'vs ' + p:>16}" for p in peers)
    print(header)
    for label, value in median.items():
        speed = "".join(f"{median[p] / value:>15.2f}x" for p in peers)
        print(f"  {label:<20}{batch / value:>10,.0f}{value / bare:>8.2f}x{speed}")


if __name__ == "__main__":
    main()
