"""Arena: adversarial attacks against defenses, generative models against each other.

The public API for plugin authors::

    import arena

    class MyAttack(arena.Attack):
        name = "my-attack"
        ...

    @arena.hookimpl
    def register_attacks(register):
        register(MyAttack)
"""

from __future__ import annotations

from importlib import metadata

from .access import Access, LabelOracle, ScoreOracle, TransferAccess, WhiteBox
from .attack import Attack
from .bounds import Bound, Choice, Range
from .dataset import Dataset, Splits
from .defense import Defense
from .errors import AccessError, ArenaError, InvalidInputError, PluginError, QueryBudgetExceeded
from .generator import Generator
from .hookspecs import hookimpl
from .threat import ThreatModel, project
from .training import BuildContext
from .transforms import InputTransform

try:
    __version__ = metadata.version("arena-bench")
except metadata.PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = [
    "Access",
    "AccessError",
    "ArenaError",
    "Attack",
    "Bound",
    "BuildContext",
    "Choice",
    "Dataset",
    "Defense",
    "Generator",
    "InputTransform",
    "InvalidInputError",
    "LabelOracle",
    "PluginError",
    "QueryBudgetExceeded",
    "Range",
    "ScoreOracle",
    "Splits",
    "ThreatModel",
    "TransferAccess",
    "WhiteBox",
    "hookimpl",
    "project",
    "__version__",
]
