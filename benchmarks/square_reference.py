"""Arena's `square` against the authors' own Square Attack code, at the same query budgets.

The reference is `attack.py` of https://github.com/max-andr/square-attack (Andriushchenko et al.),
read from a local checkout given with ``--reference`` (nothing is downloaded, and nothing of it is
part of Arena). Its ``square_attack_linf`` / ``square_attack_l2`` run unchanged on the `standard`
model of the chosen dataset (margin loss, p_init 0.8, untargeted), wrapped in the small model
interface they expect; arena's attack runs through the host's score oracle. Prints robust accuracy
over the test split for each budget, averaged over ``--seeds`` seeds of arena's attack (the
reference seeds itself with 0).

The reference draws a square's corner with ``np.random.randint(0, h - s)``, which never places a
square on the last row or column; arena draws every position, as the paper's uniform choice does.
On 8x8 digits that leaves 15 of 64 pixels at their initial stripes for the reference, so it is
also run with the corner range widened by one (``full range``), its only change.

    python benchmarks/square_reference.py --reference ~/src/square-attack
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from arena.access import ScoreOracle
from arena import Arena
from arena.judging import predict
from arena.threat import ThreatModel
from arena_plugins.attacks.square import Square

SETTINGS = [("linf", 0.15, 200), ("linf", 0.1, 1000), ("linf", 0.2, 5000), ("l2", 1.0, 100), ("l2", 1.0, 1000)]


def margin_loss(y_onehot: np.ndarray, logits: np.ndarray, targeted: bool = False, loss_type: str = "margin_loss"):
    """The reference's ``Model.loss`` interface: the margin z_y - max_{j≠y} z_j, per image."""
    if loss_type != "margin_loss":
        raise ValueError("this comparison runs the untargeted margin loss only")
    own = (logits * y_onehot).sum(1, keepdims=True)
    others = np.where(y_onehot, -np.inf, logits).max(1, keepdims=True)
    margin = own - others
    return (-margin if targeted else margin).flatten()


class ReferenceModel:
    """The two methods the reference attack calls on its model."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def predict(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.model(torch.as_tensor(x, dtype=torch.float32)).numpy()

    loss = staticmethod(margin_loss)


class _Silent:
    def print(self, *args) -> None:
        pass


def load_reference(checkout: Path, full_range: bool) -> dict:
    """The reference's attack functions, from its ``attack.py`` (the script part left out)."""
    source = (checkout / "attack.py").read_text().split("if __name__ == '__main__':")[0]
    for module in ("import data\n", "import models\n", "import utils\n"):  # used by its script part only
        source = source.replace(module, "")
    if full_range:
        for side in ("h - s)", "w - s)", "h - s2)", "w - s2)"):
            source = source.replace(f"np.random.randint(0, {side}", f"np.random.randint(0, {side[:-1]} + 1)")
    namespace: dict = {}
    exec(compile(source, str(checkout / "attack.py"), "exec"), namespace)
    namespace["log"] = _Silent()
    return namespace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True, help="checkout of max-andr/square-attack")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    if not (args.reference / "attack.py").exists():
        sys.exit(f"--reference {args.reference}: no attack.py there; give a checkout of max-andr/square-attack")

    bench = Arena(db=f"sqlite:///{Path(tempfile.mkdtemp()) / 'r.db'}", device="cpu")
    data = bench.host.dataset(args.dataset)
    model = bench.host.plugin_model(bench.registry.get("defense", "standard"), {}, data, seed=0).model.cpu()
    x, y = data.splits.x_test.cpu(), data.splits.y_test.cpu()
    classes = data.plugin.classes
    reference_model = ReferenceModel(model)
    x_np, y_np = x.numpy().astype(np.float64), y.numpy()
    onehot = np.eye(classes, dtype=bool)[y_np]
    correct = reference_model.predict(x_np).argmax(1) == y_np
    references = {"as published": load_reference(args.reference, False),
                  "full range": load_reference(args.reference, True)}

    def accuracy(x_adv: torch.Tensor) -> float:
        return float((predict(model, x_adv, 512) == y).double().mean())

    print(f"{args.dataset}: standard model, clean accuracy {100 * accuracy(x):.1f}%, {len(x)} test points")
    print(f"{'threat':<12}{'queries':>8}{'arena':>10}{'reference':>12}{'ref. full range':>17}")
    for norm, eps, budget in SETTINGS:
        ours = []
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            ours.append(accuracy(Square().perturb(ScoreOracle(model, len(x), budget), x, y, ThreatModel(norm, eps))))
        theirs = []
        for namespace in references.values():
            attack = namespace["square_attack_linf" if norm == "linf" else "square_attack_l2"]
            with tempfile.TemporaryDirectory() as folder:
                _, x_best = attack(reference_model, x_np, onehot, correct, eps, budget, 0.8,
                                   str(Path(folder) / "metrics.npy"), False, "margin_loss")
            x_adv = x_np.copy()
            x_adv[correct] = x_best
            theirs.append(accuracy(torch.as_tensor(x_adv, dtype=torch.float32)))
        print(f"{norm + ' ' + format(eps, 'g'):<12}{budget:>8}{100 * np.mean(ours):>9.1f}%"
              f"{100 * theirs[0]:>11.1f}%{100 * theirs[1]:>16.1f}%")


if __name__ == "__main__":
    main()
