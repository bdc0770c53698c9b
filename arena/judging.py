"""The batch evaluation loop of one pairing: attack in the worker, judge with the host's model.

The host chooses the evaluation points (the clean-correct ones of the first ``n`` test
points) and the targets, gives the attack only the access it asked for, re-checks every
``x_adv`` against the budget and re-classifies it with its own model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .access import Access, LabelOracle, PassCounter, ScoreOracle
from .attack import Attack
from .errors import ModelChanged
from .evaluation import DEFAULT_DECISION_DRAWS, DEFAULT_EOT_SAMPLES, PLAIN, Evaluation, judge
from .fast import FastModel, tf32_matmul
from .host import BuiltModel, Host, LoadedDataset
from .isolation import AttackWorker
from .store import Sample
from .threat import ThreatModel, check_adversarial, perturbation_norms

#: How many attacked samples each run keeps as images (clean and adversarial) for `arena show`.
EXAMPLES_KEPT = 8


@dataclass(frozen=True)
class Settings:
    """How pairings are run. ``seed``, ``n`` and (for query attacks) ``query_budget`` are part of
    every result's identity; ``timeout`` bounds one attack's wall time in seconds.

    ``evaluation`` picks which of a pairing's evaluations run (``both``, ``adaptive`` or
    ``plain``, see :mod:`arena.evaluation`); ``eot_samples`` and ``decision_draws`` set the
    adaptive evaluation of randomized models and are part of its results' identity.
    """

    seed: int = 0
    n: int | None = None
    batch_size: int = 256
    query_budget: int = 5000
    timeout: float | None = None
    #: The opt-in fast path of the attack's passes (see :mod:`arena.fast`).
    fast: bool = False
    evaluation: str = "both"
    eot_samples: int = DEFAULT_EOT_SAMPLES
    decision_draws: int = DEFAULT_DECISION_DRAWS
    #: Keep the adversarial example of every attacked sample (``--keep-examples all``), not only
    #: :data:`EXAMPLES_KEPT`: a bundle of the run can then be re-checked sample by sample. Not
    #: part of the result's identity.
    keep_all_examples: bool = False


@dataclass(frozen=True)
class Pairing:
    """One attack against one defense model under one threat model, on the first ``n`` points."""

    data: LoadedDataset
    built: BuiltModel
    attack: Attack
    threat: ThreatModel
    n: int
    attack_name: str
    defense_name: str
    evaluation: Evaluation = PLAIN


@dataclass
class Judged:
    """What one evaluation of a pairing found."""

    samples: list[Sample]
    metrics: dict[str, Any]
    examples: dict[str, torch.Tensor]


def choose_targets(labels: torch.Tensor, classes: int, seed: int) -> torch.Tensor:
    """The host's target for each sample: a seeded uniform choice among the other classes."""
    generator = torch.Generator().manual_seed(seed)
    offsets = torch.randint(1, classes, labels.shape, generator=generator)
    return (labels.cpu() + offsets) % classes


def predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Predicted labels, in batches, without gradients."""
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def evaluate(host: Host, pairing: Pairing, settings: Settings) -> Judged:
    """Attack the clean-correct points of the test split in batches, each in the attack's
    worker process, and judge every ``x_adv`` with the host's own model. A model the probe
    found deterministic is re-checked on every judged batch (:func:`arena.evaluation.judge`);
    the model must be unchanged at the end, in the host and in the attack's worker."""
    data, built, attack, threat, n, evaluation = (pairing.data, pairing.built, pairing.attack, pairing.threat,
                                                  pairing.n, pairing.evaluation)
    model = built.model
    recheck = not (built.probe and built.probe.randomized)
    transfer_models = (  # first: training them re-seeds torch
        host.surrogates(attack.surrogate_architectures(), data, settings.seed)
        if attack.access == Access.ZERO_QUERY
        else {}
    )
    # One seeded stream for the clean pass, the attack and the judgement: a randomized
    # model's draws are reproducible too.
    torch.manual_seed(settings.seed)
    x_all, y_all = data.splits.x_test[:n], data.splits.y_test[:n]
    clean_pred = judge(model, x_all, y_all, None, evaluation.decision_draws, settings.batch_size, recheck)
    correct = clean_pred == y_all
    targets = choose_targets(y_all, data.plugin.classes, settings.seed).to(host.device) if threat.targeted else None
    x_adv_all = x_all.clone()
    queries = torch.zeros(n, dtype=torch.long) if attack.access in (Access.SCORE_QUERY, Access.LABEL_QUERY) else None
    counter = PassCounter()
    attacked = correct.nonzero().flatten()  # only clean-correct points are attacked
    batches = [attacked[i : i + settings.batch_size] for i in range(0, len(attacked), settings.batch_size)]
    description = f"{pairing.attack_name} → {pairing.defense_name} ({threat}" + (
        f", {evaluation.describe()})" if evaluation.adaptive else ")"
    )
    # The fast path changes the attack's view of the models only; the host judges in float32.
    oracle_view = FastModel(model, host.device) if settings.fast and queries is not None else model
    white_box = attack.access == Access.WHITE_BOX
    started = time.perf_counter()
    with host.reporter.task(description, total=max(len(batches), 1)) as advance, AttackWorker(
        attack,
        model if white_box else None,
        transfer_models,
        host.device,
        settings.seed,
        eot_samples=evaluation.eot_samples,
        bpda=evaluation.bpda,
        fast=settings.fast,
        timeout=settings.timeout,
        description=f"attack {pairing.attack_name} against {pairing.defense_name}",
    ) as worker, tf32_matmul(host.device, enabled=settings.fast):
        for index in batches:
            x, y = x_all[index], y_all[index]
            oracle = _oracle(attack, oracle_view, len(index), settings.query_budget, settings.batch_size)
            x_adv, forward, backward = worker.perturb(x, y, threat, None if targets is None else targets[index], oracle)
            counter.forward += forward
            counter.backward += backward
            x_adv_all[index] = check_adversarial(x, x_adv, threat)
            if queries is not None:
                queries[index.cpu()] = oracle.queries
            advance()
        changed = worker.finish()
    attack_seconds = time.perf_counter() - started
    adv_pred = judge(model, x_adv_all, y_all, targets, evaluation.decision_draws, settings.batch_size, recheck)
    host.check_unchanged(built, "while it was attacked and judged")
    if changed:
        raise ModelChanged(f"the attack changed its copy of the model ({'; '.join(changed)}); an attack must "
                           "leave the model as given")
    goal = (adv_pred == targets) if targets is not None else (adv_pred != y_all)
    success = correct & goal
    robust = correct & (adv_pred == y_all)  # never above clean accuracy, by construction
    linf, l2 = perturbation_norms(x_all, x_adv_all)

    to_list = lambda t: t.cpu().tolist()  # noqa: E731
    samples = [
        Sample(index=i, label=label, target=target, clean_pred=cp, adv_pred=ap, clean_correct=cc, success=s,
               robust=r, linf=li, l2=l2_, queries=q)
        for i, label, target, cp, ap, cc, s, r, li, l2_, q in zip(
            range(n),
            to_list(y_all),
            to_list(targets) if targets is not None else [None] * n,
            to_list(clean_pred),
            to_list(adv_pred),
            to_list(correct),
            to_list(success),
            to_list(robust),
            to_list(linf),
            to_list(l2),
            to_list(queries) if queries is not None else [None] * n,
        )
    ]
    metrics = robustness_metrics(correct, success, robust, (linf, l2), queries, counter)
    metrics["attack_seconds"] = attack_seconds
    # Keep a few attacked samples, successful ones first, for pictures of the perturbation (or,
    # asked to, every attacked sample, in the same order).
    order = sorted(attacked.tolist(), key=lambda i: (not bool(success[i]), i))
    order = order if settings.keep_all_examples else order[:EXAMPLES_KEPT]
    keep = torch.tensor(order, dtype=torch.long, device=x_all.device)
    examples = {
        "index": keep.cpu(),
        "x": x_all[keep].cpu().contiguous(),
        "x_adv": x_adv_all[keep].cpu().contiguous(),
        "label": y_all[keep].cpu(),
        "adv_pred": adv_pred[keep].cpu(),
    }
    return Judged(samples, metrics, examples)


def _oracle(attack: Attack, model: nn.Module, batch: int, budget: int, chunk: int) -> ScoreOracle | LabelOracle | None:
    """The host's own oracle for one batch of a query attack (it answers the worker's queries
    and counts them, passing the model ``chunk`` inputs at a time); None for other attacks."""
    access = Access(attack.access)
    if access == Access.SCORE_QUERY:
        return ScoreOracle(model, batch, budget, chunk)
    if access == Access.LABEL_QUERY:
        return LabelOracle(model, batch, budget, chunk)
    return None


def robustness_metrics(
    correct: torch.Tensor,
    success: torch.Tensor,
    robust: torch.Tensor,
    norms: tuple[torch.Tensor, torch.Tensor],
    queries: torch.Tensor | None,
    counter: PassCounter,
) -> dict[str, Any]:
    """Accuracy, success rate and perturbation sizes (``norms``: L∞ and L2 per sample) from
    per-sample outcomes.

    Robust accuracy counts a sample only if it is classified correctly both before and after
    the attack; the success rate is over clean-correct samples; perturbation sizes are over
    successful samples.
    """
    linf, l2 = norms
    n_correct = int(correct.sum())
    won = success.nonzero().flatten()
    attacked = correct.nonzero().flatten().cpu()

    def stat(values: torch.Tensor, fn: str) -> float | None:
        if len(won) == 0:
            return None
        picked = values[won].double()
        return float(picked.mean() if fn == "mean" else picked.median())

    return {
        "clean_accuracy": float(correct.double().mean()),
        "robust_accuracy": float(robust.double().mean()),
        "attack_success_rate": float(success.sum()) / n_correct if n_correct else None,
        "mean_linf": stat(linf, "mean"),
        "median_linf": stat(linf, "median"),
        "mean_l2": stat(l2, "mean"),
        "median_l2": stat(l2, "median"),
        "queries_mean": float(queries[attacked].double().mean()) if queries is not None and len(attacked) else None,
        "queries_max": int(queries.max()) if queries is not None and len(queries) else None,
        "forward_passes": counter.forward,
        "backward_passes": counter.backward,
    }
