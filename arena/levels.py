"""The access levels an attack may ask for (no torch here: stored results and the leaderboard use them)."""

from __future__ import annotations

from enum import Enum


class Access(str, Enum):
    """How much of the target an attack sees."""

    WHITE_BOX = "white-box"
    SCORE_QUERY = "score-query"
    LABEL_QUERY = "label-query"
    ZERO_QUERY = "zero-query"

    def __str__(self) -> str:
        return self.value
