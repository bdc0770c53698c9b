"""The GPU figures, in one run: attack throughput on 32x32 colour networks against torchattacks,
with and without the fast path, and a CIFAR-10-shaped matrix through Arena's whole pipeline.

    python benchmarks/gpu.py                 # on a CUDA machine; prints a Markdown report
    python benchmarks/gpu.py --smoke         # the same code at toy sizes on the CPU (a check)

1. For PreAct ResNet-18 and WRN-28-10 with random weights on a batch of CIFAR-10-shaped images:
   images per second of the bare forward+backward pass (float32, and bfloat16 autocast), then of
   FGSM, PGD-10 and APGD-20 (Arena's, through `WhiteBox`, with and without `arena.fast`) and of
   torchattacks' PGD-10 on the same model and batch, each the median of several interleaved
   rounds, with Arena's speed relative to torchattacks'.
2. A matrix `-a fgsm,pgd,apgd -d standard,pgd-at` with `preact-resnet18` on a CIFAR-10-shaped
   dataset of random images (the device machine reaches no dataset server; the timings depend on
   the shapes, not the pixels): 10,000 training images, two epochs, 1,000 test points; the wall
   time and each pairing's attack time. Arena's iterative attacks stop early on success, so
   their images per second against torchattacks' are what a run costs, not equal work.

Paste the report into benchmarks/README.md with the machine's name.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import arena
from arena import ThreatModel, WhiteBox
from arena.models import build_classifier


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_rate(run, images: int, device: torch.device, rounds: int) -> float:
    times = []
    run()  # warm-up (kernels, autotuning, compilation)
    for _ in range(rounds):
        _synchronize(device)
        started = time.perf_counter()
        run()
        _synchronize(device)
        times.append(time.perf_counter() - started)
    return images / statistics.median(times)


def throughput(device: torch.device, batch: int, rounds: int, architectures: list[str]) -> list[str]:
    from arena.fast import FastModel
    from arena_plugins.attacks.apgd import APGD
    from arena_plugins.attacks.fgsm import FGSM
    from arena_plugins.attacks.pgd import PGD

    lines = ["| network | what | images/s | vs torchattacks PGD-10 |", "| --- | --- | --- | --- |"]
    threat = ThreatModel("linf", 8 / 255)
    for architecture in architectures:
        torch.manual_seed(0)
        model = build_classifier(architecture, (3, 32, 32), 10).to(device).eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        x = torch.rand(batch, 3, 32, 32, device=device)
        y = torch.randint(0, 10, (batch,), device=device)

        def passes(autocast: bool):
            def run():
                inputs = x.detach().requires_grad_(True)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    loss = F.cross_entropy(model(inputs), y)
                torch.autograd.grad(loss, inputs)
            return run

        rates = {"forward+backward, float32": _median_rate(passes(False), batch, device, rounds),
                 "forward+backward, bfloat16": _median_rate(passes(True), batch, device, rounds)}
        try:
            import torchattacks

            peer = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=10, random_start=True)
            rates["torchattacks PGD-10"] = _median_rate(lambda: peer(x, y), batch, device, rounds)
        except ImportError:
            pass
        for fast in (False, True):
            view = FastModel(model, device) if fast else model
            access = WhiteBox(view)
            tag = " (fast)" if fast else ""
            for name, attack in (("FGSM", FGSM()), ("PGD-10", PGD(steps=10)), ("APGD-20", APGD(iterations=20))):
                rates[f"Arena {name}{tag}"] = _median_rate(lambda attack=attack: attack.perturb(access, x, y, threat),
                                                           batch, device, rounds)
        peer_rate = rates.get("torchattacks PGD-10")
        for what, rate in rates.items():
            ratio = f"{rate / peer_rate:.2f}x" if peer_rate and "PGD-10" in what and "Arena" in what else ""
            lines.append(f"| {architecture} | {what} | {rate:,.0f} | {ratio} |")
    return lines


class CifarShaped(arena.Dataset):
    """Random 32x32 colour images of 10 classes, at CIFAR-10's split sizes (or smaller)."""

    name = "cifar-shaped"
    shape = (3, 32, 32)
    classes = 10
    levels = 256
    default_threat = ThreatModel("linf", 8 / 255)
    in_all = False
    sizes = (50_000, 10_000)

    def load(self):
        generator = torch.Generator().manual_seed(0)
        train, test = self.sizes

        def images(n):
            return torch.randint(0, 256, (n, 3, 32, 32), generator=generator).float() / 255

        return arena.Splits(images(train), torch.randint(0, 10, (train,), generator=generator),
                            images(test), torch.randint(0, 10, (test,), generator=generator))


def matrix(device: torch.device, smoke: bool) -> list[str]:
    from arena.plugins import Source, load_registry, set_registry

    class Package:
        @staticmethod
        @arena.hookimpl
        def register_datasets(register):
            register(CifarShaped)

    # A fifth of CIFAR-10's training split and two epochs: the matrix fits a 10-minute device
    # slot; per-epoch costs scale linearly to the full split.
    CifarShaped.sizes = (256, 64) if smoke else (10_000, 2_000)
    set_registry(load_registry(extra=[(Package(), Source("benchmark", "0"))]))
    epochs, n = (1, 32) if smoke else (2, 1000)
    request = arena.Request(dataset="cifar-shaped", options={
        "attacks": ["fgsm", "pgd", "apgd"], "defenses": ["standard", "pgd-at"], "n": n}, params={
        "standard": {"architecture": "preact-resnet18", "epochs": epochs},
        "pgd-at": {"architecture": "preact-resnet18", "epochs": epochs}})
    with tempfile.TemporaryDirectory() as home:
        started = time.perf_counter()
        with arena.Arena(home=Path(home), device=str(device)) as bench:
            by_track = bench.run(request)
        wall = time.perf_counter() - started
    lines = [f"Matrix: 3 attacks x 2 defenses, preact-resnet18, {epochs} epochs, {n} test points: {wall:.1f} s wall",
             "", "| attack | defense | robust | attack s |", "| --- | --- | --- | --- |"]
    for outcome in by_track["robustness"]:
        result = outcome.run.robustness
        lines.append(f"| {result.attack} | {result.defense} | {result.robust_accuracy:.3f} | "
                     f"{outcome.run.provenance.get('attack_seconds', 0):.1f} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="toy sizes on the CPU: checks the script, measures nothing")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.smoke:
        device, batch, rounds, architectures = torch.device("cpu"), 4, 1, ["preact-resnet18"]
    else:
        if not torch.cuda.is_available():
            print("no CUDA device here: benchmarks/gpu.py measures a GPU (use --smoke to check the script on the CPU)",
                  file=sys.stderr)
            return 2
        device, batch, rounds, architectures = torch.device("cuda"), args.batch, args.rounds, ["preact-resnet18",
                                                                                              "wrn-28-10"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (smoke run)"
    print(f"# benchmarks/gpu.py on {name}, torch {torch.__version__}\n")
    print("\n".join(throughput(device, batch, rounds, architectures)))
    print()
    print("\n".join(matrix(device, args.smoke)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
