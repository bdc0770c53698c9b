"""The robustness track: attacks against defenses, per-sample worst case, arena ratings.

Light at import (no torch, no plugin module): the work is in :mod:`arena.pairings`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import click

from ..evaluation import CHOICES, DEFAULT_DECISION_DRAWS, DEFAULT_EOT_SAMPLES, DEFAULT_QUERY_BUDGET
from ..hookspecs import hookimpl
from ..options import eps_option, names_option
from ..plugins import plugin_defaults
from ..track import Job, Outcome, Request, RowQuery, Track

if TYPE_CHECKING:
    from ..app import Arena
    from ..store import Run, Store


class RobustnessTrack(Track):
    name = "robustness"
    summary = "Attacks against defenses: robust accuracy, per-sample worst case, arena ratings."
    boards = ("robustness", "attacks")
    hint = "--attack and --defense (e.g. arena run --attack fgsm --defense advtrain)"
    order = 10
    plugin_options = {"attack": "-a", "defense": "-d"}

    def options(self) -> list[click.Option]:
        return [
            click.Option(["--attack", "-a", "attacks"], multiple=True, metavar="NAME", callback=names_option,
                         help="Attack(s) to run; 'all' for every one; 'autoattack' for AutoAttack's standard version "
                              "(APGD-CE, APGD-T, FAB-T, Square with 5,000 queries, its published settings)."),
            click.Option(["--defense", "-d", "defenses"], multiple=True, metavar="NAME", callback=names_option,
                         help="Defense(s) to attack; 'all' for every one."),
            click.Option(["--norm"], type=click.Choice(["linf", "l2"]), default=None,
                         help="Threat model norm (default: the dataset's)."),
            click.Option(["--eps"], default=None, metavar="E[,E2..]", callback=eps_option,
                         help="Perturbation budget(s) (default: the dataset's)."),
            click.Option(["--targeted"], is_flag=True,
                         help="Targeted attacks: the host picks a seeded target class per sample."),
            click.Option(["--n"], type=int, default=None, help="Number of test points (default: the whole test split)."),
            click.Option(["--queries", "query_budget"], type=int, default=DEFAULT_QUERY_BUDGET, show_default=True,
                         help="Query budget per sample for score- and label-query attacks."),
            click.Option(["--fast"], is_flag=True,
                         help="Fast path for the attack's passes: torch.compile, bfloat16 autocast, TF32 on CUDA."),
            click.Option(["--keep-examples"], type=click.Choice(["some", "all"]), default="some", show_default=True,
                         help="Keep 8 adversarial examples per run (some), or every attacked sample's (all: a bundle "
                              "of the run can then be re-checked sample by sample, see arena export)."),
            click.Option(["--timeout"], type=float, default=None, metavar="SECONDS",
                         help="Give up on an attack that runs longer than this (the pairing is marked errored)."),
            click.Option(["--check", "run_checks"], is_flag=True,
                         help="Also run the costlier integrity checks of `arena check` on each new result."),
            click.Option(["--evaluation"], type=click.Choice(list(CHOICES)), default="both", show_default=True,
                         help="For models with non-differentiable transforms or randomness: the adaptive evaluation "
                         "(BPDA, EOT; ranked), the plain one (model gradients, one draw), or both."),
            click.Option(["--eot-samples"], type=int, default=DEFAULT_EOT_SAMPLES, show_default=True,
                         help="Adaptive evaluation of a randomized model: gradients averaged per attack gradient (EOT)."),
            click.Option(["--decision-draws"], type=int, default=DEFAULT_DECISION_DRAWS, show_default=True,
                         help="Adaptive evaluation of a randomized model: draws per prediction; correct only if all are."),
        ]

    def requested(self, request: Request) -> bool:
        return bool(request.option("attacks")) and bool(request.option("defenses"))

    def incomplete(self, request: Request) -> bool:
        return bool(request.option("attacks")) != bool(request.option("defenses"))

    def plugins(self, request: Request) -> dict[str, list[str]]:
        from ..presets import expand

        return {"attack": expand(list(request.option("attacks", []))),
                "defense": list(request.option("defenses", []))}

    def check(self, request: Request) -> None:
        from ..errors import InvalidInputError

        timeout = request.option("timeout")
        if timeout is not None and not timeout > 0:
            raise InvalidInputError(f"--timeout {timeout:g} must be above 0 seconds")

    def plan(self, request: Request, arena: Arena) -> list[Job]:
        from ..pairings import plan

        return plan(request, arena.host, arena.store, arena.force)

    def execute(self, job: Job, arena: Arena) -> list[Outcome]:
        from ..pairings import execute, train

        if job.kind == "evaluate":
            return execute(job, arena.host, arena.store, arena.force)
        train(job, arena.host)
        return []

    def finish(self, request: Request, outcomes: list[Outcome], arena: Arena) -> list[Outcome]:
        from ..isolation import release_workers
        from ..pairings import refresh_cross_run_flags

        release_workers()
        refresh_cross_run_flags(arena.host, arena.store, request.dataset)
        if request.option("run_checks"):
            from ..checks import check_run

            for outcome in outcomes:
                if outcome.ok and not outcome.reused:
                    check_run(arena, arena.store.get_run(outcome.run.id))
            for outcome in outcomes:  # with the flags the checks added
                outcome.run = arena.store.get_run(outcome.run.id) or outcome.run
        return outcomes

    def report(self, outcomes: list[Outcome]) -> Any:
        from ..tables import pairing_summary

        return pairing_summary(outcomes)

    # -- stored results ---------------------------------------------------------------------

    def row(self, run: Run) -> dict[str, Any]:
        from ..results import robustness_row

        return robustness_row(run, defaults=plugin_defaults)

    def rows(self, store: Store, query: RowQuery = RowQuery()) -> list[dict[str, Any]]:
        from ..results import robustness_rows

        return robustness_rows(store, None, dataset=query.dataset, include_failed=query.include_failed,
                               norm=query.norm, eps=query.eps, history=query.history, defaults=plugin_defaults)

    def command(self, row: Mapping[str, Any]) -> str | None:
        from arena_leaderboard.provenance import robustness_command

        return robustness_command(row)

    def table(self, rows: list[dict[str, Any]]) -> Any:
        from ..tables import robustness_results

        return robustness_results(rows)

    def views(self, rows: list[dict[str, Any]], store: Store, *, fmt: str = "table") -> list[Any]:
        from arena_leaderboard import robustness_views

        outcomes = store.sample_outcomes([row["run_id"] for row in rows])
        rows = [row for row in rows if row["run_id"] in outcomes]  # the store warned of any it could not read
        # The terminal and the page leave the export-only views (runs and provenance) out: not built.
        return robustness_views(rows, outcomes, examples=fmt == "html", exports=fmt not in ("table", "html"))

    def details(self, run: Run, store: Store) -> list[Any]:
        from ..evaluation import Evaluation
        from ..results import evaluations_of_pairing
        from ..tables import evaluations, training

        shown: list[Any] = []
        if run.superseded_by is None:  # history: its successor shows the pairing as ranked now
            runs = evaluations_of_pairing(store, run)
            if len(runs) >= 2 or Evaluation.from_dict(run.robustness.evaluation).adaptive:
                shown.append(evaluations(runs))
        from ..config import model_record

        record = model_record(run.robustness.defense_key)
        table = training(record or {})
        if table is not None:
            shown.append(table)
        return shown


@hookimpl
def register_tracks(register):
    register(RobustnessTrack)
