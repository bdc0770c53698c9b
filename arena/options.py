"""Parsing of command-line values the tracks and the commands share (light: click only)."""

from __future__ import annotations

import difflib
from typing import Any

from .errors import InvalidInputError


def parse_eps(text: str | None) -> list[float] | None:
    """``--eps 0.1,0.2`` as numbers (None when not given)."""
    if text is None:
        return None
    values = []
    for item in text.split(","):
        item = item.strip()
        try:
            values.append(float(item))
        except ValueError:
            raise InvalidInputError(f"--eps {text!r}: {item!r} is not a number (use e.g. --eps 0.1,0.2)") from None
    if not values:
        raise InvalidInputError("--eps needs at least one value")
    return values


def eps_option(_ctx: Any, _param: Any, text: str | None) -> list[float] | None:
    """A click callback for ``--eps``."""
    return parse_eps(text)


def names_option(_ctx: Any, _param: Any, values: tuple[str, ...]) -> list[str]:
    """A click callback for repeatable options that also accept comma-separated lists."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def check_params(registry: Any, params: dict[str, dict[str, Any]], run: dict[str, list[str]]) -> None:
    """Refuse, before any work, a ``-p`` that names no plugin of this run, or a value its plugin's
    bounds refuse (the values the dataset decides are checked once it is loaded)."""
    in_run = {}
    for kind, names in run.items():
        for info in registry.resolve(kind, names):
            in_run.setdefault(info.name, info)
    for name, values in params.items():
        if name not in in_run:
            raise InvalidInputError(_not_in_run(registry, name, next(iter(values)), sorted(in_run)))
    for name, values in params.items():
        in_run[name].create(values)


def _not_in_run(registry: Any, name: str, key: str, in_run: list[str]) -> str:
    """Why ``-p name.key=...`` names no plugin of this run, and what the user may have meant."""
    where = f"-p {name}.{key}"
    listing = f"this run's plugins: {', '.join(in_run)}"
    flags = {kind: flag for track in registry.ordered_tracks() for kind, flag in track.plugin_options.items()}
    for kind, flag in flags.items():
        if name in registry.plugins[kind]:
            return f"{where}: {kind} {name!r} is not part of this run ({listing}): add {flag} {name}, or drop the -p"
    if name in registry.plugins["dataset"]:
        return f"{where}: {name!r} is a dataset; -p sets hyperparameters of this run's plugins ({listing})"
    installed = sorted({n for kind in flags for n in registry.plugins[kind]})
    close = difflib.get_close_matches(name, in_run, n=1, cutoff=0.5) or \
        difflib.get_close_matches(name, installed, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    kinds = list(flags)
    named = ", ".join(kinds[:-1]) + f" or {kinds[-1]}" if len(kinds) > 1 else "".join(kinds) or "plugin"
    return f"{where}: no {named} is named {name!r}{hint} ({listing}){registry.selection_hint()}"
