"""The generative track: generators by sample quality (FID, precision/recall, ...) and
likelihood (bits/dim). Light at import: the work is in :mod:`arena.generation`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import click

from ..hookspecs import hookimpl
from ..track import Job, Outcome, Request, Track
from ..options import names_option
from ..plugins import plugin_defaults

if TYPE_CHECKING:
    from ..app import Arena
    from ..store import Run, Store


class GenerativeTrack(Track):
    name = "generative"
    summary = "Generators by sample quality under a reference classifier and by likelihood."
    hint = "--generator (e.g. arena run --generator vae)"
    order = 20
    plugin_options = {"generator": "-g"}

    def options(self) -> list[click.Option]:
        return [
            click.Option(["--generator", "-g", "generators"], multiple=True, metavar="NAME", callback=names_option,
                         help="Generator(s) to train and score (the generative track); 'all' for every one."),
            click.Option(["--samples"], type=int, default=1000, show_default=True,
                         help="Samples drawn from each generator."),
        ]

    def requested(self, request: Request) -> bool:
        return bool(request.option("generators"))

    def plugins(self, request: Request) -> dict[str, list[str]]:
        return {"generator": list(request.option("generators", []))}

    def _scorer(self, arena: Arena) -> Any:
        from ..generation import GenerativeScorer

        scorer = arena.cached("generative-scorer")
        if scorer is None:
            scorer = arena.cached("generative-scorer", GenerativeScorer(arena.host, arena.store))
        return scorer

    def plan(self, request: Request, arena: Arena) -> list[Job]:
        from ..generation import TRACK, GenerativeSettings

        host, scorer = arena.host, self._scorer(arena)
        infos = host.registry.resolve("generator", request.option("generators", []))
        params = {name: dict(values) for name, values in request.params.items()}
        jobs: list[Job] = []
        for seed in request.seeds:
            settings = GenerativeSettings(seed=seed, samples=request.option("samples", 1000),
                                          batch_size=request.batch_size)
            data = host.dataset(request.dataset)
            scorer.check(settings, infos, data, params)
            reference_key, _ = host.reference_key(data)
            record = host.cache.record(reference_key)
            if not any(job.key == reference_key for job in jobs):
                jobs.append(Job(TRACK, "train-reference", reference_key, f"train the reference classifier of "
                                f"{data.info.name}", {"dataset": data.info.name, "seed": seed},
                                stored=record is not None))
            for info in infos:
                overrides = params.get(info.name, {})
                key = None
                if record is not None:  # the run key holds the reference's checkpoint hash
                    key, _, _ = scorer.identity(info, overrides, data, settings, record["sha256"])
                spec = {"dataset": data.info.name, "generator": info.name, "params": overrides,
                        "settings": {"seed": seed, "samples": settings.samples, "batch_size": settings.batch_size}}
                stored = key is not None and not arena.force and arena.store.find_run(key) is not None
                jobs.append(Job(TRACK, "score", key, f"score generator {info.name} (seed {seed})", spec,
                                (reference_key,), stored, (key,) if key else (), keys_final=key is not None))
        return jobs

    def execute(self, job: Job, arena: Arena) -> list[Outcome]:
        from ..generation import GenerativeSettings

        spec = job.spec
        data = arena.host.dataset(spec["dataset"])
        if job.kind == "train-reference":
            self._scorer(arena).reference(data)
            return []
        info = arena.host.registry.get("generator", spec["generator"])
        return [self._scorer(arena).run(data, info, GenerativeSettings(**spec["settings"]), dict(spec["params"]),
                                        arena.force)]

    def report(self, outcomes: list[Outcome]) -> Any:
        from ..tables import generator_summary

        return generator_summary(outcomes)

    def row(self, run: Run) -> dict[str, Any]:
        from ..results import generative_row

        return generative_row(run, defaults=plugin_defaults)

    def command(self, row: Mapping[str, Any]) -> str | None:
        from arena_leaderboard.provenance import generative_command

        return generative_command(row)

    def table(self, rows: list[dict[str, Any]]) -> Any:
        from ..tables import generative_results

        return generative_results(rows)

    def views(self, rows: list[dict[str, Any]], store: Store, *, fmt: str = "table") -> list[Any]:
        from arena_leaderboard import generative_views

        return generative_views(rows, examples=fmt == "html")

    def details(self, run: Run, store: Store) -> list[Any]:
        """The generator's training history, from the record the model cache keeps beside it."""
        from ..config import model_record
        from ..tables import training

        table = training(model_record(run.generative.model_key) or {}) if run.generative else None
        return [table] if table is not None else []


@hookimpl
def register_tracks(register):
    register(GenerativeTrack)
