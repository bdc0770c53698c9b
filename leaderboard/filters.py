"""What the user asked to see: dataset, norm, eps and track, applied to rows or to any view."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from .render import View

@dataclass(frozen=True)
class Filters:
    """``None`` (or an empty eps list) lets everything through."""

    dataset: str | None = None
    norm: str | None = None
    eps: tuple[float, ...] = ()
    track: str | None = None
    #: The origin of imported results (``arena import --origin``), or ``local``.
    origin: str | None = None

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether a result row, or a view's group, is selected; keys it lacks do not count
        against it (a generative view has no norm)."""
        if self.dataset is not None and record.get("dataset", self.dataset) != self.dataset:
            return False
        if self.origin is not None and record.get("origin", self.origin) != self.origin:
            return False
        if self.norm is not None and record.get("norm", self.norm) != self.norm:
            return False
        if self.eps and "eps" in record:
            return any(math.isclose(float(record["eps"]), eps, rel_tol=1e-9, abs_tol=1e-12) for eps in self.eps)
        return True

    def wants(self, tracks: tuple[str, ...]) -> bool:
        return self.track is None or self.track in tracks

    def select(self, views: list[View]) -> list[View]:
        return [view for view in views if self.wants(view.tracks) and self.matches(view.group)]
