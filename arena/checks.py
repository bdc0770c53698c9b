"""The costlier checks of ``arena check RUN_ID`` (and ``arena run --check``).

Both re-run the stored pairing on the first ``samples`` evaluation points, with the same
defense model (from the cache), seed, settings and evaluation (plain, or adaptive with BPDA and
EOT):

- *unbounded attack* (Carlini et al. 2019, §5.2): a white-box attack given an unbounded budget
  must bring robust accuracy to chance level or below; if it cannot, the attack is broken or the
  defense masks its gradients.
- *convergence* (Pintor et al. 2022, "non-converging attack"): an iterative attack re-run with
  twice its steps must not find noticeably more adversarial examples; if it does, the stored
  result overstates robustness. An attack is iterative when it names its steps hyperparameter in
  ``steps_parameter`` (or has one called ``steps``).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .access import Access
from .errors import InvalidInputError
from .evaluation import Evaluation
from .integrity import Flag, unbounded_eps
from .threat import ThreatModel

if TYPE_CHECKING:
    from .app import Arena
    from .store import Run

CHECK_CODES = ("unbounded-check-failed", "not-converged")
#: Evaluation points the checks re-run by default.
CHECK_SAMPLES = 100


def steps_parameter(attack_cls: type, params: dict[str, Any]) -> str | None:
    name = getattr(attack_cls, "steps_parameter", None) or ("steps" if "steps" in params else None)
    return name if name in params and isinstance(params[name], int) else None


def check_run(arena: "Arena", run: "Run", samples: int = CHECK_SAMPLES) -> dict[str, Any]:
    """Run the costly checks on a stored robustness run; store and return what they found."""
    from .judging import Pairing, Settings, evaluate
    from .pairings import attack_instance

    host = arena.host
    result = run.robustness
    if run.status != "ok" or result is None:
        raise InvalidInputError(f"run {run.id} is {run.status}: only completed robustness runs can be checked")
    registry = host.registry
    attack_info = registry.get("attack", result.attack)
    defense_info = registry.get("defense", result.defense)
    for info, version in ((attack_info, result.attack_version), (defense_info, result.defense_version)):
        if info.source.version != version:
            raise InvalidInputError(
                f"run {run.id} used {info.kind} {info.name} {version}, but {info.source.version} is installed: "
                "run the pairing again before checking it"
            )
    data = host.dataset(run.dataset)
    if data.content_hash != run.dataset_hash:
        raise InvalidInputError(f"dataset {run.dataset} has changed since run {run.id}; run the pairing again")
    built = host.plugin_model(defense_info, result.defense_params, data, run.seed)
    if built.key != result.defense_key:
        raise InvalidInputError(f"the defense model of run {run.id} cannot be rebuilt identically; run it again")
    provenance = run.provenance or {}
    settings = Settings(seed=run.seed, n=run.n, batch_size=provenance.get("batch_size", 256),
                        query_budget=result.query_budget or 5000)
    m = max(1, min(samples, run.n))
    stored_robust = {s.index: s.robust for s in arena.store.get_run(run.id).samples if s.index < m}
    stored_accuracy = sum(stored_robust.values()) / m
    threat = ThreatModel(result.norm, result.eps, result.targeted)
    classes = data.plugin.classes
    found: dict[str, Any] = {"samples": m, "checked_at": datetime.now(timezone.utc).isoformat()}
    flags: list[Flag] = []

    evaluation = Evaluation.from_dict(result.evaluation)
    found["evaluation"] = evaluation.as_dict()

    def robust_accuracy(params: dict[str, Any], check_threat: ThreatModel) -> float:
        attack = attack_instance(attack_info, params, data)
        judged = evaluate(host, Pairing(data, built, attack, check_threat, m, result.attack, result.defense, evaluation),
                          replace(settings, n=m))
        return judged.metrics["robust_accuracy"]

    if attack_info.cls.access == Access.WHITE_BOX:
        eps = unbounded_eps(threat.norm, data.plugin.shape)
        accuracy = robust_accuracy(result.attack_params, ThreatModel(threat.norm, eps, threat.targeted))
        found["unbounded"] = {"eps": eps, "robust_accuracy": accuracy, "chance": 1 / classes}
        if accuracy > 1 / classes:
            flags.append(Flag(
                "unbounded-check-failed",
                f"with an unbounded budget ({threat.norm} eps {eps:g}) the attack leaves {100 * accuracy:.1f}% "
                f"robust accuracy on {m} samples, above chance: the attack is broken or gradients are masked",
            ))
    else:
        found["unbounded"] = "not applicable: only white-box attacks must reach chance when unbounded"

    steps = steps_parameter(attack_info.cls, result.attack_params)
    if steps is not None:
        doubled = {**result.attack_params, steps: 2 * result.attack_params[steps]}
        accuracy = robust_accuracy(doubled, threat)
        slack = max(2 / m, 0.02)
        found["convergence"] = {
            "parameter": steps,
            "steps": result.attack_params[steps],
            "robust_accuracy": stored_accuracy,
            "robust_accuracy_doubled": accuracy,
            "tolerance": slack,
        }
        if accuracy < stored_accuracy - slack:
            flags.append(Flag(
                "not-converged",
                f"doubling {steps} from {result.attack_params[steps]} lowers robust accuracy on {m} samples "
                f"from {100 * stored_accuracy:.1f}% to {100 * accuracy:.1f}%: the attack has not converged",
            ))
    else:
        found["convergence"] = "not applicable: the attack is not iterative"

    kept = [f for f in run.flags or [] if f.get("code") not in CHECK_CODES]
    arena.store.update_run(
        run.id,
        flags=kept + [f.as_dict() for f in flags],
        provenance={**provenance, "checks": found},
    )
    return {"flags": [f.as_dict() for f in flags], **found}
