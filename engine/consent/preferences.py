"""A customer's mail preferences: unsubscribed for good, or all mail paused for a while.

Owns: pausing all marketing email to a customer's address for one of ``PAUSE_DAYS`` (chosen on
the unsubscribe page instead of leaving), and ``state``: what the customer chose, which the
unsubscribe page shows and the planner honours (a paused address is skipped as ``paused`` until
the pause ends; the send re-checks it). Pauses are keyed by the lower-cased address, like
suppressions, so a re-import of customers keeps them. Must not: know campaigns or send.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, select

from engine.consent import suppressions
from engine.errors import NotFound
from engine.tables import Customer, MailPause

CUSTOMERS, PAUSES = Customer.__table__, MailPause.__table__
PAUSE_DAYS = (30, 90)  # the choices the unsubscribe page offers


@dataclass(frozen=True)
class State:
    """What a customer chose: ``unsubscribed`` for good, or paused until a moment."""
    unsubscribed: bool
    paused_until: datetime | None


def active(now: datetime):
    """The join condition of pauses still running at ``now`` (to outer-join on email_key)."""
    return and_(PAUSES.c.email_key == CUSTOMERS.c.email_key, PAUSES.c.until > now)


def _address(conn, customer_id: int) -> str:
    address = conn.execute(select(CUSTOMERS.c.email_key)
                           .where(CUSTOMERS.c.id == customer_id)).scalar()
    if address is None:
        raise NotFound(f"no customer with id {customer_id}")
    return address


def pause(engine: Engine, customer_id: int, days: int, now: datetime,
          source: str = "unsubscribe page") -> datetime:
    """No marketing email to this customer for ``days`` (one of PAUSE_DAYS); returns the end.
    Pausing again replaces the earlier pause."""
    if days not in PAUSE_DAYS:
        raise ValueError(f"a pause lasts one of {PAUSE_DAYS} days, not {days}")
    until = now + timedelta(days=days)
    with engine.begin() as conn:
        address = _address(conn, customer_id)
        conn.execute(PAUSES.delete().where(PAUSES.c.email_key == address))
        conn.execute(PAUSES.insert().values(email_key=address, until=until, source=source,
                                            created_at=now))
    return until


def state(engine: Engine, customer_id: int, now: datetime) -> State:
    with engine.connect() as conn:
        address = _address(conn, customer_id)
        until = conn.execute(select(PAUSES.c.until).where(
            PAUSES.c.email_key == address, PAUSES.c.until > now)).scalar()
        return State(suppressions.is_suppressed(conn, address), until)
