"""Liu et al. (2017) on a small scale: targeted transfer from an ensemble of surrogates against a
held-out architecture, compared with transfer from each surrogate alone, for each way of fusing the ensemble.

The target is the `standard` defense built with an architecture none of the surrogates has; each
surrogate is the host's model of that architecture (the same weights alone and in the ensemble).
Prints the targeted success rate (over clean-correct points) of each attack.

    python benchmarks/ensemble_transfer.py --target resnet --surrogates cnn,mlp,lenet --eps 0.3
"""

from __future__ import annotations

import argparse

from arena.config import home
from arena import Arena, Request
from arena_plugins.attacks.transfer import FUSIONS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--target", default="resnet", help="architecture of the held-out target")
    parser.add_argument("--surrogates", default="cnn,mlp,lenet")
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--schedules", default="10:0.1,40:0.05",
                        help="MI-FGSM schedules as STEPS:STEP_SIZE (step size a fraction of eps)")
    parser.add_argument("--db", default=None, help="results database (default: bench-transfer.db in ARENA_HOME)")
    args = parser.parse_args()

    surrogates = args.surrogates.split(",")
    if args.target in surrogates:
        parser.error(f"the target architecture {args.target} must be held out of the surrogates")
    bench = Arena(db=args.db or f"sqlite:///{home() / 'bench-transfer.db'}")

    def run(attack: str, params: dict):
        options = {"attacks": [attack], "defenses": ["standard"], "norm": "linf", "eps": [args.eps], "targeted": True}
        (outcome,) = bench.run(Request(dataset=args.dataset, params=params, options=options))["robustness"]
        return outcome

    target = {"standard": {"architecture": args.target}}
    print(f"{args.dataset}, targeted linf eps {args.eps}, target standard({args.target}), MI-FGSM")
    for schedule in args.schedules.split(","):
        steps, step_size = schedule.split(":")
        step = {"steps": int(steps), "step_size": float(step_size)}
        rates = {}
        for surrogate in surrogates:
            params = {**target, "transfer": {"surrogate": surrogate, **step}}
            outcome = run("transfer", params)
            rates[f"transfer from {surrogate}"] = outcome.run.robustness.attack_success_rate
        for fusion in FUSIONS:
            params = {**target, "ensemble-transfer": {"surrogates": surrogates, "fusion": fusion, **step}}
            outcome = run("ensemble-transfer", params)
            label = f"ensemble-transfer ({'+'.join(surrogates)}, {fusion})"
            rates[label] = outcome.run.robustness.attack_success_rate
        print(f"\n{steps} steps of {step['step_size']:g}·eps: targeted success rate")
        for label, rate in rates.items():
            print(f"  {label:<48}{100 * rate:6.1f}%")


if __name__ == "__main__":
    main()
