"""Plugin loading: entry points of group ``arena``, one at a time, into a validated registry.

Tracks (:class:`arena.Track`) are registered the same way, through ``register_tracks``. An
entry point named ``track.NAME`` is one the commands that only read results load on their own
(:func:`load_tracks`), without importing any other plugin module; its module must therefore
import neither torch nor plugin modules at import time. A track registered from another entry
point still works: those commands load every entry point when the store holds a track they do
not know.

Built-in plugins are ordinary entry points of the ``arena-bench`` distribution. Each entry point
is loaded on its own, so a package that fails to import is reported (with its name, version and
error) while every other plugin still works. ``ARENA_LOAD_PLUGINS`` names the third-party
packages to load (comma-separated; empty loads none); built-ins always load. A name in it that
matches no installed package is warned of (with the package it probably meant), and an unknown
plugin's error says that the variable limits what is loaded.
"""

from __future__ import annotations

import difflib
import os
import re
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Iterable

import pluggy

from typing import TYPE_CHECKING

from . import hookspecs
from .errors import ArenaError, PluginError, UnknownPluginError
from .text import has_controls

if TYPE_CHECKING:
    from .base import Plugin
    from .track import Track

ENTRY_POINT_GROUP = "arena"
DISTRIBUTION = "arena-bench"
KINDS = ("attack", "defense", "generator", "dataset")
#: The prefix of entry-point names that register tracks only (loaded by every command).
TRACK_ENTRY_PREFIX = "track."


def _base(kind: str) -> type[Plugin]:
    """The base class plugins of ``kind`` subclass (imported on first use: it imports torch)."""
    from .attack import Attack
    from .dataset import Dataset
    from .defense import Defense
    from .generator import Generator

    return {"attack": Attack, "defense": Defense, "generator": Generator, "dataset": Dataset}[kind]
_HOOKS = {
    "attack": "register_attacks",
    "defense": "register_defenses",
    "generator": "register_generators",
    "dataset": "register_datasets",
}


@dataclass(frozen=True)
class Source:
    """Where a plugin came from: distribution name and version, and the entry point."""

    package: str
    version: str
    entry_point: str = ""

    @property
    def builtin(self) -> bool:
        return self.package == DISTRIBUTION

    def __str__(self) -> str:
        return f"{self.package} {self.version}"


@dataclass(frozen=True)
class PluginInfo:
    """A registered plugin class and where it came from."""

    kind: str
    name: str
    cls: type[Plugin]
    source: Source

    def create(self, overrides: dict[str, Any] | None = None) -> Plugin:
        return self.cls.create(overrides)

    @property
    def code_sha256(self) -> str | None:
        """SHA-256 of the plugin's source files (:func:`arena.provenance.code_sha256`): part of
        the identity of every result and model it produces, so that edited code is recomputed
        even when its version is not bumped."""
        from .provenance import code_sha256

        return code_sha256(self.cls, self.source.builtin)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "package": self.source.package,
            "version": self.source.version,
            "builtin": self.source.builtin,
            "summary": self.cls.summary(),
            "hyperparameters": _jsonable(self.cls.parameter_defaults()),
            "bounds": {name: bound.describe(name) for name, bound in self.cls.hyperparameter_bounds().items()},
            "capabilities": self.cls.capabilities() if hasattr(self.cls, "capabilities") else {},
        }


@dataclass(frozen=True)
class LoadProblem:
    """A package or plugin that could not be loaded, and why."""

    package: str
    version: str
    entry_point: str
    error: str
    detail: str = ""

    def __str__(self) -> str:
        where = f"{self.package} {self.version}".strip()
        return f"{where} (entry point {self.entry_point!r}): {self.error}"


@dataclass
class Registry:
    """Every loaded plugin by kind and name, plus the problems met while loading."""

    plugins: dict[str, dict[str, PluginInfo]] = field(default_factory=lambda: {k: {} for k in KINDS})
    duplicates: dict[tuple[str, str], list[Source]] = field(default_factory=dict)
    problems: list[LoadProblem] = field(default_factory=list)
    manager: pluggy.PluginManager | None = None
    #: The value of ``ARENA_LOAD_PLUGINS`` when it limited what was loaded (None: unset).
    selection: str | None = None
    #: Installed third-party packages that ``ARENA_LOAD_PLUGINS`` left out.
    skipped: list[Source] = field(default_factory=list)
    #: What the user should know about the selection: names in it that match no installed package.
    warnings: list[str] = field(default_factory=list)
    #: Registered tracks by name (instances).
    tracks: dict[str, Track] = field(default_factory=dict)
    #: Registered executors by name (classes).
    executors: dict[str, Any] = field(default_factory=dict)

    def ordered_tracks(self) -> list[Track]:
        """The registered tracks, built-in ones first (by ``order``, then name)."""
        return sorted(self.tracks.values(), key=lambda track: (track.order, track.name))

    def track(self, name: str) -> Track:
        """The track ``name``; a clear error for an unknown one."""
        try:
            return self.tracks[name]
        except KeyError:
            known = ", ".join(sorted(self.tracks)) or "none"
            raise UnknownPluginError(f"unknown track {name!r} (registered: {known}){self.selection_hint()}") from None

    def add_track(self, cls: Any, source: Source) -> None:
        from .track import Track

        if not (isinstance(cls, type) and issubclass(cls, Track)):
            raise PluginError(f"register_tracks got {cls!r}, which is not a subclass of arena.Track")
        name = getattr(cls, "name", "")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9-]{0,15}", name):
            raise PluginError(f"track {cls.__qualname__} has name {name!r}: use 1-16 lower-case letters, digits and "
                              "dashes, starting with a letter")
        existing = self.tracks.get(name)
        if existing is not None and type(existing) is not cls:
            raise PluginError(f"track {name!r} from {source} duplicates one already registered")
        boards = [board for track in self.tracks.values() if track.name != name for board in track.board_names()]
        clash = sorted(set(cls.board_names()) & set(boards))
        if clash:
            raise PluginError(f"track {name!r} from {source} names leaderboard tracks {clash} of another track")
        self.tracks[name] = cls()

    def add_executor(self, cls: Any, source: Source) -> None:
        from .executors import BaseExecutor

        if not (isinstance(cls, type) and issubclass(cls, BaseExecutor)):
            raise PluginError(f"register_executors got {cls!r}, which is not a subclass of "
                              "arena.executors.BaseExecutor")
        name = getattr(cls, "name", "")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9-]{0,15}", name):
            raise PluginError(f"executor {cls.__qualname__} has name {name!r}: use 1-16 lower-case letters, digits "
                              "and dashes, starting with a letter")
        existing = self.executors.get(name)
        if existing is not None and existing is not cls:
            raise PluginError(f"executor {name!r} from {source} duplicates one already registered")
        self.executors[name] = cls

    def executor(self, name: str, **settings: Any) -> Any:
        """An instance of the executor ``name`` with the run's executor settings; a clear error
        for an unknown one."""
        try:
            cls = self.executors[name]
        except KeyError:
            known = ", ".join(sorted(self.executors)) or "none"
            raise UnknownPluginError(f"unknown executor {name!r} (registered: {known}): choose one with --executor "
                                     f"or ARENA_EXECUTOR{self.selection_hint()}") from None
        return cls(**settings)

    def names(self, kind: str) -> list[str]:
        return sorted(self.plugins[kind])

    def all(self) -> list[PluginInfo]:
        return [info for kind in KINDS for _, info in sorted(self.plugins[kind].items())]

    def get(self, kind: str, name: str) -> PluginInfo:
        """The plugin ``name`` of ``kind``; a clear error for unknown or ambiguous names."""
        clashes = self.duplicates.get((kind, name))
        if clashes:
            who = " and ".join(str(s) for s in clashes)
            raise PluginError(
                f"{kind} {name!r} is registered by both {who}: uninstall one, or choose packages "
                "with ARENA_LOAD_PLUGINS"
            )
        try:
            return self.plugins[kind][name]
        except KeyError:
            pass
        known = self.names(kind)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        listing = ", ".join(known) if known else "none installed"
        raise UnknownPluginError(f"unknown {kind} {name!r}: {hint}(available: {listing}){self.selection_hint()}")

    def selection_hint(self) -> str:
        """What to add to an unknown-plugin error while ``ARENA_LOAD_PLUGINS`` limits what is loaded."""
        if self.selection is None:
            return ""
        packages = sorted({str(source) for source in self.skipped})
        left_out = f"; not loaded: {', '.join(packages)}" if packages else ""
        return (f"; ARENA_LOAD_PLUGINS={self.selection!r} limits the third-party packages loaded{left_out} "
                "(unset it to load every installed package)")

    def resolve(self, kind: str, names: Iterable[str]) -> list[PluginInfo]:
        """Look up names in order; ``all`` expands to every plugin of the kind but those that
        run only when named (``in_all = False``: baselines)."""
        result: list[PluginInfo] = []
        for name in names:
            infos = ([self.get(kind, n) for n in self.names(kind) if self.plugins[kind][n].cls.in_all]
                     if name == "all" else [self.get(kind, name)])
            result.extend(i for i in infos if i not in result)
        return result

    def add(self, kind: str, cls: Any, source: Source) -> None:
        base = _base(kind)
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(f"{_HOOKS[kind]} got {cls!r}, which is not a subclass of arena.{base.__name__}")
        if cls.kind != kind:
            raise PluginError(f"{cls.__qualname__} is a {cls.kind}, registered as a {kind}")
        cls.validate_class()
        for what, value in (("package name", source.package), ("version", source.version)):
            if has_controls(value):
                raise PluginError(
                    f"{kind} {cls.name!r}: the {what} {value!r} holds control characters; the host records "
                    "only printable names and versions"
                )
        from .presets import PRESETS

        if kind == "attack" and cls.name in PRESETS:
            raise PluginError(f"attack {cls.name!r} from {source} has the name of Arena's attack preset "
                              f"({PRESETS[cls.name].title}), which `-a {cls.name}` runs: rename the attack")
        existing = self.plugins[kind].get(cls.name)
        if existing is not None and existing.cls is not cls:
            self.duplicates.setdefault((kind, cls.name), [existing.source]).append(source)
            raise PluginError(
                f"{kind} {cls.name!r} from {source} duplicates the one from {existing.source}"
            )
        self.plugins[kind][cls.name] = PluginInfo(kind, cls.name, cls, source)


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _selected_packages() -> set[str] | None:
    value = os.environ.get("ARENA_LOAD_PLUGINS")
    if value is None:
        return None
    return {_normalize(p.strip()) for p in value.split(",") if p.strip()}


def _selection_warnings(selected: set[str], entry_points: list[metadata.EntryPoint]) -> list[str]:
    """A warning for each name in ``ARENA_LOAD_PLUGINS`` that is no installed plugin package,
    with the package it probably meant (an entry point's name, a near spelling)."""
    packages: dict[str, str] = {}  # normalized name -> name as installed
    owners: dict[str, set[str]] = {}  # entry-point name -> packages that declare it
    for ep in entry_points:
        if ep.dist is None:
            continue
        packages[_normalize(ep.dist.name)] = ep.dist.name
        owners.setdefault(_normalize(ep.name), set()).add(ep.dist.name)
    third_party = sorted(name for key, name in packages.items() if key != DISTRIBUTION)
    warnings = []
    for name in sorted(selected - set(packages)):
        if name in owners:
            hint = (f"it is the entry-point name of {' and '.join(sorted(owners[name]))}: "
                    "ARENA_LOAD_PLUGINS takes package names")
        else:
            close = difflib.get_close_matches(name, third_party, n=2, cutoff=0.8)
            hint = f"did you mean {' or '.join(close)}?" if close else (
                f"installed plugin packages: {', '.join(third_party)}" if third_party
                else "no third-party plugin package is installed")
        warnings.append(f"ARENA_LOAD_PLUGINS names {name!r}, which is no installed plugin package: {hint}")
    return warnings


def _entry_points() -> list[metadata.EntryPoint]:
    # One distribution may be visible twice on sys.path (an editable install plus a build dir);
    # keep the first occurrence of each (package, entry-point name).
    seen, unique = set(), []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        package = _normalize(ep.dist.name) if ep.dist else ""
        if (package, ep.name, ep.value) in seen:
            continue
        seen.add((package, ep.name, ep.value))
        unique.append(ep)
    return unique


def load_registry(extra: Iterable[tuple[object, Source]] = (), tracks_only: bool = False) -> Registry:
    """Load every selected entry point (and ``extra`` plugin objects) into a new registry;
    with ``tracks_only``, only the ``track.*`` entry points (:func:`load_tracks`)."""
    manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
    manager.add_hookspecs(hookspecs)
    registry = Registry(manager=manager)
    selected = _selected_packages()
    sources: dict[int, Source] = {}
    entry_points = _entry_points()
    if selected is not None:
        registry.selection = os.environ.get("ARENA_LOAD_PLUGINS", "")
        registry.warnings = _selection_warnings(selected, entry_points)

    for ep in entry_points:
        if tracks_only and not ep.name.startswith(TRACK_ENTRY_PREFIX):
            continue
        dist = ep.dist
        source = Source(dist.name if dist else "unknown", dist.version if dist else "", ep.name)
        if not source.builtin and selected is not None and _normalize(source.package) not in selected:
            registry.skipped.append(source)
            continue
        try:
            plugin = ep.load()
            manager.register(plugin, name=f"{source.package}:{ep.name}")
        except Exception as exc:  # a broken package must not take the others down
            registry.problems.append(_problem(source, exc))
            continue
        sources[id(plugin)] = source

    for plugin, source in extra:
        manager.register(plugin, name=f"{source.package}:{source.entry_point or id(plugin)}")
        sources[id(plugin)] = source

    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        bad = sources.get(id(exc.plugin), Source("unknown", ""))
        registry.problems.append(_problem(bad, PluginError(f"unknown hook: {exc}")))
        manager.unregister(exc.plugin)

    hooks = {"track": "register_tracks"} if tracks_only else {**_HOOKS, "track": "register_tracks",
                                                                "executor": "register_executors"}
    adders = {"track": registry.add_track, "executor": registry.add_executor}
    for kind, hook in hooks.items():
        for impl in getattr(manager.hook, hook).get_hookimpls():
            source = sources.get(id(impl.plugin), Source("unknown", ""))

            def register(cls: Any, _kind: str = kind, _source: Source = source) -> None:
                try:
                    if _kind in adders:
                        adders[_kind](cls, _source)
                    else:
                        registry.add(_kind, cls, _source)
                except ArenaError as exc:
                    registry.problems.append(_problem(_source, exc))

            try:
                impl.function(**{"register": register} if "register" in impl.argnames else {})
            except Exception as exc:
                registry.problems.append(_problem(source, exc))
    return registry


def _problem(source: Source, exc: BaseException) -> LoadProblem:
    message = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ArenaError) else str(exc)
    return LoadProblem(
        source.package,
        source.version,
        source.entry_point,
        message,
        "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    )


_REGISTRY: Registry | None = None
_TRACKS: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = load_registry()
    return _REGISTRY


def load_tracks(needed: Iterable[str] = ()) -> Registry:
    """The registered tracks, loading only the ``track.*`` entry points (no plugin module, no
    torch); every entry point when that leaves one of ``needed`` (track names, e.g. those in
    the store) unknown, or when the full registry is loaded already."""
    global _TRACKS
    if _REGISTRY is not None:
        return _REGISTRY
    if _TRACKS is None:
        _TRACKS = load_registry(tracks_only=True)
    if set(needed) - set(_TRACKS.tracks):
        return get_registry()
    return _TRACKS


#: Where the hyperparameter defaults of the installed plugins are kept between commands.
DEFAULTS_FILE = "plugin-defaults.json"


def _installed_fingerprint() -> str:
    """A hash of the installed entry points of group ``arena`` (package, version, name, target)."""
    import hashlib
    import json

    described = sorted((ep.dist.name if ep.dist else "", ep.dist.version if ep.dist else "", ep.name, ep.value)
                       for ep in _entry_points())
    return hashlib.sha256(json.dumps([described, os.environ.get("ARENA_LOAD_PLUGINS")]).encode()).hexdigest()


_DEFAULTS: dict[str, dict[str, Any]] | None = None
#: Whether _DEFAULTS holds every installed plugin (read from the full registry in this process).
_DEFAULTS_COMPLETE = False


def plugin_defaults(kind: str, name: str) -> dict[str, Any] | None:
    """The hyperparameter defaults of the installed plugin ``name`` of ``kind`` (None: not
    installed): what the labels of runs stored before runs recorded their plugins' defaults
    are read against. Kept in ``$ARENA_HOME/plugin-defaults.json`` for the installed entry
    points, so that reading commands load every plugin (torch included) only once after the
    installed plugins change."""
    global _DEFAULTS, _DEFAULTS_COMPLETE
    if _DEFAULTS is None:
        _DEFAULTS = _read_defaults()
    key = f"{kind}:{name}"
    if key not in _DEFAULTS and not _DEFAULTS_COMPLETE:  # a plugin not installed is looked up once
        _DEFAULTS, _DEFAULTS_COMPLETE = _write_defaults(), True
    return _DEFAULTS.get(key)


def _defaults_path() -> Any:
    from .config import home

    return home() / DEFAULTS_FILE


def _read_defaults() -> dict[str, dict[str, Any]]:
    import json

    try:
        stored = json.loads(_defaults_path().read_text(encoding="utf-8"))
    except (OSError, ValueError, ArenaError):
        return {}
    if not isinstance(stored, dict) or stored.get("fingerprint") != _installed_fingerprint():
        return {}
    defaults = stored.get("defaults")
    return defaults if isinstance(defaults, dict) else {}


def _write_defaults() -> dict[str, dict[str, Any]]:
    """The defaults of every plugin of the full registry, written for the next command."""
    import json

    registry = get_registry()
    defaults = {f"{info.kind}:{info.name}": _jsonable(info.cls.parameter_defaults()) for info in registry.all()}
    try:
        from pathlib import Path

        from .cache import atomic_write

        text = json.dumps({"fingerprint": _installed_fingerprint(), "defaults": defaults}, default=str)
        atomic_write(_defaults_path(), lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))
    except (OSError, ArenaError):
        pass  # a read-only home: the next command looks them up again
    return defaults


def set_registry(registry: Registry | None) -> None:
    """Replace (or with ``None``, reset) the process-wide registry; for tests and embedding."""
    global _REGISTRY, _TRACKS, _DEFAULTS, _DEFAULTS_COMPLETE
    _REGISTRY, _TRACKS, _DEFAULTS, _DEFAULTS_COMPLETE = registry, None, None, False
