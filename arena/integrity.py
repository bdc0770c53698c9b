"""Integrity checks: why a stored result deserves suspicion (or a note), after Carlini et al.
2019 ("On Evaluating Adversarial Robustness"), AutoAttack's checks and Pintor et al. 2022
("Indicators of Attack Failure").

A flag is stored with its run as ``{"code", "severity", "message"}``. ``warning`` flags mark a
result as suspect: a robustness result stays in every ranking, marked (a flag must never make a
defense look stronger, and every verified adversarial example counts), while a flagged
generator result (memorised, worse than noise, see :mod:`arena.generative_checks`) is listed but
not ranked. ``info`` flags say how a result was obtained without casting doubt on it.

Checks come in three kinds:

- *model probes*, run once per defense model before any attack (:func:`probe_model`): outputs
  that change between identical forward passes (a randomized defense; a warning when the
  defense class declares ``deterministic = True``), outputs that are
  probabilities rather than logits, input gradients that are zero (with the model's own
  gradients, and through BPDA where the model declares non-differentiable transforms); the
  probe decides how the host evaluates the model (:mod:`arena.evaluation`);
- *per-run checks* (:func:`run_flags`): an unbounded attack that does not reach chance level;
- *cross-run checks* over every stored result of a defense (:func:`cross_run_flags`): robust
  accuracy that rises with eps, and a black-box, transfer or noise attack that beats every
  white-box attack (gradient masking suspected).

The costlier checks of ``arena check`` (an unbounded re-run, a re-run with doubled steps) live in
:mod:`arena.checks`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a model is probed: reading flags needs none of it
    import torch
    from torch import nn

SEVERITIES = ("info", "warning")

#: Codes computed from several stored runs; recomputed whenever new results arrive.
CROSS_RUN_CODES = ("eps-non-monotone", "blackbox-beats-whitebox")
#: Fraction of probe samples with exactly zero input gradient above which gradients are "zero".
ZERO_GRADIENT_FRACTION = 0.5
#: How many test points the model probes look at.
PROBE_SAMPLES = 256


@dataclass(frozen=True)
class Flag:
    code: str
    message: str
    severity: str = "warning"

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"flag severity must be one of {SEVERITIES}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_suspect(flags: Iterable[Mapping[str, Any]] | None) -> bool:
    """Whether any stored flag is a warning."""
    return any(flag.get("severity", "warning") == "warning" for flag in flags or [])


@dataclass(frozen=True)
class ModelProbe:
    """What the host learned about a defense model before attacking it."""

    randomized: bool
    outputs_probabilities: bool
    zero_gradient_fraction: float
    #: Class names of the input transforms the model declares non-differentiable.
    nondifferentiable: tuple[str, ...] = ()
    #: The zero-gradient fraction with gradients taken straight through those transforms.
    bpda_zero_gradient_fraction: float | None = None
    #: Outputs that changed between identical passes only after this probe, while the host judged.
    randomized_late: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "nondifferentiable": list(self.nondifferentiable)}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> "ModelProbe":
        """The probe :meth:`as_dict` wrote (as the model cache records it)."""
        fields = {name: record[name] for name in cls.__dataclass_fields__ if name in record}
        fields["nondifferentiable"] = tuple(fields.get("nondifferentiable") or ())
        return cls(**fields)

    def flags(self, white_box: bool, bpda: bool = False, declared_deterministic: bool = False) -> list[Flag]:
        """Flags for a result obtained with this model (``bpda``: the attack saw BPDA gradients;
        ``declared_deterministic``: the defense class says ``deterministic = True``)."""
        flags = []
        if declared_deterministic and self.randomized:
            flags.append(Flag(
                "undeclared-randomness",
                "the defense declares deterministic = True, but its outputs differ between identical forward "
                "passes: evaluated as randomized (EOT, decision over draws); the plugin should set "
                "deterministic = False",
            ))
        if self.randomized_late:
            flags.append(Flag(
                "randomized-late",
                "the defense's outputs passed the host's determinism probe, then differed between identical "
                "forward passes while the host judged: evaluated as a randomized model (EOT, decision over draws)",
            ))
        elif self.randomized:
            flags.append(Flag("randomized", "the defense's outputs differ between identical forward passes", "info"))
        if self.outputs_probabilities:
            flags.append(Flag(
                "probabilities-output",
                "the model returns probabilities, not logits: cross-entropy gradients on them are "
                "distorted, so gradient attacks may be weakened",
            ))
        zero_fraction = self.bpda_zero_gradient_fraction if bpda else self.zero_gradient_fraction
        if white_box and zero_fraction is not None and zero_fraction > ZERO_GRADIENT_FRACTION:
            flags.append(Flag(
                "zero-gradients",
                f"the input gradient is exactly zero for {100 * zero_fraction:.0f}% of "
                "probed samples: gradient attacks see nothing (obfuscated gradients?)",
            ))
        return flags


def probe_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> ModelProbe:
    """Two identical forward passes, the output's shape, and the input gradients (plain, and
    through BPDA where the model has non-differentiable transforms), on up to
    :data:`PROBE_SAMPLES` points."""
    import torch

    from .transforms import nondifferentiable_transforms, straight_through

    x, y = x[:PROBE_SAMPLES], y[:PROBE_SAMPLES]
    with torch.no_grad():
        first, second = model(x), model(x)
    randomized = not torch.equal(first, second)
    sums = first.double().sum(dim=1)
    outputs_probabilities = bool(
        (first >= 0).all() and (first <= 1).all() and torch.allclose(sums, torch.ones_like(sums), atol=1e-3)
    )
    nondifferentiable = tuple(dict.fromkeys(type(t).__name__ for t in nondifferentiable_transforms(model)))
    bpda_zero_fraction = None
    if nondifferentiable:
        with straight_through(model):
            bpda_zero_fraction = _zero_gradient_fraction(model, x, y)
    return ModelProbe(randomized, outputs_probabilities, _zero_gradient_fraction(model, x, y),
                      nondifferentiable, bpda_zero_fraction)


def fingerprint(model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer of ``model`` (names, dtypes, shapes and bytes)."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict(keep_vars=False).items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)};".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def frozen_state_problems(model: nn.Module, expected_fingerprint: str) -> list[str]:
    """What differs between ``model`` and the frozen, verified model it was: training mode,
    weights that require gradients, weights or buffers that changed."""
    problems = []
    if any(module.training for module in model.modules()):
        problems.append("a module is in training mode")
    if any(parameter.requires_grad for parameter in model.parameters()):
        problems.append("weights require gradients")
    if fingerprint(model) != expected_fingerprint:
        problems.append("its weights or buffers differ from the verified checkpoint")
    return problems


def _zero_gradient_fraction(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The fraction of samples whose cross-entropy input gradient is exactly zero."""
    import torch
    import torch.nn.functional as F

    with torch.enable_grad():
        inputs = x.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(model(inputs), y, reduction="sum")
        if not loss.requires_grad:  # nothing in the model depends on the input differentiably
            return 1.0
        (grad,) = torch.autograd.grad(loss, inputs, allow_unused=True)
    if grad is None:
        return 1.0
    return float((grad.flatten(1).abs().amax(dim=1) == 0).double().mean())


def unbounded_eps(norm: str, shape: tuple[int, ...]) -> float:
    """The budget at which every image can be turned into any other: 1 for L-inf, the diameter of
    the image cube for L2."""
    return 1.0 if norm == "linf" else math.sqrt(math.prod(shape))


def data_flags(dataset: Any) -> list[Flag]:
    """A dataset read from files that were not checked against their official checksums
    (``ARENA_DATA_VERIFY=0``): its results may come from other data than the name says."""
    if getattr(dataset, "files_verified", None) is False:
        return [Flag("unverified-data", f"the {getattr(dataset, 'name', 'dataset')} files were not checked against "
                     "their official checksums (ARENA_DATA_VERIFY=0): the results may come from other data")]
    return []


def run_flags(norm: str, eps: float, shape: tuple[int, ...], classes: int, robust_accuracy: float) -> list[Flag]:
    """Checks on one result alone."""
    flags = []
    if eps >= unbounded_eps(norm, shape) - 1e-9 and robust_accuracy > 1.0 / classes:
        flags.append(Flag(
            "unbounded-not-chance",
            f"at an unbounded eps the attack leaves {100 * robust_accuracy:.1f}% robust accuracy, above "
            f"chance ({100 / classes:.1f}%): the attack is broken or the gradients are masked",
        ))
    return flags


def is_iterative(row: Mapping[str, Any]) -> bool:
    """Whether a result's attack takes several gradient steps: its ``attack_iterative`` field
    where the host filled it in from the attack's ``steps_parameter``, else a ``steps``
    hyperparameter above 1."""
    declared = row.get("attack_iterative")
    if declared is not None:
        return bool(declared)
    steps = (row.get("attack_params") or {}).get("steps")
    return isinstance(steps, int) and not isinstance(steps, bool) and steps > 1


def cross_run_flags(rows: Iterable[Mapping[str, Any]]) -> dict[int, list[Flag]]:
    """Flags that need several stored results of one defense, by run id.

    - ``eps-non-monotone``: the same attack configuration against the same defense model has a
      higher robust accuracy at a larger eps (by more than one sample's worth), across a sweep.
    - ``blackbox-beats-whitebox``: at one threat model, a score-query, label-query or zero-query
      attack leaves a lower robust accuracy (by more than one sample) than an *iterative*
      white-box attack (one with more than one step, see :func:`is_iterative`): the defense's
      gradients mislead gradient descent, gradient masking suspected. Single-step attacks are not
      compared: a stronger black-box attack beating one-step FGSM is expected, not suspicious.
      The flag goes on the iterative white-box results of that defense model, and so on the
      defense's leaderboard entry; it never takes an adversarial example off the books.

    A sweep is compared within one evaluation, attacks within one decision rule (the number of
    draws per judged prediction of a randomized model).
    """
    flags: dict[int, list[Flag]] = {}
    ok = [row for row in rows if row["status"] == "ok" and row["robust_accuracy"] is not None]

    sweeps: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in ok:
        evaluation = tuple(sorted((row.get("evaluation") or {}).items()))
        key = (row["dataset"], row["defense_key"], row["attack_label"], evaluation, row["norm"], row["targeted"],
               row["n"])
        sweeps.setdefault(key, []).append(row)
    for runs in sweeps.values():
        runs = sorted(runs, key=lambda r: (r["eps"], r["run_id"]))
        lowest_so_far = None
        for row in runs:
            slack = 1.0 / row["n"]
            if lowest_so_far is not None and row["robust_accuracy"] > lowest_so_far["robust_accuracy"] + slack:
                flags.setdefault(row["run_id"], []).append(Flag(
                    "eps-non-monotone",
                    f"robust accuracy {100 * row['robust_accuracy']:.1f}% at eps {row['eps']:g} is above "
                    f"{100 * lowest_so_far['robust_accuracy']:.1f}% at the smaller eps {lowest_so_far['eps']:g}",
                ))
            if lowest_so_far is None or row["robust_accuracy"] <= lowest_so_far["robust_accuracy"]:
                lowest_so_far = row

    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in ok:
        draws = (row.get("evaluation") or {}).get("decision_draws", 1)  # only results judged alike compare
        group = (row["dataset"], row["defense_key"], draws, row["norm"], row["eps"], row["targeted"])
        groups.setdefault(group, []).append(row)
    for runs in groups.values():
        white = [r for r in runs if r["attack_access"] == "white-box" and is_iterative(r)]
        black = [r for r in runs if r["attack_access"] != "white-box"]
        if not white or not black:
            continue
        best_black = min(black, key=lambda r: r["robust_accuracy"])
        for row in white:
            slack = 1.0 / min(row["n"], best_black["n"])
            if best_black["robust_accuracy"] < row["robust_accuracy"] - slack:
                flags.setdefault(row["run_id"], []).append(Flag(
                    "blackbox-beats-whitebox",
                    f"{best_black['attack_label']} ({best_black['attack_access']}) leaves "
                    f"{100 * best_black['robust_accuracy']:.1f}% robust accuracy against {row['defense_label']}, "
                    f"below the iterative white-box {row['attack_label']}'s {100 * row['robust_accuracy']:.1f}%: "
                    "gradient masking suspected in the defense",
                ))
    return flags
