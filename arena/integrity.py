"""Integrity flags: why a stored result deserves suspicion (or a note), shown in the leaderboard.

A flag is stored with its run as ``{"code", "severity", "message"}``. ``warning`` flags mark a
result as suspect (the leaderboard leaves it out of rankings unless asked to include flagged
results); ``info`` flags say how a result was obtained (e.g. "randomized defense evaluated with
expectation over transformation") without casting doubt on it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

SEVERITIES = ("info", "warning")


@dataclass(frozen=True)
class Flag:
    code: str
    message: str
    severity: str = "warning"

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"flag severity must be one of {SEVERITIES}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_suspect(flags: list[dict[str, Any]]) -> bool:
    """Whether any stored flag is a warning."""
    return any(flag.get("severity", "warning") == "warning" for flag in flags or [])
