"""The suppression list: addresses that must never get marketing email.

Owns: adding and checking suppressed addresses (unsubscribed, bounced, complained, imported,
manual), keyed by the lower-cased address so that a suppressed customer stays suppressed when the
shop's customers are imported again, importing a suppression list file, listing the list (by
customer id, other addresses masked: addresses never reach a terminal), lifting one, and the
sentence that says what a suppression is ("unsubscribed on 2026-06-14 (one click)"). An
unsubscribe also withdraws the customer's consent, and lifting the suppression does not give it
back. Must not send.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path

from sqlalchemy import Engine, bindparam, delete, select, text, update
from sqlalchemy.engine import Connection

from engine import display
from engine.errors import CsvError, NotFound, did_you_mean
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


# SQLite and PostgreSQL both know ON CONFLICT DO NOTHING; delivery.outbox runs this statement
# on its own cursor when a message bounces, in the transaction that records the bounce.
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


# How each way in reads in a sentence; other sources (a bounce's server text) are shown as such.
_HOW = {"one-click": "one click", "token": "their unsubscribe link, by retain unsubscribe",
        "cli": "by retain unsubscribe"}


@dataclass(frozen=True)
class Entry:
    """One suppressed address as the command line shows it: the customer it belongs to (None
    for an address no customer has), the address masked, why, how and since when."""
    customer: int | None
    address: str
    reason: str
    source: str
    created_at: datetime

    def describe(self, zone: tzinfo) -> str:
        """"unsubscribed on 2026-06-14 (one click)", "imported from blocklist.csv on …"."""
        on = display.day(self.created_at, zone)
        if self.source.startswith("file:"):
            return f"{self.reason} from {self.source[5:]} on {on}"
        how = _HOW.get(self.source, self.source.removeprefix("smtp ").removeprefix("dsn:"))
        return f"{self.reason} on {on}" + (f" ({how})" if how else "")

    def as_dict(self) -> dict:
        return {"customer": self.customer, "address": self.address, "reason": self.reason,
                "source": self.source, "created_at": self.created_at}


def mask(address: str) -> str:
    """"s***@elsewhere.example": enough to recognise an address one knows, not to read one."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def _entries(conn: Connection, *conditions) -> list[Entry]:
    query = (select(SUPPRESSIONS, CUSTOMERS.c.id.label("customer_id"))
             .select_from(SUPPRESSIONS.outerjoin(
                 CUSTOMERS, CUSTOMERS.c.email_key == SUPPRESSIONS.c.email_key))
             .where(*conditions)
             .order_by(SUPPRESSIONS.c.created_at.desc(), SUPPRESSIONS.c.email_key))
    return [Entry(row.customer_id, mask(row.email_key), str(getattr(row.reason, "value",
                                                                       row.reason)),
                  row.source, row.created_at) for row in conn.execute(query)]


def listing(engine: Engine, reason: str | None = None, limit: int | None = None) -> list[Entry]:
    """The suppression list, newest first; ``reason`` keeps one kind only."""
    conditions = []
    if reason is not None:
        valid = [r.value for r in SuppressionReason]
        if reason not in valid:
            raise NotFound(f'no suppression reason "{reason}"' + did_you_mean(reason, valid))
        conditions.append(SUPPRESSIONS.c.reason == reason)
    with engine.connect() as conn:
        found = _entries(conn, *conditions)
    return found[:limit] if limit is not None else found


def entry_for(conn: Connection, customer_id: int) -> Entry | None:
    """The suppression of a customer's address, if it is suppressed."""
    found = _entries(conn, CUSTOMERS.c.id == customer_id)
    return found[0] if found else None


def remove(engine: Engine, email_or_id: str | int) -> Entry:
    """Lift the suppression of an address (or a customer's, by id); returns what it was.
    The customer's consent stays as it is: an unsubscribe withdrew it, and only the customer
    (or an import saying they accept marketing) gives it back."""
    with engine.begin() as conn:
        if isinstance(email_or_id, int):
            found = _entries(conn, CUSTOMERS.c.id == email_or_id)
            what = f"customer {email_or_id}"
        else:
            found = _entries(conn, SUPPRESSIONS.c.email_key == key(email_or_id))
            what = f"the address {mask(key(email_or_id))}"
        if not found:
            raise NotFound(f"{what} is not on the suppression list; see it with "
                           "`retain suppressions list`")
        address = (conn.execute(select(CUSTOMERS.c.email_key).where(
            CUSTOMERS.c.id == email_or_id)).scalar() if isinstance(email_or_id, int)
            else key(email_or_id))
        conn.execute(delete(SUPPRESSIONS).where(SUPPRESSIONS.c.email_key == address))
    return found[0]
