"""One scheduler leads: a lease held in the database.

APScheduler's documentation warns that two schedulers sharing one job store run each job twice.
Owns: the leader lease — a row in ``leases`` with an expiry that the leader renews; another
process takes it only when it has lapsed (the leader died). On PostgreSQL a session advisory lock
is held as well, released by the server the moment the leader's connection dies. The ledger's
unique key still prevents duplicate sends if both are bypassed. Time is passed in (``now``).
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, select, text, update
from sqlalchemy.engine import Connection

from engine import db
from engine.tables import Lease

LEASES = Lease.__table__
SCHEDULER = "scheduler"
ADVISORY_KEY = 0x7265_7461_696E  # "retain": the advisory lock's number on PostgreSQL


def identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Holder:
    holder: str
    acquired_at: datetime
    expires_at: datetime


class LeaderLease:
    """Acquire, renew and release the lease named ``name`` for this process."""

    def __init__(self, engine: Engine, name: str = SCHEDULER, ttl: timedelta = timedelta(
            seconds=60), me: str | None = None):
        self.engine, self.name, self.ttl = engine, name, ttl
        self.me = me or identity()
        self._advisory: Connection | None = None

    def acquire(self, now: datetime) -> bool:
        """Take the lease if it is free, lapsed, or already ours."""
        if self.engine.dialect.name == "postgresql" and not self._lock_advisory():
            return False
        with self.engine.begin() as conn:
            conn.execute(db.dialect_insert(conn, LEASES).values(
                name=self.name, holder=self.me, acquired_at=now, expires_at=now + self.ttl)
                .on_conflict_do_nothing(index_elements=["name"]))
            # Take it over only if it lapsed; renewing our own keeps acquired_at.
            conn.execute(update(LEASES).where(
                LEASES.c.name == self.name, LEASES.c.holder != self.me,
                LEASES.c.expires_at <= now).values(holder=self.me, acquired_at=now,
                                                    expires_at=now + self.ttl))
            held = conn.execute(select(LEASES.c.holder).where(LEASES.c.name == self.name)
                                ).scalar()
        if held != self.me:
            self._unlock_advisory()
        return held == self.me

    def renew(self, now: datetime) -> bool:
        """Extend our lease; False means we lost it (another process took it over)."""
        with self.engine.begin() as conn:
            renewed = conn.execute(update(LEASES).where(
                LEASES.c.name == self.name, LEASES.c.holder == self.me)
                .values(expires_at=now + self.ttl)).rowcount
        return renewed == 1

    def release(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(LEASES).where(LEASES.c.name == self.name,
                                              LEASES.c.holder == self.me))
        self._unlock_advisory()

    def _lock_advisory(self) -> bool:
        if self._advisory is None:
            self._advisory = self.engine.connect()
        got = self._advisory.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                     {"k": ADVISORY_KEY}).scalar()
        self._advisory.commit()
        if not got:
            self._unlock_advisory()
        return bool(got)

    def _unlock_advisory(self) -> None:
        if self._advisory is not None:
            self._advisory.close()  # the server releases a session lock with its session
            self._advisory = None


def current(engine: Engine, name: str = SCHEDULER) -> Holder | None:
    with engine.connect() as conn:
        row = conn.execute(select(LEASES).where(LEASES.c.name == name)).first()
    return Holder(row.holder, row.acquired_at, row.expires_at) if row else None
