"""How values read to a person at the command line, and how they go into JSON.

Owns the one spelling of each kind of value the command line shows:
- ``count``: a number with its noun, "1 row", "2,560 customers" (English plurals, given
  explicitly when irregular: ``count(n, "delivery", "deliveries")``);
- ``moment`` and ``day``: times and dates in the store's zone, "2026-06-15 14:00 CEST";
- ``yes_no``, ``words`` (an identifier as words: "half_asleep" → "half asleep"), ``blank``
  ("-" for a missing value);
- ``jsonable``: what JSON output keeps instead: ISO 8601 times in UTC, dates, decimal text.
People read times in the store's zone; JSON keeps UTC, so scripts need no zone to compare.
Foundation module: imports nothing from ``engine``; must not read config.yaml or the clock
(callers pass the zone).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from enum import Enum
from typing import Any

MISSING = "-"


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` with its noun: "1 row", "0 rows", "2,560 customers"."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def moment(value: datetime | None, zone: tzinfo) -> str:
    """A time as the store reads it: "2026-06-15 14:00 CEST"; "-" when there is none."""
    if value is None:
        return MISSING
    if value.tzinfo is None:  # the database keeps UTC; a naive value is UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def day(value: date | datetime | None, zone: tzinfo | None = None) -> str:
    """"2026-06-15": a date, or the store's date of a time."""
    if value is None:
        return MISSING
    if isinstance(value, datetime) and zone is not None:
        value = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(zone)
    return f"{value:%Y-%m-%d}"


def yes_no(value: bool | None) -> str:
    return MISSING if value is None else ("yes" if value else "no")


def words(value: Any) -> str:
    """An identifier or enum value as words ("half_asleep" → "half asleep"); "-" for None."""
    if value is None or value == "":
        return MISSING
    return str(getattr(value, "value", value)).replace("_", " ")


def blank(value: Any) -> str:
    """Any other value as text, "-" when it is missing."""
    return MISSING if value is None or value == "" else str(value)


def iso(value: datetime | None) -> str | None:
    """A time for JSON: ISO 8601 in UTC ("2026-06-15T12:00:00+00:00")."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def jsonable(value: Any) -> Any:
    """``json.dumps``' default: times in UTC (``iso``), dates, decimals, enums as their value."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    return str(value)
