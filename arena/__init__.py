"""Arena: adversarial attacks against defenses, generative models against each other.

The public API for plugin authors::

    import arena

    class MyAttack(arena.Attack):
        name = "my-attack"
        ...

    @arena.hookimpl
    def register_attacks(register):
        register(MyAttack)

and for scripts and notebooks, :class:`arena.Arena` (one object for the home, the results
database and the device). The names are imported on first use, so that ``import arena`` (and
the commands that only read results) never import torch.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

try:
    __version__ = metadata.version("arena-bench")
except metadata.PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "Access": "levels",
    "AccessError": "errors",
    "Arena": "app",
    "ArenaError": "errors",
    "Attack": "attack",
    "Bound": "bounds",
    "BuildContext": "training",
    "Choice": "bounds",
    "Dataset": "dataset",
    "Defense": "defense",
    "Generator": "generator",
    "InputTransform": "transforms",
    "InvalidInputError": "errors",
    "Job": "track",
    "LabelOracle": "access",
    "Outcome": "track",
    "Pattern": "bounds",
    "PluginError": "errors",
    "QueryBudgetExceeded": "errors",
    "Range": "bounds",
    "Request": "track",
    "RowQuery": "track",
    "ScoreOracle": "access",
    "Splits": "dataset",
    "ThreatModel": "threat",
    "Track": "track",
    "TransferAccess": "access",
    "WhiteBox": "access",
    "hookimpl": "hookspecs",
    "project": "threat",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'arena' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
