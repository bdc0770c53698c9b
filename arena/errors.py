"""Errors that end as one clear line in the CLI (a traceback only with ``--debug``)."""

from __future__ import annotations


class ArenaError(Exception):
    """An error the user can act on; its message is shown as one line."""


class UnknownPluginError(ArenaError):
    """A plugin name that no installed package registers."""


class PluginError(ArenaError):
    """A plugin class or instance that breaks the contract, or a plugin that raised."""


class InvalidInputError(ArenaError):
    """Bad command-line or API input (eps out of range, unknown parameter, ...)."""


class AccessError(ArenaError):
    """An attack asked for more access to the target than it declared."""


class QueryBudgetExceeded(AccessError):
    """A query attack asked the oracle for more queries than the host allows."""


class RefusedResult(ArenaError):
    """An attack returned inputs the host refuses to score (outside the budget, NaN, ...)."""


class StoreError(ArenaError):
    """The results database cannot be opened, read or written."""


class ModelChanged(ArenaError):
    """A defense model differs from its verified checkpoint when the host is about to judge with it."""


class LateRandomness(ArenaError):
    """A model the probe found deterministic gave different outputs for identical passes while judged."""
