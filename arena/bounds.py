"""Declared bounds of hyperparameters: what values a plugin accepts, checked by the host.

A plugin class states them in its ``bounds`` class attribute, e.g.::

    bounds = {"epochs": arena.Range(1), "lr": arena.Range(0, low_inclusive=False),
              "architecture": arena.Choice(("cnn", "mlp"))}

and the host checks every value against them when the plugin is created (so before any
dataset is loaded or any model trained) and again after ``resolve(dataset)`` has filled in
the values that depend on the dataset. A tuple-valued hyperparameter is checked element by
element.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Iterable


def show(value: Any) -> str:
    """A value as the one-line error messages print it: ``0``, ``0.5``, ``'abc'``, ``true``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return repr(value)


class Bound:
    """What a hyperparameter accepts; subclasses implement :meth:`problem` and :meth:`describe`."""

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is refused, as the end of a sentence (``"is below the minimum 1"``), or
        ``None`` if it is accepted."""
        raise NotImplementedError

    def describe(self, name: str) -> str:
        """What is accepted, e.g. ``"0 < lr"`` or ``"one of cnn, mlp"``."""
        raise NotImplementedError

    def check(self, name: str, value: Any) -> str | None:
        """``None`` if ``value`` (every element of it, for a list or tuple) is accepted; else one
        line naming the hyperparameter, the bad value and what is accepted."""
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            problem = self.problem(item)
            if problem is not None:
                where = f"{name}={show(value)}" + (f": {show(item)}" if item is not value else "")
                return f"{where} {problem}"
        return None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Range(Bound):
    """A number between ``low`` and ``high`` (``None``: no limit on that side), each end
    included unless ``low_inclusive`` / ``high_inclusive`` say otherwise.

    ``Range(1)`` is "at least 1", ``Range(0, low_inclusive=False)`` "above 0",
    ``Range(0, 1, low_inclusive=False)`` the interval (0, 1].
    """

    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True

    def __post_init__(self) -> None:
        for end in (self.low, self.high):
            if end is not None and not _number(end):
                raise TypeError(f"Range ends must be finite numbers or None, got {end!r}")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"Range low {self.low} is above high {self.high}")

    def problem(self, value: Any) -> str | None:
        if not _number(value):
            return f"is not {self.describe('')}"
        low, high = self.low, self.high
        bounded = low is not None and high is not None
        suffix = f" (accepted: {self.interval()})" if bounded else ""
        if low is not None:
            if self.low_inclusive and value < low:
                return f"is below the minimum {show(low)}{suffix}"
            if not self.low_inclusive and value <= low:
                return f"is not above {show(low)}{suffix}"
        if high is not None:
            if self.high_inclusive and value > high:
                return f"is above the maximum {show(high)}{suffix}"
            if not self.high_inclusive and value >= high:
                return f"is not below {show(high)}{suffix}"
        return None

    def interval(self) -> str:
        """``[1, inf)``, ``(0, 1]``, ..."""
        left = "(-inf" if self.low is None else ("[" if self.low_inclusive else "(") + show(self.low)
        right = "inf)" if self.high is None else show(self.high) + ("]" if self.high_inclusive else ")")
        return f"{left}, {right}"

    def describe(self, name: str) -> str:
        return f"a number in {self.interval()}"


@dataclass(frozen=True)
class Choice(Bound):
    """One of a fixed set of values (a mapping gives its keys), e.g. ``Choice(("logits", "loss"))``."""

    values: tuple

    def __init__(self, values: Iterable[Any]) -> None:
        object.__setattr__(self, "values", tuple(values))
        if not self.values:
            raise ValueError("Choice needs at least one value")

    def problem(self, value: Any) -> str | None:
        if any(value == v and type(value) is type(v) for v in self.values):
            return None
        close = difflib.get_close_matches(value, [v for v in self.values if isinstance(v, str)], n=1) \
            if isinstance(value, str) else []
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"is not {self.describe('')}{hint}"

    def describe(self, name: str) -> str:
        return "one of " + ", ".join(str(v) if isinstance(v, str) else show(v) for v in self.values)


@dataclass(frozen=True)
class Pattern(Bound):
    """A string matching a regular expression, described in words: e.g.
    ``Pattern(r"[\\w.]+:\\w+", "MODULE:FUNCTION")``."""

    regex: Any
    description: str

    def __init__(self, regex: str, description: str) -> None:
        import re

        object.__setattr__(self, "regex", re.compile(regex))
        object.__setattr__(self, "description", description)

    def problem(self, value: Any) -> str | None:
        if isinstance(value, str) and self.regex.fullmatch(value):
            return None
        return f"is not {self.description}"

    def describe(self, name: str) -> str:
        return self.description
