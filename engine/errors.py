"""The one exception tree of the engine.

Every error a user can cause says what is wrong, where (file, line, key or id) and how to fix it.
The CLI prints ``str(error)`` as one line and exits 1; it never shows a traceback for these.

    RetainError
    ├── ConfigError            config.yaml or an environment variable it references
    ├── InputError             a marketer's or a shop's file, located by file:line[:column]
    │   ├── CsvError           an import file (row and column)
    │   ├── CampaignError      a campaign YAML file
    │   ├── SegmentError       a segment filter
    │   └── TemplateError      a Jinja template (syntax, unknown variable, sandbox refusal)
    ├── Invalid                several InputErrors found in one pass (``retain validate``)
    ├── NotFound               a customer, campaign or file that does not exist
    ├── SchemaError            the database's schema revision is not the code's (upgrade one)
    ├── CustomerDataError      one customer's value their message cannot carry (that one fails)
    ├── PredictionError        the shop's history cannot support a prediction (too thin, no fit)
    ├── DeliveryError          the mail server refused the run as a whole (auth, policy)
    └── StaleData              the shop's data is older than data.max_age: campaigns wait

A located error is always one line: ``one_line()`` writes a line break or another control
character that a user's value brought into a message as an escape (``\\n``, ``\\x00``), and
shortens a message that quotes a huge value, keeping its end (where the fix is).

This module imports nothing else from ``engine``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from pathlib import Path

MAX_MESSAGE = 500  # characters of one located message; longer ones quote a huge value
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u2028\u2029]")
_ESCAPES = {"\n": "\\n", "\r": "\\r"}


def one_line(message: str) -> str:
    """``message`` as one printable line of at most MAX_MESSAGE characters.

    Control characters (line breaks, NUL, a terminal's escape) come from the user's own values
    quoted in a message; they are shown as escapes so the error stays one line and cannot
    rewrite the terminal. An over-long message keeps its start and its end (the fix).
    """
    text = _CONTROL.sub(_escape, str(message))
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE - 200] + " … " + text[-197:]
    return text


def _escape(match: re.Match[str]) -> str:
    char = match[0]
    return _ESCAPES.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 256
                                  else f"\\u{ord(char):04x}")


class RetainError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(RetainError):
    """config.yaml is missing, malformed, or references an unset environment variable."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        self.message = message = one_line(message)
        where = ""
        if self.path:
            where = f"{self.path}:{line}: " if line else f"{self.path}: "
        super().__init__(where + message)


class InputError(RetainError):
    """A problem in a file a person wrote, located as ``file:line:column: message``."""

    def __init__(
        self,
        message: str,
        path: str | Path | None = None,
        line: int | None = None,
        column: int | None = None,
    ):
        self.path = str(path) if path is not None else None
        self.line = line
        self.column = column
        self.message = message = one_line(message)
        super().__init__(self.location() + message)

    def location(self) -> str:
        if not self.path:
            return ""
        parts = [self.path]
        if self.line:
            parts.append(str(self.line))
            if self.column:
                parts.append(str(self.column))
        return ":".join(parts) + ": "


class CsvError(InputError):
    """A bad row in an import file: names the row number and the column."""

    def __init__(self, message: str, path: str | Path, row: int | None = None,
                 column_name: str | None = None):
        self.row = row
        self.column_name = column_name
        detail = f"column '{column_name}': {message}" if column_name else message
        super().__init__(detail, path=path, line=row)

    def location(self) -> str:
        if self.row:
            return f"{self.path}: row {self.row}: "
        return f"{self.path}: "


class CampaignError(InputError):
    """A campaign file is invalid."""


class SegmentError(InputError):
    """A segment filter uses an unknown field, an unknown operator or a wrong value."""


class TemplateError(InputError):
    """A template does not compile, uses an unknown variable, or was refused by the sandbox."""


class Invalid(RetainError):
    """Several problems found in one pass; ``problems`` lists each one."""

    def __init__(self, problems: Iterable[InputError | ConfigError]):
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} found"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))


class NotFound(RetainError):
    """Something named on the command line does not exist."""


class SchemaError(RetainError):
    """The database's schema is at another revision than the code expects; the message names
    the fix (`retain db upgrade`, or upgrading retain)."""


class CustomerDataError(RetainError):
    """One customer's data cannot make their message (an address no header can hold, a value
    the template fails on): that delivery fails and nobody else's does. Names the customer id
    and the field (None: no single field), never the address."""

    def __init__(self, customer_id: int, field: str | None, message: str):
        self.customer_id, self.field, self.message = customer_id, field, message
        where = f"customer {customer_id}" + (f", field {field}" if field else "")
        super().__init__(f"{where}: {message}")


class DeliveryError(RetainError):
    """The mail server refused the whole run (authentication, policy): fix settings, then rerun."""


class StaleData(RetainError):
    """No source has brought the shop's data within ``data.max_age``; acting on it would mail
    people about a shop that has moved on (a win-back to someone who ordered yesterday)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean "x"?)' when a close match exists, else a list of the valid choices."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f' (did you mean "{close[0]}"?)'
    return f" (valid: {', '.join(choices)})"


class PredictionError(RetainError):
    """Predictions cannot be made from this history: says why (no repeat buyers, no fit)."""
