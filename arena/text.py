"""Text that plugins supply is data: escaping it for each place the host shows it.

Plugin names, package names and versions, docstrings, hyperparameter keys and values, error
messages and the flags and labels built from them reach the terminal, the Markdown, CSV and
HTML exports and the leaderboard's figures. Each renderer passes such text through one of the
functions here, so that nothing a plugin writes can change how the host's output looks or
behaves: no rich markup, no terminal control sequences, no Markdown or HTML, no mathtext.
"""

from __future__ import annotations

import html
import re
from typing import Any

from rich.markup import escape as _escape_markup
from rich.text import Text

#: Characters that move the cursor, talk to the terminal or reorder what is shown: C0 and C1
#: controls (ESC, BEL, CR, LF, TAB, ...), DEL, Unicode line and paragraph separators,
#: bidirectional overrides and isolates, and lone surrogates (which no terminal can encode).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_UNSAFE_KEEPING_NEWLINES = re.compile(_UNSAFE.pattern.replace("\x00-\x1f", "\x00-\x09\x0b-\x1f"))
#: What Markdown reads as formatting inside a table cell or a line of text.
_MARKDOWN = re.compile(r"\\(?=[!-/:-@\[-`{-~])|[`*_\[\]~|$]")
_MATHTEXT = re.compile(r"[$]")


def _escaped(match: re.Match[str]) -> str:
    character = match.group()
    code = ord(character)
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    if character in named:
        return named[character]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(value: Any, newlines: bool = False) -> str:
    """``value`` as text with every control character written out as an escape (``\\x1b``,
    ``\\n``, ``\\u202e``): one line (unless ``newlines``) that shows exactly what it holds."""
    pattern = _UNSAFE_KEEPING_NEWLINES if newlines else _UNSAFE
    return pattern.sub(_escaped, str(value))


def has_controls(value: str) -> bool:
    """Whether ``value`` holds any character that :func:`visible` writes out as an escape."""
    return _UNSAFE.search(value) is not None


def terminal_safe(value: Any, newlines: bool = False) -> str:
    """Plain text for a terminal (printed without markup, e.g. by click): :func:`visible`."""
    return visible(value, newlines)


def markup(value: Any) -> str:
    """Text to put inside a rich markup string: :func:`visible`, with rich's markup escaped."""
    return _escape_markup(visible(value))


def cell(value: Any, style: str = "", newlines: bool = False) -> Text:
    """A rich table cell (or any renderable) that shows ``value`` literally."""
    return Text(visible(value, newlines), style=style)


def markdown(value: Any) -> str:
    """Text for a Markdown line or table cell: controls written out; ``|``, backticks, emphasis,
    link brackets, ``$`` (math) and backslashes that would escape them backslash-escaped;
    ``<``, ``>`` and ``&`` as HTML entities."""
    text = _MARKDOWN.sub(lambda match: "\\" + match.group(), visible(value))
    return html.escape(text, quote=False)


def csv_field(value: Any) -> Any:
    """A CSV field: strings with their controls written out (the csv module quotes the rest)."""
    return visible(value) if isinstance(value, str) else value


def html_text(value: Any, quote: bool = False) -> str:
    """Text for HTML content (or, with ``quote``, an attribute value)."""
    return html.escape(visible(value), quote=quote)


def plot_text(value: Any) -> str:
    """Text for a matplotlib label, tick or title: never parsed as mathtext (every ``$`` is
    escaped, which matplotlib shows as a plain ``$``)."""
    return _MATHTEXT.sub(r"\\$", visible(value))
