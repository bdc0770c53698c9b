"""What the ``arena`` commands share: consoles, the ``--db`` option, warnings, parsing."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from ..console import OutputConsole
from ..errors import InvalidInputError
from ..text import markup

if TYPE_CHECKING:
    from ..app import Arena
    from ..plugins import Registry

#: The consoles every command prints to: ``arena.cli.stdout`` and ``arena.cli.stderr`` (set
#: them there to capture or widen the output; the names below follow them).
STDOUT = OutputConsole(soft_wrap=False)
STDERR = OutputConsole(stderr=True)


class _Console:
    """Stands for ``arena.cli.<name>`` wherever a command prints."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        import sys

        return getattr(getattr(sys.modules["arena.cli"], self._name), attribute)


stdout = _Console("stdout")
stderr = _Console("stderr")

db_option = click.option(
    "--db", "db_url", metavar="URL", default=None,
    help="SQLAlchemy URL or SQLite file of the results database (default: $ARENA_DB, else "
    "arena.db in $ARENA_HOME).",
)
#: How `arena run` introduces a result's flags of each severity: a warning marks the result suspect
#: ("flagged", as the leaderboard says), an info flag only says how it was obtained.
SEVERITY_WORDS = {"warning": ("flagged", "yellow"), "info": ("note", "cyan")}


def warn(message: str) -> None:
    """A one-line warning on standard error (a skipped row, an unreadable file)."""
    stderr.print(f"[yellow]warning:[/] {markup(message)}", highlight=False, soft_wrap=True)


def warn_problems(registry: Registry) -> None:
    """Names in ARENA_LOAD_PLUGINS that match no installed package, and plugins that failed to load."""
    warn_selection(registry)
    for problem in registry.problems:
        stderr.print(f"[yellow]warning:[/] plugin not loaded: {markup(problem)}", highlight=False)


def warn_selection(registry: Registry) -> None:
    """Names in ARENA_LOAD_PLUGINS that match no installed package (which would load nothing, silently)."""
    for warning in registry.warnings:
        warn(warning)


def read_store(db_url: str | None):
    """The results database of a command that only reads it: it can still read a damaged
    database (with a warning) that writing commands refuse. The file's check runs beside the
    command's reading; its warning, if any, comes when the command ends."""
    from ..config import database_url
    from ..store import open_store

    store = open_store(database_url(db_url), writes=False, warn=warn)
    context = click.get_current_context(silent=True)
    if context is not None:
        context.call_on_close(lambda: store.damage)
        _without_cycle_collection(context)
    return store


def _without_cycle_collection(context: click.Context) -> None:
    """Turn Python's cycle collector off until the command ends.

    A reading command builds hundreds of thousands of small, long-lived, acyclic objects (rows,
    their decoded JSON): the collector would scan them again and again as they pile up, about
    a sixth of `arena leaderboard`'s time at 10,000 results, to free nothing (its peak memory
    is the same either way). Reference counting still frees everything as usual.
    """
    import gc

    if gc.isenabled():
        gc.disable()
        context.call_on_close(gc.enable)


def stored_tracks(store) -> list:
    """The registered tracks in order; every plugin is loaded only if the store holds a track
    that the ``track.*`` entry points do not register."""
    from ..plugins import load_tracks

    return load_tracks(store.tracks()).ordered_tracks()


def session(db_url: str | None, device: str = "auto", **options: Any) -> Arena:
    """The :class:`arena.Arena` of a command that runs models (its reporter draws on stderr)."""
    from ..app import Arena

    return Arena(db=db_url, device=device, warn=warn, **options)


def parse_params(values: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    params: dict[str, dict[str, Any]] = {}
    for item in values:
        name_key, sep, raw = item.partition("=")
        name, dot, key = name_key.partition(".")
        if not sep or not dot or not name or not key:
            raise InvalidInputError(f"--param {item!r}: use PLUGIN.NAME=VALUE, e.g. -p advtrain.alpha=0.3")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        params.setdefault(name.strip(), {})[key.strip()] = value
    return params


def parse_seeds(seed: int | None, text: str | None) -> list[int]:
    """The seeds of a run: ``--seed S`` (default 0) or ``--seeds S1,S2,...``, never both."""
    if text is None:
        return [0 if seed is None else seed]
    if seed is not None:
        raise InvalidInputError("--seed and --seeds were both given: use --seed S for one seed or --seeds S1,S2,.. "
                                "for several")
    seeds = []
    for item in text.split(","):
        item = item.strip()
        try:
            value = int(item)
        except ValueError:
            raise InvalidInputError(f"--seeds {text!r}: {item!r} is not a whole number (use e.g. --seeds 0,1,2)") from None
        if value in seeds:
            raise InvalidInputError(f"--seeds {text!r}: seed {value} is listed twice")
        seeds.append(value)
    return seeds


def count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'s' * (n != 1)}"


def emit(text: str, output: str | None) -> None:
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        click.echo(text, nl=not text.endswith("\n"))


def echo_json_list(records: list[dict[str, Any]], batch: int = 500) -> None:
    """A JSON list with one record per line, written a batch of records at a time (tens of
    megabytes for thousands of results are never held at once). One compact line per record
    is also what Python's fast JSON encoder writes; pretty-printing took most of the command's
    time."""
    if not records:
        click.echo("[]")
        return
    click.echo("[")
    encode = json.JSONEncoder(separators=(", ", ": ")).encode
    for start in range(0, len(records), batch):
        chunk = records[start : start + batch]
        text = ",\n".join("  " + encode(record) for record in chunk)
        click.echo(text + ("," if start + batch < len(records) else ""))
    click.echo("]")
