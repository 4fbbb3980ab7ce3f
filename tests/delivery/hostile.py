"""A hostile mail server for delivery tests: seeded faults, a fake clock, a realistic shop,
and what the ledger and the server ended up with.

``Faults`` is a script for the loopback ``MailServer``: it answers RCPT and DATA with 451s at a
given rate, drops connections after DATA, refuses AUTH or the greeting (a 421 storm), and keeps
a tally of what it did to whom, so a test can compare the ledger with what the server saw. Each
message's fate is drawn from (seed, stage, address, how many times the server saw it there):
the same whatever the order the sender threads happen to take.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Callable

from sqlalchemy import insert, select, text

from engine import db, tables
from engine.delivery import ledger
from engine.transport.mailserver import DROP, KEEP_AND_DROP, MailServer
from tests.shopdata import NOW

GREYLISTED = "451 4.7.1 Greylisted, please try again later"
BUSY = "451 4.3.0 Temporary local problem, try again later"
STORM = "421 4.3.2 Too many connections, try again later"
AUTH_LATER = "454 4.7.0 Temporary authentication failure"


class Faults:
    """A server script: 451 to ``rcpt`` and ``data`` shares of commands, connections dropped
    after DATA (``drop``: the message is lost; ``keep_and_drop``: kept, the reply lost), 454 to
    an ``auth`` share of logins, and 421 to every greeting (or every MAIL: ``storm_at``) while
    ``storm()`` says so."""

    def __init__(self, seed: int = 1, *, rcpt: float = 0.0, data: float = 0.0,
                 drop: float = 0.0, keep_and_drop: float = 0.0, auth: float = 0.0,
                 storm: Callable[[], bool] | None = None, storm_at: str = "connect"):
        self.seed, self.rcpt, self.data, self.auth = seed, rcpt, data, auth
        self.drop, self.keep_and_drop = drop, keep_and_drop
        self.storm, self.storm_at = storm, storm_at
        self.tries: Counter[str] = Counter()     # address → transactions that reached RCPT
        self.refusals: Counter[str] = Counter()  # address → 4xx answers to its RCPT or DATA
        self.injected: Counter[str] = Counter()  # fault → times injected
        self._seen: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def __call__(self, stage: str, address: str) -> str | None:
        address = address.lower()
        if stage == self.storm_at and self.storm and self.storm():
            return self._inject("421 storm", STORM)
        if stage == "auth":
            return self._inject("454 to AUTH", AUTH_LATER) if self._draw(stage, "") < self.auth \
                else None
        if stage == "rcpt":
            with self._lock:
                self.tries[address] += 1
            if self._draw(stage, address) < self.rcpt:
                return self._refuse(address, "451 to RCPT", GREYLISTED)
        if stage == "data":
            draw = self._draw(stage, address)
            if draw < self.data:
                return self._refuse(address, "451 to DATA", BUSY)
            if draw < self.data + self.drop:
                return self._inject("dropped after DATA, message lost", DROP)
            if draw < self.data + self.drop + self.keep_and_drop:
                return self._inject("dropped after DATA, message kept", KEEP_AND_DROP)
        return None

    def _draw(self, stage: str, key: str) -> float:
        with self._lock:
            n = self._seen[(stage, key)]
            self._seen[(stage, key)] += 1
        digest = hashlib.sha256(f"{self.seed}:{stage}:{key}:{n}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def _inject(self, fault: str, reply: str) -> str:
        with self._lock:
            self.injected[fault] += 1
        return reply

    def _refuse(self, address: str, fault: str, reply: str) -> str:
        with self._lock:
            self.refusals[address] += 1
        return self._inject(fault, reply)


# Most customers of a shop are at two or three big mailbox providers; the rest are spread thin.
DOMAINS = [("bigmail.example", 0.45), ("webpost.example", 0.30), ("isp-mail.example", 0.10)]
SMALL_DOMAINS = 40


def domain_for(n: int) -> str:
    """The n-th customer's domain: 45 %, 30 % and 10 % at three providers, 15 % at 40 others."""
    share = (n * 0.6180339887) % 1.0  # evenly spread, the same every time
    for domain, weight in DOMAINS:
        if share < weight:
            return domain
        share -= weight
    return f"shop{n % SMALL_DOMAINS}.example"


def realistic_shop(engine, count: int) -> list[str]:
    """``count`` consenting customers, each due one winback email; returns their addresses."""
    with engine.begin() as conn:
        first = conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM customers")).scalar() + 1
        ids = range(first, first + count)
        emails = {i: f"customer{i}@{domain_for(i)}" for i in ids}
        conn.execute(insert(tables.Customer.__table__), [dict(
            id=i, external_id=f"real-{i}", email=emails[i], email_key=emails[i],
            first_name="Ann", last_name="Lee", accepts_marketing=True,
            created_at=NOW.replace(year=2025), tags="") for i in ids])
        conn.execute(insert(tables.Order.__table__), [dict(
            external_id=f"real-o{i}", customer_id=i, created_at=NOW.replace(month=4, day=6),
            local_date=NOW.replace(month=4, day=6).date(), status="paid", total_cents=4000)
            for i in ids])
        db.bump_data_version(conn)
    return list(emails.values())


def rows(engine) -> dict[str, tables.Delivery]:
    """Deliveries by the customer's address."""
    d, c = ledger.DELIVERIES, tables.Customer.__table__
    with engine.connect() as conn:
        return {r.email: r for r in conn.execute(
            select(d, c.c.email).join(c, c.c.id == d.c.customer_id))}


def received(server: MailServer) -> list[str]:
    """The recipient of each message the server accepted, in order."""
    return [m.rcpt_tos[0] for m in server.messages]
