"""Attack presets: one name for a fixed protocol of attack configurations, such as AutoAttack's
standard version (``arena run -a autoattack``).

A preset's members run as ordinary pairings (each stored, ranked and shown like any other run);
their hyperparameters and query budget are the preset's, whatever ``-p`` and ``--queries`` say
for the same attacks run on their own. The leaderboard recognises a defense's runs of every
member and reports the per-sample worst case over them next to the worst case over all attacks.

Light at import: no torch, no plugin module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .evaluation import DEFAULT_QUERY_BUDGET

#: The package whose attacks the presets name (a third-party attack of the same name is not one).
BUILT_IN = "arena-bench"


@dataclass(frozen=True)
class Member:
    """One attack configuration of a preset: the attack, the hyperparameters the preset fixes
    (the others keep their defaults: they do not change which points the attack fools), and,
    for a query attack, its query budget."""

    attack: str
    params: Mapping[str, Any]
    query_budget: int | None = None

    def matches(self, row: Mapping[str, Any]) -> bool:
        """Whether a stored result (a flat robustness row) is this configuration."""
        params = row.get("attack_params") or {}
        return (row.get("attack") == self.attack and (row.get("attack_package") or BUILT_IN) == BUILT_IN
                and not row.get("fast") and all(_same(params.get(k), v) for k, v in self.params.items())
                and (self.query_budget is None or row.get("query_budget") == self.query_budget))


def _same(stored: Any, wanted: Any) -> bool:
    if isinstance(wanted, float) and isinstance(stored, (int, float)) and not isinstance(stored, bool):
        return abs(float(stored) - wanted) <= 1e-12
    return stored == wanted


@dataclass(frozen=True)
class Preset:
    name: str
    #: How boards title its column, e.g. "AutoAttack (standard)".
    title: str
    summary: str
    members: tuple[Member, ...] = field(default_factory=tuple)

    def attacks(self) -> list[str]:
        return [member.attack for member in self.members]


#: AutoAttack's standard version (Croce & Hein 2020, "Reliable evaluation of adversarial
#: robustness with an ensemble of diverse parameter-free attacks", ICML; the authors'
#: ``version='standard'`` for Linf and L2): APGD-CE without restarts, APGD-T over the 9 most likely
#: wrong classes, FAB-T over the same 9 classes, and Square with 5,000 queries (p_init 0.8, the
#: schedule of p not rescaled to the budget). 100 iterations each for the gradient attacks.
AUTOATTACK = Preset(
    name="autoattack",
    title="AutoAttack (standard)",
    summary="AutoAttack's standard version (Croce & Hein 2020): APGD-CE, APGD-T, FAB-T, Square (5,000 queries).",
    members=(
        Member("apgd", {"loss": "ce", "iterations": 100, "restarts": 1, "rho": 0.75, "momentum": 0.75}),
        Member("apgd-t", {"iterations": 100, "restarts": 1, "target_classes": 9, "rho": 0.75, "momentum": 0.75}),
        Member("fab", {"iterations": 100, "restarts": 1, "target_classes": 9, "alpha_max": 0.1, "eta": 1.05,
                       "beta": 0.9}),
        Member("square", {"p_init": 0.8, "rescale_schedule": False}, query_budget=DEFAULT_QUERY_BUDGET),
    ),
)

PRESETS: dict[str, Preset] = {AUTOATTACK.name: AUTOATTACK}


def expand(names: list[str]) -> list[str]:
    """Attack names with each preset replaced by its members' attacks (for the plugins a run loads)."""
    out: list[str] = []
    for name in names:
        for attack in PRESETS[name].attacks() if name in PRESETS else [name]:
            if attack not in out:
                out.append(attack)
    return out
