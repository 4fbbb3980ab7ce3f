"""The suppression list: addresses that must never get marketing email.

Owns: adding and checking suppressed addresses (unsubscribed, bounced, complained, imported,
manual), keyed by the lower-cased address so that a suppressed customer stays suppressed when the
shop's customers are imported again, and importing a suppression list file. An unsubscribe also
withdraws the customer's consent. Must not send.
"""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, bindparam, select, text, update
from sqlalchemy.engine import Connection

from engine.errors import CsvError, NotFound
from engine.tables import Customer, Suppression, SuppressionReason, UTCDateTime

SUPPRESSIONS, CUSTOMERS = Suppression.__table__, Customer.__table__


# What stops marketing mail only: an unsubscribed address still gets its shipping notice
# (transactional mail); a bounced, complained-about, imported or manual one gets nothing.
MARKETING_ONLY = (SuppressionReason.unsubscribed.value,)


def blocks(reason: str | None, transactional: bool) -> bool:
    """Whether a suppression for ``reason`` (None: not suppressed) stops this mail."""
    return reason is not None and not (transactional and str(reason) in MARKETING_ONLY)


def key(email: str) -> str:
    return email.strip().lower()


# Checked before every single send: prebuilt, since building the expression costs more.
_IS_SUPPRESSED = text("SELECT 1 FROM suppressions WHERE email_key = :key")


def is_suppressed(conn: Connection, email: str) -> bool:
    return conn.execute(_IS_SUPPRESSED, {"key": key(email)}).first() is not None


# SQLite and PostgreSQL both know ON CONFLICT DO NOTHING; ledger.Outbox runs this statement on
# its own cursor when a message bounces, in the transaction that records the bounce.
ADD = text("INSERT INTO suppressions (email_key, reason, source, created_at) "
           "VALUES (:key, :reason, :source, :now) ON CONFLICT (email_key) DO NOTHING"
           ).bindparams(bindparam("now", type_=UTCDateTime()))


def add_params(email: str, reason: str, source: str, now: datetime) -> dict:
    return {"key": key(email), "reason": SuppressionReason(reason).value, "source": source,
            "now": now}


def add(conn: Connection, email: str, reason: str, source: str, now: datetime) -> bool:
    """Suppress an address; True if it was not suppressed before. The first reason is kept."""
    return conn.execute(ADD, add_params(email, reason, source, now)).rowcount == 1


def unsubscribe(engine: Engine, email_or_id: str | int, now: datetime,
                source: str = "cli") -> str:
    """Suppress a customer's address and withdraw consent; returns the suppressed address key."""
    with engine.begin() as conn:
        query = select(CUSTOMERS.c.id, CUSTOMERS.c.email_key)
        if isinstance(email_or_id, int):
            row = conn.execute(query.where(CUSTOMERS.c.id == email_or_id)).first()
            if row is None:
                raise NotFound(f"no customer with id {email_or_id}")
            address = row.email_key
        else:
            address = key(email_or_id)
            if "@" not in address:
                raise NotFound(f'"{email_or_id}" is not an email address')
        add(conn, address, "unsubscribed", source, now)
        conn.execute(update(CUSTOMERS).where(CUSTOMERS.c.email_key == address)
                     .values(accepts_marketing=False))
    return address


def import_file(engine: Engine, path: str | Path, now: datetime,
                reason: str = "imported") -> tuple[int, int]:
    """A CSV or plain list of addresses (first column, or an `email` column).

    Returns (rows read, newly suppressed). A line without an address is an error naming it, and
    nothing is written.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise NotFound(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise CsvError("the file is not UTF-8 text; save it as UTF-8 CSV", path) from None
    rows = list(csv.reader(text.splitlines()))
    column = 0
    start = 0
    if rows and any("email" == cell.strip().lower() for cell in rows[0]):
        column = [cell.strip().lower() for cell in rows[0]].index("email")
        start = 1
    addresses = []
    for number, row in enumerate(rows[start:], start=start + 1):
        if not row or not any(cell.strip() for cell in row):
            continue
        value = row[column].strip() if column < len(row) else ""
        if "@" not in value:
            raise CsvError(f'"{value}" is not an email address', path, number, "email")
        addresses.append(value)
    added = 0
    with engine.begin() as conn:
        for address in addresses:
            added += add(conn, address, reason, f"file:{path.name}", now)
    return len(addresses), added
