"""AutoAttack in Arena against torchattacks and the authors' code, on the same weights and points.

One ``arena run -a all -a autoattack -p apgd.loss=dlr -d DEFENSES`` (``--attacks`` narrows ``all``) (the whole pipeline, into a
database of its own) gives, per defense, Arena's ``AutoAttack (standard)`` column (the four runs of
the preset: APGD-CE, APGD-T, FAB-T, Square with 5,000 queries), its worst case over every attack,
and the runs of APGD-DLR, APGD-T and FAB-T alone. On the same cached weights and the same first
``--n`` test points, the script then runs:

- torchattacks' ``AutoAttack(version="standard")`` as shipped (its APGD-CE, APGD-T and FAB-T
  run 10 iterations each, not AutoAttack's 100);
- torchattacks' four attacks at AutoAttack's published settings (100 iterations, Square with 5,000
  queries and the unrescaled schedule of p), chained as AutoAttack chains them;
- with ``--reference PATH`` (a checkout of fra31/auto-attack; nothing is downloaded, nothing of it
  is part of Arena), the authors' ``AutoAttack(version='standard')`` on the defenses in
  ``--per-attack``;

and, for the defenses in ``--per-attack``, APGD-DLR, APGD-T and FAB-T alone in torchattacks (100
iterations) and, with ``--reference``, in the authors' code. ``--peers`` narrows the AutoAttack
peers (``shipped``, ``published``, ``authors``; empty for none, e.g. for the per-attack table
alone). Robust accuracies are printed as Markdown tables, with the points on which Arena's figure
and the peer's disagree.

    python benchmarks/autoattack.py --dataset mnist5k --n 1000 --reference ~/src/auto-attack
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchattacks

from arena import Arena
from arena.judging import predict
from arena.presets import AUTOATTACK

PER_ATTACK = {"apgd(loss=dlr)": "APGD-DLR", "apgd-t": "APGD-T", "fab": "FAB-T"}


def arena_cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-c", "from arena.cli import main; main()", *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"arena {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def within(x: torch.Tensor, x_adv: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    """The peer's output where it is within eps (AutoAttack's own rule), else the clean point."""
    flat = (x_adv - x).flatten(1)
    size = flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)
    return torch.where((size <= eps + 1e-6).view(-1, *[1] * (x.dim() - 1)), x_adv, x)


def robust(model, x, x_adv, y, norm, eps) -> np.ndarray:
    return (predict(model, within(x, x_adv, norm, eps), 512) == y).cpu().numpy()


def chain(attacks, model, x, y, norm, eps) -> np.ndarray:
    """AutoAttack's protocol: each attack on the points every earlier one left robust."""
    still = (predict(model, x, 512) == y).cpu().numpy()
    for attack in attacks:
        rows = np.flatnonzero(still)
        if len(rows) == 0:
            break
        index = torch.as_tensor(rows)
        still[rows] &= robust(model, x[index], attack(x[index], y[index]), y[index], norm, eps)
    return still


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--defenses", default="all", help="comma-separated, or all (every built-in but external)")
    parser.add_argument("--per-attack", default="standard,pgd-at", help="defenses for the per-attack table")
    parser.add_argument("--attacks", default="all", help="the attacks Arena runs beside autoattack (all: every one; "
                        "the worst case is over these)")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--norm", default=None)
    parser.add_argument("--eps", type=float, default=None)
    parser.add_argument("--reference", type=Path, default=None, help="checkout of fra31/auto-attack")
    parser.add_argument("--db", default=None, help="results database (default: a file under $ARENA_HOME)")
    parser.add_argument("--peers", default="shipped,published,authors",
                        help="the AutoAttack peers to run: shipped (torchattacks as shipped), published (torchattacks "
                        "at the published settings), authors (with --reference); empty for none")
    args = parser.parse_args()
    peer_names = [name for name in args.peers.split(",") if name]
    if set(peer_names) - {"shipped", "published", "authors"}:
        sys.exit(f"--peers {args.peers}: choose among shipped, published, authors")
    if args.reference is not None:
        if not (args.reference / "autoattack" / "autoattack.py").exists():
            sys.exit(f"--reference {args.reference}: no autoattack/autoattack.py there; give a checkout of "
                     "fra31/auto-attack")
        sys.path.insert(0, str(args.reference))
    home = Path(os.environ.get("ARENA_HOME", Path.home() / ".arena"))
    db = args.db or f"sqlite:///{home / f'autoattack-{args.dataset}.db'}"
    bench = Arena(db=db, device="cpu")
    registry = bench.registry
    defenses = [name for name in registry.names("defense") if name != "external"] if args.defenses == "all" \
        else args.defenses.split(",")
    threat = ["--norm", args.norm] * bool(args.norm) + ["--eps", str(args.eps)] * (args.eps is not None)
    started = time.perf_counter()
    arena_cli("run", "--dataset", args.dataset, "-a", args.attacks, "-a", "autoattack", "-p", "apgd.loss=dlr",
              *[item for name in defenses for item in ("-d", name)], "--n", str(args.n), *threat, "--db", db)
    arena_seconds = time.perf_counter() - started
    board_views = json.loads(arena_cli("leaderboard", "--dataset", args.dataset, "--format", "json", "--db", db))
    rows = json.loads(arena_cli("results", "--json", "--dataset", args.dataset, "--db", db))

    data = bench.host.dataset(args.dataset)
    classes = data.plugin.classes
    norm = args.norm or data.plugin.default_threat.norm
    eps = args.eps if args.eps is not None else data.plugin.default_threat.eps
    x, y = data.splits.x_test[: args.n].cpu(), data.splits.y_test[: args.n].cpu()
    view = next(v for v in board_views if v["table"] == "defenses" and v["norm"] == norm and v["eps"] == eps
                and not v["targeted"])
    entries = {entry["defense"]: entry for entry in view["entries"]}
    outcomes = bench.store.sample_outcomes([row["run_id"] for row in rows])
    peer_norm = {"linf": "Linf", "l2": "L2"}[norm]

    def arena_points(defense: str, members) -> np.ndarray:
        """Per point, robust against every one of the given stored runs (the adaptive evaluation
        where the pairing has one, as the board ranks)."""
        verdict = np.ones(len(y), dtype=bool)
        for match in members:
            mine = [r for r in rows if r["defense"] == defense and r["norm"] == norm and r["eps"] == eps
                    and match(r) and r["status"] == "ok" and r["superseded_by"] is None]
            mine.sort(key=lambda r: ((r.get("evaluation") or {}).get("mode") == "adaptive", r["run_id"]))
            index, robust_ = outcomes[mine[-1]["run_id"]]
            verdict[np.asarray(index)] &= np.asarray(robust_, dtype=bool)
        return verdict

    print(f"\n{args.dataset}, {norm} eps {eps:g}, first {args.n} test points; arena pipeline "
          f"({len(defenses)} defenses, -a {args.attacks} -a autoattack) {arena_seconds:.0f} s\n")
    authors = args.reference is not None and "authors" in peer_names
    header = ["defense", "clean", "arena AutoAttack", "arena worst case"] + \
        ["torchattacks AA (shipped, 10 it.)"] * ("shipped" in peer_names) + \
        ["torchattacks AA (100 it.)"] * ("published" in peer_names) + ["authors' AA"] * authors + \
        ["points arena-only robust"]
    print("| " + " | ".join(header) + " |\n|" + " --- |" * len(header))
    per_attack_rows = []
    for defense in defenses:
        model = bench.host.plugin_model(registry.get("defense", defense), {}, data, seed=0).model.cpu().eval()
        entry = entries[defense]
        ours = arena_points(defense, [member.matches for member in AUTOATTACK.members])
        peers = []
        if "shipped" in peer_names:
            peers.append(robust(model, x, torchattacks.AutoAttack(model, norm=peer_norm, eps=eps, version="standard",
                                                                   n_classes=classes, seed=0)(x, y), y, norm, eps))
        if "published" in peer_names:
            peers.append(chain([
                torchattacks.APGD(model, norm=peer_norm, eps=eps, steps=100, n_restarts=1, loss="ce", seed=0),
                torchattacks.APGDT(model, norm=peer_norm, eps=eps, steps=100, n_restarts=1, n_classes=classes, seed=0),
                torchattacks.FAB(model, norm=peer_norm, eps=eps, steps=100, n_restarts=1, multi_targeted=True,
                                 n_classes=classes, seed=0),
                torchattacks.Square(model, norm=peer_norm, eps=eps, n_queries=5000, n_restarts=1, p_init=0.8,
                                    resc_schedule=False, seed=0),
            ], model, x, y, norm, eps))
        if authors and defense in args.per_attack.split(","):
            from autoattack import AutoAttack

            reference = AutoAttack(model, norm=peer_norm, eps=eps, version="standard", seed=0, verbose=False,
                                   device="cpu")
            peers.append(robust(model, x, reference.run_standard_evaluation(x, y, bs=len(x)), y, norm, eps))
        arena_only = int((ours & ~np.logical_and.reduce(peers)).sum()) if peers else "—"
        figures = [f"{100 * p.mean():.1f}%" for p in peers] + ["—"] * (len(header) - 5 - len(peers))
        cells = [defense, f"{100 * entry['clean_accuracy']:.1f}%", f"{100 * ours.mean():.1f}%",
                 f"{100 * entry['worst_case']:.1f}%", *figures, str(arena_only)]
        print("| " + " | ".join(cells) + " |", flush=True)
        if entry["autoattack"] is None or abs(entry["autoattack"] - ours.mean()) > 1e-9:
            print(f"  (the board's AutoAttack figure for {defense} is {entry['autoattack']}: not the runs' worst case)")
        if defense in args.per_attack.split(","):
            per_attack_rows += per_attack(defense, model, x, y, norm, eps, peer_norm, classes, arena_points,
                                          args.reference is not None)
            latest = "; ".join(" ".join(cells[1:]) for cells in per_attack_rows[-3:])
            print(f"  (per attack, {defense}: {latest})", flush=True)
    if per_attack_rows:
        header = ["defense", "attack", "arena", "torchattacks (100 it.)", "points apart"] + \
            ["authors'", "points apart"] * (args.reference is not None)
        print("\n| " + " | ".join(header) + " |\n|" + " --- |" * len(header))
        for cells in per_attack_rows:
            print("| " + " | ".join(cells) + " |")


def per_attack(defense, model, x, y, norm, eps, peer_norm, classes, arena_points, reference) -> list[list[str]]:
    peers = {
        "apgd(loss=dlr)": [lambda: torchattacks.APGD(model, norm=peer_norm, eps=eps, steps=100, n_restarts=1, loss="dlr",
                                                     seed=0)],
        "apgd-t": [lambda: torchattacks.APGDT(model, norm=peer_norm, eps=eps, steps=100, n_restarts=1, n_classes=classes,
                                              seed=0)],
        "fab": [lambda: torchattacks.FAB(model, norm=peer_norm, eps=eps, steps=100, n_restarts=1, multi_targeted=True,
                                         n_classes=classes, seed=0)],
    }
    if reference:
        from autoattack.autopgd_base import APGDAttack, APGDAttack_targeted
        from autoattack.fab_pt import FABAttack_PT

        def authors_fab():
            attack = FABAttack_PT(model, n_restarts=1, n_iter=100, eps=eps, seed=0, norm=peer_norm, device="cpu")
            attack.targeted, attack.n_target_classes = True, classes - 1
            return attack.perturb

        peers["apgd(loss=dlr)"].append(lambda: APGDAttack(model, n_restarts=1, n_iter=100, eps=eps, norm=peer_norm,
                                                          loss="dlr", seed=0, device="cpu").perturb)
        peers["apgd-t"].append(lambda: APGDAttack_targeted(model, n_restarts=1, n_iter=100, eps=eps, norm=peer_norm,
                                                           n_target_classes=classes - 1, seed=0, device="cpu").perturb)
        peers["fab"].append(authors_fab)
    out = []
    for label, makers in peers.items():
        ours = arena_points(defense, [lambda r, label=label: r["attack_label"] == label])
        cells = [defense, PER_ATTACK[label], f"{100 * ours.mean():.1f}%"]
        for make in makers:
            torch.manual_seed(0)
            theirs = robust(model, x, make()(x, y), y, norm, eps)
            cells += [f"{100 * theirs.mean():.1f}%", str(int((ours != theirs).sum()))]
        out.append(cells)
    return out


if __name__ == "__main__":
    main()
