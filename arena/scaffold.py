"""``arena new KIND NAME``: an installable plugin package that works as written.

The package holds ``pyproject.toml`` (the ``arena`` entry point, a dependency on this Arena), a
module with a minimal working plugin of the kind (documented hyperparameters with their
bounds, the right base class and access level), a README, and tests that use
:mod:`arena.testing`: the conformance checks and one ``arena run`` on the tiny built-in dataset.
After ``pip install -e`` of it, ``pytest`` passes, ``arena plugins`` lists it and ``arena run``
runs it.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from string import Template

from .errors import InvalidInputError

KINDS = ("attack", "defense", "generator", "dataset")
#: Names whose package (``arena-NAME``, module ``arena_NAME``) is one of Arena's own.
RESERVED = {"bench", "plugins", "leaderboard", "testing"}
_NAME = re.compile(r"[a-z][a-z0-9-]*[a-z0-9]")

_PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "arena-$name"
version = "0.1.0"
description = "$summary"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["arena-bench>=$arena_version"]

[project.optional-dependencies]
test = ["pytest>=7"]

# Arena finds the plugin through this entry point group.
[project.entry-points.arena]
$name = "$module"

[tool.setuptools]
package-dir = { "" = "src" }
packages = ["$module"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

_README = """\
# arena-$name

$summary: a plugin for [Arena](https://pypi.org/project/arena-bench/).

```bash
pip install -e '.[test]'
pytest                      # Arena's conformance checks and one run on a tiny dataset
arena plugins               # lists the $kind $name
arena plugins check $name   # the same conformance checks, from the command line
$run_example
```

Hyperparameters are the keyword arguments of `$cls.__init__`, each with its default and the
values it accepts in `bounds`; set them with `-p $name.NAME=VALUE`. Arena records them with
every result and hashes them, with this package's version and code, into each result's key.

Publish with `python -m build` and `twine upload dist/*`; anyone who then runs
`pip install arena-$name` has `$name` in `arena plugins`.
"""

_TEST = """\
\"\"\"Arena's conformance checks, and $name through `arena run` on the tiny built-in dataset.\"\"\"

from arena.testing import TINY_DATASET, check_$kind

from $module import $cls


def test_${ident}_keeps_the_${kind}_contract(tmp_path):
    check_$kind($cls$check_overrides, home=tmp_path)


def test_${ident}_runs_through_arena(arena_cli):
    result = arena_cli($run_args)
    assert result.ok, result.stderr
    runs = [run for run in result.results if run.get("$field") == "$name"]
    assert runs and all(run["status"] == "ok" for run in runs), runs
"""

_ATTACK = '''\
"""$summary."""

from __future__ import annotations

import torch

import arena


class $cls(arena.Attack):
    """$summary: steps of size ``step`` * eps along the sign of the loss gradient (L-inf) or
    the normalised gradient (L2), each projected back onto the threat model's ball.

    Hyperparameters:
        steps: how many gradient steps (1 is FGSM / FGM, Goodfellow et al. 2015).
        step: each step's size as a fraction of eps.
    """

    name = "$name"
    access = arena.Access.WHITE_BOX
    norms = ("linf", "l2")
    supports_targeted = True
    bounds = {"steps": arena.Range(1), "step": arena.Range(0, 1, low_inclusive=False)}

    def __init__(self, steps: int = 10, step: float = 0.25) -> None:
        self.steps = steps
        self.step = step

    def perturb(self, access, x, y, threat, target=None):
        labels = target if threat.targeted else y
        sign = -1.0 if threat.targeted else 1.0  # targeted: down the target's loss
        x_adv = x.clone()
        for _ in range(self.steps):
            grad = sign * access.gradient(x_adv, labels)
            if threat.norm == "linf":
                direction = grad.sign()
            else:
                norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
                direction = grad / norm.view(-1, *([1] * (grad.dim() - 1)))
            x_adv = arena.project(x, x_adv + self.step * threat.eps * direction, threat)
        return x_adv.detach()


@arena.hookimpl
def register_attacks(register):
    register($cls)
'''

_DEFENSE = '''\
"""$summary."""

from __future__ import annotations

import arena


class $cls(arena.Defense):
    """$summary: the host's classifier for the dataset, trained with Adam on the clean
    training split, with label smoothing.

    Hyperparameters:
        epochs: passes over the training split.
        lr: Adam's learning rate.
        smoothing: label smoothing (0 is plain cross-entropy).
    """

    name = "$name"
    bounds = {"epochs": arena.Range(1), "lr": arena.Range(0, 1, low_inclusive=False),
              "smoothing": arena.Range(0, 0.5)}

    def __init__(self, epochs: int = 10, lr: float = 0.001, smoothing: float = 0.1) -> None:
        self.epochs = epochs
        self.lr = lr
        self.smoothing = smoothing

    def build(self, dataset, ctx):
        return ctx.default_classifier()

    def train(self, model, ctx):
        import torch.nn.functional as F

        smoothing = self.smoothing

        def loss(model, x, y):
            return F.cross_entropy(model(x), y, label_smoothing=smoothing)

        return ctx.fit(model, epochs=self.epochs, lr=self.lr, batch_size=64, loss=loss)


@arena.hookimpl
def register_defenses(register):
    register($cls)
'''

_GENERATOR = '''\
"""$summary."""

from __future__ import annotations

import torch
from torch import nn

import arena


class _PixelFrequencies(nn.Module):
    """Log-probabilities of each pixel's grey level, independent of the other pixels."""

    def __init__(self, shape: tuple[int, int, int], levels: int) -> None:
        super().__init__()
        self.levels = levels
        self.register_buffer("log_p", torch.full((*shape, levels), -float(torch.log(torch.tensor(levels)))))


class $cls(arena.Generator):
    """$summary: every pixel drawn independently from its grey levels' frequencies in the
    training split (add-``alpha`` smoothed); its exact likelihood is a baseline for any model.

    Hyperparameters:
        alpha: pseudo-count added to every level of every pixel.
    """

    name = "$name"
    likelihood = "exact"
    bounds = {"alpha": arena.Range(0, low_inclusive=False)}

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha

    def build(self, dataset, ctx):
        return _PixelFrequencies(dataset.shape, dataset.levels)

    def train(self, model, ctx):
        levels, x = model.levels, ctx.splits.x_train
        counts = torch.zeros(x[0].numel(), levels, dtype=torch.float64, device=x.device)
        for start in range(0, len(x), 1024):  # in batches: large datasets never expand at once
            index = (x[start : start + 1024] * (levels - 1)).round().long().clamp(0, levels - 1).flatten(1)
            counts.scatter_add_(1, index.T, torch.ones(index.T.shape, dtype=torch.float64, device=x.device))
        counts += self.alpha
        log_p = (counts / counts.sum(1, keepdim=True)).log().float()
        model.log_p.copy_(log_p.reshape(model.log_p.shape))
        return [{"epoch": 1, "train_images": len(x)}]

    def sample(self, model, n, generator):
        probabilities = model.log_p.exp().reshape(-1, model.levels)
        draws = torch.multinomial(probabilities.cpu(), n, replacement=True, generator=generator)  # (pixels, n)
        images = draws.T.reshape(n, *model.log_p.shape[:-1]).float() / (model.levels - 1)
        return images.to(model.log_p.device)

    def log_likelihood(self, model, x):
        index = (x * (model.levels - 1)).round().long().clamp(0, model.levels - 1)
        per_pixel = model.log_p.unsqueeze(0).expand(len(x), *model.log_p.shape).gather(-1, index.unsqueeze(-1))
        return per_pixel.flatten(1).sum(1)


@arena.hookimpl
def register_generators(register):
    register($cls)
'''

_DATASET = '''\
"""$summary."""

from __future__ import annotations

import functools

import numpy as np
import torch

import arena


class $cls(arena.Dataset):
    """$summary: scikit-learn's 8x8 handwritten digits (shipped with scikit-learn, nothing
    downloaded) mirrored left to right, with a fixed stratified split.

    Hyperparameters:
        test_fraction: the share of images in the test split.
    """

    name = "$name"
    shape = (1, 8, 8)
    classes = 10
    levels = 17  # grey levels 0..16
    default_threat = arena.ThreatModel("linf", 0.2)
    bounds = {"test_fraction": arena.Range(0.05, 0.5)}

    def __init__(self, test_fraction: float = 0.2) -> None:
        self.test_fraction = test_fraction

    def load(self):
        return _load(self.test_fraction)


@functools.cache
def _load(test_fraction: float) -> arena.Splits:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images[:, :, ::-1] / 16.0).reshape(-1, 1, 8, 8)
    x_train, x_test, y_train, y_test = train_test_split(images, digits.target, test_size=test_fraction,
                                                        stratify=digits.target, random_state=0)
    as_images = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    as_labels = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))  # noqa: E731
    return arena.Splits(as_images(x_train), as_labels(y_train), as_images(x_test), as_labels(y_test))


@arena.hookimpl
def register_datasets(register):
    register($cls)
'''

#: Per kind: the module template, a one-line summary, the results field naming the plugin, the
#: test's `arena run` arguments and overrides for fast checks.
_KINDS = {
    "attack": (_ATTACK, "An iterative gradient-sign attack", "attack",
               '"run", "-a", "$name", "-d", "standard", "--dataset", TINY_DATASET, "-p", "standard.epochs=2", '
               '"--n", "20"', ""),
    "defense": (_DEFENSE, "A classifier trained with label smoothing", "defense",
                '"run", "-a", "fgsm", "-d", "$name", "--dataset", TINY_DATASET, "-p", "$name.epochs=2", "--n", "20"',
                ', {"epochs": 2}'),
    "generator": (_GENERATOR, "Independent pixel frequencies", "generator",
                  '"run", "-g", "$name", "--dataset", TINY_DATASET, "--samples", "64"', ""),
    "dataset": (_DATASET, "scikit-learn's digits, mirrored", "dataset",
                '"run", "-a", "fgsm", "-d", "standard", "--dataset", "$name", "-p", "standard.epochs=1", "--n", "20"',
                ""),
}


def scaffold(kind: str, name: str, folder: Path) -> Path:
    """Write the package of a new ``kind`` plugin ``name`` under ``folder``; its path."""
    import arena

    if kind not in KINDS:
        raise InvalidInputError(f"unknown plugin kind {kind!r}: use one of {', '.join(KINDS)}")
    if not _NAME.fullmatch(name):
        raise InvalidInputError(f"plugin name {name!r}: use lower-case letters, digits and '-', starting with a "
                                "letter (e.g. my-attack)")
    cls_name = "".join(part.capitalize() for part in name.split("-"))
    if keyword.iskeyword(cls_name) or keyword.iskeyword(name.replace("-", "_")) or name in RESERVED:
        raise InvalidInputError(f"plugin name {name!r} would make a package or class that shadows Python's or "
                                "Arena's own: choose another (e.g. my-" + name + ")")
    from .plugins import get_registry

    registry = get_registry()
    if name in registry.plugins.get(kind, {}):
        raise InvalidInputError(f"a {kind} named {name!r} is installed already ({registry.get(kind, name).source}): "
                                "choose another name")
    root = folder / f"arena-{name}"
    if root.exists():
        raise InvalidInputError(f"{root} already exists: choose another --dir or name (nothing was written)")
    module = f"arena_{name.replace('-', '_')}"
    ident = name.replace("-", "_")
    cls = "".join(part.capitalize() for part in name.split("-"))
    template, summary, field, run_args, overrides = _KINDS[kind]
    values = {"name": name, "module": module, "cls": cls, "kind": kind, "ident": ident, "summary": summary,
              "field": field, "arena_version": _release(arena.__version__), "check_overrides": overrides}
    values["run_args"] = Template(run_args).substitute(values)
    values["run_example"] = "arena " + " ".join(part.strip().strip('"') for part in values["run_args"].split(",")
                                                ).replace("TINY_DATASET", "digits-tiny")
    files = {
        "pyproject.toml": _PYPROJECT,
        "README.md": _README,
        f"src/{module}/__init__.py": template,
        f"tests/test_{ident}.py": _TEST,
    }
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(text).substitute(values), encoding="utf-8")
    return root


def _release(version: str) -> str:
    """The oldest Arena the package accepts: this one's major.minor (``0.1`` of ``0.1.0``;
    ``0.1.dev0`` of ``0.1.0.dev3+g...``, which that development version satisfies)."""
    match = re.match(r"(\d+)(\.(\d+))?", version)
    if not match:
        return "0"
    release = f"{match.group(1)}.{match.group(3) or 0}"
    return f"{release}.dev0" if "dev" in version else release  # a development version precedes its release
