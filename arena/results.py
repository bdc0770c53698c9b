"""Stored runs as flat rows: the input of the leaderboard and of ``arena results --json``."""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

from sqlalchemy import or_, select

from .errors import ArenaError
from .evaluation import DEFAULT_QUERY_BUDGET, Evaluation
from .plugins import Registry
from .store import RobustnessResult, Run, Store


def plugin_label(name: str, params: dict[str, Any], defaults: dict[str, Any] | None) -> str:
    """``name``, or ``name(k=v, ...)`` listing the hyperparameters that differ from the defaults."""
    if defaults is None:
        return name
    changed = {k: v for k, v in params.items() if k in defaults and _norm(defaults[k]) != _norm(v) and defaults[k] is not None}
    if not changed:
        return name
    return f"{name}(" + ", ".join(f"{k}={v}" for k, v in sorted(changed.items())) + ")"


def _norm(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _defaults(registry: Registry | None, kind: str, name: str) -> dict[str, Any] | None:
    if registry is None:
        return None
    try:
        return registry.get(kind, name).cls.parameter_defaults()
    except ArenaError:
        return None


def _recorded_defaults(run: Any, role: str) -> dict[str, Any] | None:
    """The plugin's defaults as the run recorded them (in ``provenance["plugin_defaults"]``;
    runs stored by earlier versions have none)."""
    provenance = run.provenance if isinstance(run.provenance, dict) else {}
    recorded = provenance.get("plugin_defaults")
    defaults = recorded.get(role) if isinstance(recorded, dict) else None
    return defaults if isinstance(defaults, dict) else None


def _label(run: Any, role: str, name: str, params: dict[str, Any], defaults: Any) -> str:
    """``plugin_label`` against the defaults the run recorded, else those ``defaults(kind, name)``
    looks up (the installed plugin)."""
    recorded = _recorded_defaults(run, role)
    return plugin_label(name, params, recorded if recorded is not None else defaults(role, name))


def with_budget(label: str, query_budget: int | None) -> str:
    """A query attack's label with its query budget where that is not the default: results at two
    budgets are two attack configurations, never one replacing the other on a board."""
    if query_budget is None or query_budget == DEFAULT_QUERY_BUDGET:
        return label
    return f"{label} [{query_budget:,} queries]"


def robustness_label(run: Run, role: str) -> str:
    """The attack's or the defense's label of a robustness run: its name, with the hyperparameters
    that differ from the defaults the run recorded (and an attack's query budget, see
    :func:`with_budget`)."""
    result = run.robustness
    if role == "attack":
        return with_budget(_label(run, role, result.attack, result.attack_params or {}, lambda kind, plugin: None),
                           result.query_budget)
    return _label(run, role, result.defense, result.defense_params or {}, lambda kind, plugin: None)


def _run_head(run: Run) -> dict[str, Any]:
    """The fields every flat record starts with: which run, on what data."""
    return {
        "run_id": run.id,
        "key": run.key,
        "track": run.track,
        "status": run.status,
        "created_at": run.created_at.isoformat() if run.created_at else None,
        "dataset": run.dataset,
        "dataset_hash": run.dataset_hash,
        "superseded_by": run.superseded_by,
    }


def _run_tail(run: Run) -> dict[str, Any]:
    """The fields every flat record ends with: flags, timing, errors, files, provenance."""
    return {
        "flags": run.flags or [],
        "duration_s": run.duration_s,
        "device": run.device,
        "error": (run.error or "").splitlines()[0] if run.error else None,
        "artifacts": run.artifacts or {},
        "provenance": run.provenance,
        "origin": origin_label(run.provenance),
    }


def origin_label(provenance: Any) -> str:
    """Where a run was computed: ``local``, or the origin it was imported with (arena import)."""
    origin = provenance.get("origin") if isinstance(provenance, dict) else None
    label = origin.get("label") if isinstance(origin, dict) else None
    return label if isinstance(label, str) and label else "local"


def robustness_row(run: Run, registry: Registry | None = None, defaults: Any = None) -> dict[str, Any]:
    """One flat record of a robustness run (``defaults(kind, name)`` looks up a plugin's
    hyperparameter defaults; by default in ``registry``)."""
    result = run.robustness
    if result is None:
        raise ValueError(f"run {run.id} has no robustness result")
    defaults = defaults or functools.partial(_defaults, registry)
    # A fast-path result is another evaluation (reduced precision in the attack's passes): it
    # keeps a label of its own, so it is compared with fast-path results only and never
    # replaces a float32 one on the leaderboard.
    fast = bool((run.provenance or {}).get("fast")) if isinstance(run.provenance, dict) else False
    attack_label = with_budget(_label(run, "attack", result.attack, result.attack_params, defaults), result.query_budget)
    return {
        **_run_head(run),
        "attack": result.attack,
        "attack_label": f"{attack_label} [fast]" if fast else attack_label,
        "fast": fast,
        "attack_access": result.attack_access,
        "attack_package": result.attack_package,
        "attack_version": result.attack_version,
        "attack_params": result.attack_params,
        "defense": result.defense,
        "defense_label": _label(run, "defense", result.defense, result.defense_params, defaults),
        "defense_key": result.defense_key,
        "defense_package": result.defense_package,
        "defense_version": result.defense_version,
        "defense_params": result.defense_params,
        "norm": result.norm,
        "eps": result.eps,
        "targeted": result.targeted,
        "n": run.n,
        "seed": run.seed,
        "clean_accuracy": result.clean_accuracy,
        "robust_accuracy": result.robust_accuracy,
        "attack_success_rate": result.attack_success_rate,
        "mean_linf": result.mean_linf,
        "median_linf": result.median_linf,
        "mean_l2": result.mean_l2,
        "median_l2": result.median_l2,
        "queries": result.queries_mean,
        "queries_max": result.queries_max,
        "query_budget": result.query_budget,
        "evaluation": Evaluation.from_dict(result.evaluation).as_dict(),
        "forward_passes": result.forward_passes,
        "backward_passes": result.backward_passes,
        **_run_tail(run),
    }


def robustness_rows(
    store: Store,
    registry: Registry | None = None,
    dataset: str | None = None,
    include_failed: bool = False,
    norm: str | None = None,
    eps: tuple[float, ...] = (),
    history: bool = False,
    defaults: Any = None,
) -> list[dict[str, Any]]:
    """Every current robustness run (of ``dataset``, ``norm`` and any of ``eps`` where given) as
    a flat row, oldest first; with ``history``, the runs they superseded too.

    Read with one plain SELECT over the two tables rather than as ORM objects: the leaderboard
    reads thousands of rows at a time. A run with a value that cannot be decoded is left out,
    with a warning (``Store.readable``).
    """
    runs, results = Run.__table__, RobustnessResult.__table__
    query = (
        select(*runs.columns, *(c for c in results.columns if c.name not in ("run_id", "robust_bits")))
        .join_from(runs, results, runs.c.id == results.c.run_id)
        .where(runs.c.track == "robustness")
        .order_by(runs.c.id)
    )
    if dataset:
        query = query.where(runs.c.dataset == dataset)
    if not include_failed:
        query = query.where(runs.c.status == "ok")
    if not history:
        query = query.where(runs.c.superseded_by.is_(None))
    if norm:
        query = query.where(results.c.norm == norm)
    if eps:  # within a relative 1e-9, as the leaderboard's filters compare
        query = query.where(or_(*(results.c.eps.between(e - 1e-9 * abs(e), e + 1e-9 * abs(e)) for e in eps)))
    defaults = functools.lru_cache(maxsize=None)(defaults or functools.partial(_defaults, registry))
    result_fields = {c.name for c in results.columns}
    rows = []
    names = list(query.selected_columns.keys())
    with store.session() as session:
        for values in session.execute(query):
            record = dict(zip(names, values))
            if not store.readable(record["id"], record):
                continue
            run = SimpleNamespace(**{k: v for k, v in record.items() if k not in result_fields})
            run.robustness = SimpleNamespace(**{k: v for k, v in record.items() if k in result_fields})
            rows.append(robustness_row(run, defaults=defaults))  # type: ignore[arg-type]
    return rows


def evaluations_of_pairing(store: Store, run: Run) -> list[Run]:
    """Every completed run of the same pairing as ``run`` (same defense model, attack
    configuration, threat model, points and seed), one per evaluation: the adaptive result and
    the plain one side by side."""
    result = run.robustness
    if result is None:
        return [run]
    same = []
    for other in store.runs(track="robustness", dataset=run.dataset, status="ok"):
        theirs = other.robustness
        if theirs is not None and (
            theirs.defense_key, theirs.attack, theirs.attack_version, theirs.attack_params, theirs.norm,
            theirs.eps, theirs.targeted, theirs.query_budget, other.n, other.seed,
        ) == (
            result.defense_key, result.attack, result.attack_version, result.attack_params, result.norm,
            result.eps, result.targeted, result.query_budget, run.n, run.seed,
        ):
            same.append(other)
    return same


def generative_row(run: Run, registry: Registry | None = None, defaults: Any = None) -> dict[str, Any]:
    """One flat record of a generative run."""
    defaults = defaults or functools.partial(_defaults, registry)
    result = run.generative
    if result is None:
        raise ValueError(f"run {run.id} has no generative result")
    return {
        **_run_head(run),
        "generator": result.generator,
        "generator_label": _label(run, "generator", result.generator, result.generator_params, defaults),
        "generator_package": result.generator_package,
        "generator_version": result.generator_version,
        "generator_params": result.generator_params,
        "model_key": result.model_key,
        "likelihood": result.likelihood_kind,
        "bits_per_dim": result.bits_per_dim,
        "likelihoods": result.likelihoods or {},
        "uniform_bits_per_dim": result.uniform_bits_per_dim,
        "likelihood_n": result.likelihood_n,
        "samples": result.samples_n,
        "reference_n": result.reference_n,
        "classifier_sha256": result.classifier_sha256,
        "classifier_accuracy": result.classifier_accuracy,
        "fid": result.fid,
        "fid_low": result.fid_low,
        "fid_high": result.fid_high,
        "kid": result.kid,
        "precision": result.precision,
        "recall": result.recall,
        "density": result.density,
        "coverage": result.coverage,
        "inception_score": result.inception_score,
        "train_seconds": result.train_seconds,
        "sample_seconds": result.sample_seconds,
        "kid_std": result.kid_std,
        "test_n": result.test_n,
        "fid_test": result.fid_test,
        "fid_test_low": result.fid_test_low,
        "fid_test_high": result.fid_test_high,
        "kid_test": result.kid_test,
        "kid_test_std": result.kid_test_std,
        "precision_test": result.precision_test,
        "recall_test": result.recall_test,
        "density_test": result.density_test,
        "coverage_test": result.coverage_test,
        "bits_per_dim_train": result.bits_per_dim_train,
        "memorised": result.memorised,
        "memorised_pixels": result.memorised_pixels,
        "heldout_memorised": result.heldout_memorised,
        "heldout_memorised_pixels": result.heldout_memorised_pixels,
        "test_copies": result.test_copies,
        "test_copies_pixels": result.test_copies_pixels,
        "noise_fid_test": result.noise_fid_test,
        "classifier_key": result.classifier_key,
        "batch_size": (run.provenance or {}).get("batch_size") if isinstance(run.provenance, dict) else None,
        "seed": run.seed,
        **_run_tail(run),
    }


def track_row(run: Run) -> dict[str, Any]:
    """The flat record of a run of a track that stores a :class:`arena.store.TrackResult`."""
    result = run.result
    subject = dict(result.subject or {}) if result is not None else {}
    return {
        **_run_head(run),
        "subject": subject,
        "subject_label": str(subject.get("label") or ", ".join(f"{k}={v}" for k, v in subject.items())),
        "metrics": dict(result.metrics or {}) if result is not None else {},
        "seed": run.seed,
        "n": run.n,
        **_run_tail(run),
    }
