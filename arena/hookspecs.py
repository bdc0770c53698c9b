"""The plugin hooks. Each receives a callback from the host and calls it once per item."""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("arena")
hookimpl = pluggy.HookimplMarker("arena")


@hookspec
def register_attacks(register):
    """Register attacks: call ``register(AttackClass)`` once per :class:`arena.Attack` subclass."""


@hookspec
def register_defenses(register):
    """Register defenses: call ``register(DefenseClass)`` once per :class:`arena.Defense` subclass."""


@hookspec
def register_generators(register):
    """Register generative models: call ``register(GeneratorClass)`` per :class:`arena.Generator`."""


@hookspec
def register_datasets(register):
    """Register datasets: call ``register(DatasetClass)`` once per :class:`arena.Dataset` subclass."""


@hookspec
def register_tracks(register):
    """Register tracks (kinds of evaluation): call ``register(TrackClass)`` once per
    :class:`arena.Track` subclass. Name the entry point ``track.NAME`` so that the commands that
    only read results find the track without loading every plugin (see :mod:`arena.plugins`)."""


@hookspec
def register_executors(register):
    """Register executors (engines that run a plan's jobs): call ``register(ExecutorClass)``
    once per subclass of :class:`arena.executors.BaseExecutor` (see :mod:`arena.executors`)."""


@hookspec
def register_commands(cli):
    """Add commands to the ``arena`` CLI: ``cli`` is its :class:`click.Group`."""
