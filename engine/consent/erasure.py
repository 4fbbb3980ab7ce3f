"""Forgetting a customer: the person is erased, the orders stay, and no email ever goes out.

Owns what "forget" means, whoever asks (``retain customers forget``, Shopify's customers/redact
compliance webhook, a ``deleted`` flag from the shop's database): the customer's email, names,
country, time zone and tags are removed and consent withdrawn; their orders stay (anonymous) so
metrics and reports keep adding up; checkouts lose the address and recovery link, reviews their
text. The address goes on the suppression list, and so does the anonymised record's
placeholder key: the address, because a later import of an old export must not bring the
person back into the audience; the placeholder, so the planner skips the record itself (even
for transactional mail). Idempotent. Must not send, nor read the clock.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, or_, select, update
from sqlalchemy.engine import Connection

from engine import db
from engine.consent import suppressions
from engine.errors import NotFound
from engine.tables import Checkout, Customer, MailPause, Review

CUSTOMERS, CHECKOUTS, REVIEWS = Customer.__table__, Checkout.__table__, Review.__table__
PAUSES = MailPause.__table__
FORGOTTEN = "forgotten:"  # the email_key prefix of an erased customer


def forget(conn: Connection, now: datetime, source: str, *, customer_id: int | None = None,
           external_id: str | None = None, email: str | None = None) -> int | None:
    """Erase the customer matching any of the given keys; their id, or None if none matches
    (or they were forgotten already)."""
    conditions = []
    if customer_id is not None:
        conditions.append(CUSTOMERS.c.id == customer_id)
    if external_id:
        conditions.append(CUSTOMERS.c.external_id == str(external_id))
    if email:
        conditions.append(CUSTOMERS.c.email_key == suppressions.key(email))
    if not conditions:
        return None
    row = conn.execute(select(CUSTOMERS.c.id, CUSTOMERS.c.email_key)
                       .where(or_(*conditions)).limit(1)).first()
    if row is None:
        return None
    placeholder = f"{FORGOTTEN}{row.id}"
    origin = f"erased:{source}"
    if row.email_key == placeholder:
        return None
    suppressions.add(conn, row.email_key, "manual", origin, now)
    conn.execute(update(CHECKOUTS).where(CHECKOUTS.c.email_key == row.email_key)
                 .values(email_key=None, url=""))
    conn.execute(PAUSES.delete().where(PAUSES.c.email_key == row.email_key))  # moot now
    suppressions.add(conn, placeholder, "manual", origin, now)
    conn.execute(update(CUSTOMERS).where(CUSTOMERS.c.id == row.id).values(
        email="", email_key=placeholder, first_name="", last_name="", accepts_marketing=False,
        consent_at=None, consent_source=None, country=None, timezone=None, tags=""))
    conn.execute(update(CHECKOUTS).where(CHECKOUTS.c.customer_id == row.id)
                 .values(email_key=None, url=""))
    conn.execute(update(REVIEWS).where(REVIEWS.c.customer_id == row.id).values(body=""))
    db.bump_data_version(conn)
    return row.id


def forget_customer(engine: Engine, ref: str, now: datetime, source: str = "cli") -> int:
    """``retain customers forget``: ``ref`` is the numeric id, the shop's id, or the address."""
    ref = ref.strip()
    with engine.begin() as conn:
        for keys in ({"customer_id": int(ref)} if ref.isdigit() else {},
                     {"external_id": ref}, {"email": ref} if "@" in ref else {}):
            if keys and (found := forget(conn, now, source, **keys)) is not None:
                return found
    what = "an email address" if "@" in ref else "a customer id or external id"
    raise NotFound(f'no customer matches "{ref}" as {what}, or they were forgotten already; '
                   "check the spelling (emails match case-insensitively)")
