"""Stored values on their way out of the database: the one place where they are decoded.

SQLite keeps whatever it is given (text in a REAL column, a JSON column that is not JSON), so a
row edited by hand, written by another tool or damaged on disk can hold a value Arena cannot
use. Every column of the schema has one of the types below. Each decodes a value as it is
read and, where that fails, returns an :class:`Undecodable` marker in its place instead of
raising in the middle of a query; the store then leaves the row out with a warning (see
``Store.readable``) and ``arena db check`` lists it. Nothing here changes what is stored.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, LargeBinary, String, Text
from sqlalchemy.types import TypeDecorator

__all__ = [
    "CheckedBinary",
    "CheckedBoolean",
    "CheckedDateTime",
    "CheckedFloat",
    "CheckedInteger",
    "CheckedJSON",
    "CheckedString",
    "CheckedText",
    "Undecodable",
    "undecodable",
]


@dataclass(frozen=True)
class Undecodable:
    """A stored value that cannot be decoded: what was read, and why it cannot be used."""

    raw: Any
    reason: str  # e.g. "is not valid JSON ('{oops')"


class BadValue(ValueError):
    """Raised by a type's ``check``; becomes an :class:`Undecodable` with this reason."""


def _excerpt(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(raw: Any) -> str:
    if isinstance(raw, str):
        return f"text {_excerpt(raw)}"
    if isinstance(raw, (bytes, bytearray, memoryview)):
        return f"{len(raw)} bytes"
    if isinstance(raw, bool):
        return f"the boolean {raw}"
    if isinstance(raw, numbers.Integral):
        return f"the integer {raw}"
    if isinstance(raw, numbers.Real):
        return f"the number {raw!r}"
    return f"a {type(raw).__name__}"


class _Checked(TypeDecorator):
    """A column type whose values are decoded by the dialect as usual, then checked; a value
    that fails either way comes back as an :class:`Undecodable` marker."""

    cache_ok = True

    def check(self, value: Any) -> Any:
        """The decoded value as Arena uses it; raise :class:`BadValue` if it cannot be used."""
        return value

    #: Raw values of these classes are used as they are where the dialect does not decode the
    #: column itself: the common case costs one class test (the leaderboard reads many rows).
    passes: tuple[type, ...] = ()

    def result_processor(self, dialect, coltype) -> Callable[[Any], Any]:
        # Called on the dialect's copy of this type, whose impl is the dialect's own type.
        decode = self.impl_instance.result_processor(dialect, coltype)
        check = self.check
        decodes_null = self._decodes_null
        passes = frozenset(self.passes) if decode is None else frozenset()

        def process(raw: Any) -> Any:
            if raw is None:
                return check(None) if decodes_null else None
            if raw.__class__ in passes:
                return raw
            try:
                return check(decode(raw) if decode is not None else raw)
            except BadValue as exc:
                return Undecodable(raw, str(exc))
            except (ValueError, TypeError, OverflowError, UnicodeError) as exc:
                return Undecodable(raw, self._undecoded(raw, exc))

        return process

    _decodes_null = False

    def _undecoded(self, raw: Any, exc: Exception) -> str:
        return f"holds {_kind(raw)}, which cannot be read ({exc})"


class CheckedString(_Checked):
    impl = String
    cache_ok = True
    passes = (str,)

    def check(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise BadValue(f"holds {_kind(value)}, not text")
        return value


class CheckedText(CheckedString):
    impl = Text
    cache_ok = True


class CheckedInteger(_Checked):
    impl = Integer
    cache_ok = True
    passes = (int,)

    def check(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise BadValue(f"holds {_kind(value)}, not an integer")
        return int(value)


class CheckedFloat(_Checked):
    impl = Float
    cache_ok = True
    passes = (float,)

    def check(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise BadValue(f"holds {_kind(value)}, not a number")
        return float(value)


class CheckedBoolean(_Checked):
    impl = Boolean
    cache_ok = True

    def result_processor(self, dialect, coltype) -> Callable[[Any], Any]:
        # Judge what is stored (SQLite has no booleans: 0 or 1), not what bool() makes of it.
        def process(raw: Any) -> Any:
            if raw is None or raw.__class__ is bool:
                return raw
            if raw.__class__ is int and (raw == 0 or raw == 1):
                return raw == 1
            return Undecodable(raw, f"holds {_kind(raw)}, not true or false")

        return process


class CheckedDateTime(_Checked):
    impl = DateTime
    cache_ok = True

    def _undecoded(self, raw: Any, exc: Exception) -> str:
        return f"holds {_kind(raw)}, not a date and time"


class CheckedBinary(_Checked):
    impl = LargeBinary
    cache_ok = True
    passes = (bytes,)

    def check(self, value: Any) -> Any:
        if isinstance(value, (bytearray, memoryview)):
            return bytes(value)
        if not isinstance(value, bytes):
            raise BadValue(f"holds {_kind(value)}, not bytes")
        return value


_JSON_NAMES = {dict: "a JSON object", list: "a JSON array", str: "a JSON string", bool: "a JSON boolean",
               int: "a JSON number", float: "a JSON number", type(None): "JSON null"}


class CheckedJSON(_Checked):
    """JSON holding a ``dict`` or a ``list`` (``shape``). JSON ``null`` reads as ``None`` where
    the column is ``nullable``, else as an empty ``shape``; ``valid`` (optional) looks further
    into the value and returns why it cannot be used, or ``None``."""

    impl = JSON
    cache_ok = True
    _decodes_null = True

    def __init__(self, shape: type, nullable: bool = False, valid: Callable[[Any], str | None] | None = None):
        super().__init__()
        self.shape = shape
        self.nullable = nullable
        self.valid = valid

    def check(self, value: Any) -> Any:
        if value is None:
            return None if self.nullable else self.shape()
        if not isinstance(value, self.shape):
            raise BadValue(f"is {_JSON_NAMES.get(type(value), type(value).__name__)}, "
                           f"not {_JSON_NAMES[self.shape]}")
        if self.valid is not None and (problem := self.valid(value)) is not None:
            raise BadValue(problem)
        return value

    def _undecoded(self, raw: Any, exc: Exception) -> str:
        if isinstance(raw, (str, bytes)):
            return f"is not valid JSON ({_excerpt(raw)})"
        return f"holds {_kind(raw)}, not JSON"


def flag_list(flags: list[Any]) -> str | None:
    """Stored flags are objects with a ``code`` (see :mod:`arena.integrity`)."""
    for flag in flags:
        if not isinstance(flag, dict) or not isinstance(flag.get("code"), str):
            return f"holds {_excerpt(flag)}, not a flag (an object with a code)"
    return None


def evaluation_record(evaluation: dict[str, Any]) -> str | None:
    """A stored evaluation (see :mod:`arena.evaluation`) is empty or says how it was run."""
    if not evaluation:
        return None
    missing = [key for key in ("bpda", "eot_samples", "decision_draws") if key not in evaluation]
    if missing:
        return f"lacks {', '.join(missing)}"
    if not all(isinstance(evaluation[k], int) and not isinstance(evaluation[k], bool)
               for k in ("eot_samples", "decision_draws")):
        return "holds counts that are not integers"
    return None


def undecodable(values: Mapping[str, Any]) -> list[tuple[str, Undecodable]]:
    """The fields of a row whose values could not be decoded, by name."""
    return [(name, value) for name, value in values.items() if isinstance(value, Undecodable)]
