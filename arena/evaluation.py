"""How the host evaluates a defense honestly: adaptive evaluation for obfuscated gradients and
randomness, next to the plain evaluation a careless benchmark would stop at.

Which evaluations a pairing gets is decided from the model probe (:mod:`arena.integrity`), not
from what the defense says about itself:

- **BPDA** (Athalye et al. 2018): when the model contains an :class:`~arena.InputTransform`
  declared non-differentiable, white-box attacks get gradients taken straight through it
  (:func:`arena.transforms.straight_through`).
- **EOT** (expectation over transformation, Athalye et al. 2018, §4.2): when two identical
  forward passes disagree, ``access.gradient`` returns the mean of ``eot_samples`` gradients,
  each from a fresh forward pass.
- **Decision over draws**: a randomized model is asked ``decision_draws`` times for every
  prediction the host judges (clean and adversarial alike), and its answer counts as correct
  only if every draw is correct; the attack reaches its goal if any draw does (the target class
  when targeted, any wrong class otherwise). An attacker who submits an input once wins with
  probability P(wrong draw); counting a sample robust only when all draws are right makes the
  stored robust accuracy a conservative estimate of that, never an optimistic one.

A model with neither property has one evaluation, the plain one. A model with either gets the
*adaptive* evaluation (the one ranked on the leaderboard) and, by default, the *plain* one as
well (model gradients, one draw), so that the gap between them is on record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from .levels import Access
from .errors import InvalidInputError, LateRandomness
from .integrity import Flag, ModelProbe

if TYPE_CHECKING:  # torch is imported where models are judged: stored evaluations need none of it
    import torch
    from torch import nn

#: What ``--evaluation`` accepts: which of a pairing's evaluations to run.
CHOICES = ("both", "adaptive", "plain")
#: Gradients averaged per EOT step, by default (AutoAttack's ``eot_iter`` for randomized defenses).
#: Queries per sample of a score- or label-query attack unless ``--queries`` says otherwise;
#: a result at another budget is labelled with it (``square [1,000 queries]``).
DEFAULT_QUERY_BUDGET = 5000

DEFAULT_EOT_SAMPLES = 20
#: Draws per judged prediction of a randomized model, by default.
DEFAULT_DECISION_DRAWS = 10


@dataclass(frozen=True)
class Evaluation:
    """How an attack sees a defense model and how its answers are judged."""

    bpda: bool = False
    eot_samples: int = 1
    decision_draws: int = 1

    @property
    def adaptive(self) -> bool:
        return self.bpda or self.eot_samples > 1 or self.decision_draws > 1

    @property
    def mode(self) -> str:
        return "adaptive" if self.adaptive else "plain"

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "bpda": self.bpda, "eot_samples": self.eot_samples,
                "decision_draws": self.decision_draws}

    @classmethod
    def from_dict(cls, value: Mapping[str, Any] | None) -> "Evaluation":
        """The evaluation a stored result recorded (results from before evaluations were recorded are plain)."""
        if not value:
            return PLAIN
        return cls(bool(value["bpda"]), int(value["eot_samples"]), int(value["decision_draws"]))

    def describe(self) -> str:
        """A short label, e.g. ``adaptive (BPDA, EOT 20, 10 draws)`` or ``plain``."""
        if not self.adaptive:
            return "plain"
        parts = (["BPDA"] if self.bpda else []) + (
            [f"EOT {self.eot_samples}"] if self.eot_samples > 1 else []
        ) + ([f"{self.decision_draws} draws"] if self.decision_draws > 1 else [])
        return f"adaptive ({', '.join(parts)})"


PLAIN = Evaluation()


def check_settings(choice: str, eot_samples: int, decision_draws: int) -> None:
    if choice not in CHOICES:
        raise InvalidInputError(f"--evaluation {choice!r}: use one of {', '.join(CHOICES)}")
    if eot_samples < 1:
        raise InvalidInputError("--eot-samples must be at least 1")
    if decision_draws < 1:
        raise InvalidInputError("--decision-draws must be at least 1")


def adaptive_evaluation(probe: ModelProbe | None, access: Access, eot_samples: int, decision_draws: int) -> Evaluation:
    """The evaluation the probe calls for: BPDA and EOT only matter to white-box attacks, the
    decision over draws to every attack against a randomized model."""
    if probe is None:
        return PLAIN
    white_box = Access(access) == Access.WHITE_BOX
    return Evaluation(
        bpda=white_box and bool(probe.nondifferentiable),
        eot_samples=eot_samples if white_box and probe.randomized else 1,
        decision_draws=decision_draws if probe.randomized else 1,
    )


def plan(
    probe: ModelProbe | None, access: Access, choice: str, eot_samples: int, decision_draws: int
) -> list[Evaluation]:
    """The evaluations to run for one pairing, adaptive first."""
    adaptive = adaptive_evaluation(probe, access, eot_samples, decision_draws)
    if not adaptive.adaptive:
        return [PLAIN]
    return {"both": [adaptive, PLAIN], "adaptive": [adaptive], "plain": [PLAIN]}[choice]


def evaluation_flags(evaluation: Evaluation, adaptive: Evaluation, probe: ModelProbe | None) -> list[Flag]:
    """Say how the result was obtained (info), or that it is a plain evaluation of a model that
    needs an adaptive one (a warning: such a number overstates robustness)."""
    flags = []
    names = ", ".join(probe.nondifferentiable) if probe else ""
    if evaluation.bpda:
        flags.append(Flag("bpda", f"gradients through the non-differentiable {names} were taken straight through "
                                  "(BPDA with the identity, Athalye et al. 2018)", "info"))
    if evaluation.eot_samples > 1 or evaluation.decision_draws > 1:
        flags.append(Flag("eot", f"randomized model: gradients averaged over {evaluation.eot_samples} draws (EOT); "
                                 f"a prediction counts as correct only if all {evaluation.decision_draws} draws are",
                          "info"))
    if not evaluation.adaptive and adaptive.adaptive:
        needs = []
        if adaptive.bpda:
            needs.append(f"BPDA through {names}")
        if adaptive.eot_samples > 1 or adaptive.decision_draws > 1:
            needs.append("EOT over its randomness")
        flags.append(Flag("not-adaptive", f"plain evaluation of a model that needs {' and '.join(needs)}: it "
                                          "overstates robustness; the adaptive result is the one ranked"))
    return flags


def judge(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    target: torch.Tensor | None,
    draws: int,
    batch_size: int,
    recheck: bool = False,
) -> torch.Tensor:
    """The model's answer for each sample as the host scores it.

    With one draw this is the arg-max. With several, the answer is the target class if any draw
    predicted it (targeted mode), else the first wrong class any draw predicted, else the label:
    the model is right only if it is right every time.

    With ``recheck`` (a model believed deterministic, judged with one draw) every batch is passed
    twice and :class:`~arena.errors.LateRandomness` is raised if the outputs differ: randomness
    that appears only after the probe is caught on the very batches that are judged.
    """
    import torch

    answers = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            stop = start + batch_size
            labels = y[start:stop]
            if recheck and draws == 1:
                first, second = model(x[start:stop]), model(x[start:stop])
                if not torch.equal(first, second):
                    raise LateRandomness("identical forward passes differed while the host judged")
                predictions = first.argmax(1)[None]
            else:
                predictions = torch.stack([model(x[start:stop]).argmax(1) for _ in range(draws)])
            wrong = predictions != labels
            first_wrong = predictions.gather(0, wrong.int().argmax(0, keepdim=True)).squeeze(0)
            answer = torch.where(wrong.any(0), first_wrong, labels)
            if target is not None:
                goal = target[start:stop]
                answer = torch.where((predictions == goal).any(0), goal, answer)
            answers.append(answer)
    return torch.cat(answers) if answers else y.clone()
