"""The fleet of `retain worker` processes: who is alive, and each one's share of the limits.

Owns the worker's registration (a ``runs`` row with the ``connections`` it asks for) and its
beat: every BEAT a worker says it is alive, extends the leases of the deliveries it holds,
hands back those of workers that died (``ledger.recover``), and sets its transport's share of
the fleet's ``smtp.rate_per_second`` and ``smtp.max_connections``:

    rate share        = rate_per_second / live workers
    connection share  = min(asked, max(1, max_connections // live workers))

Why shares, not a token bucket in the database: a shared bucket costs every message a write to
one hot row (a lock all workers queue on, ~0.3 ms a message on PostgreSQL, the fleet's ceiling
at ~3,000 messages/s), while a share costs one query a worker every BEAT and is exact while
every worker has mail to send (bench/workers.py measures it at 1, 2 and 8 workers). The limit is
never exceeded: a worker that joins waits one BEAT and a half before it sends, so that every
other worker has shrunk its share first; a worker that stops or dies leaves the others under the
limit until they notice (one BEAT, or GONE after a death). The cost is idle shares: near the end
of a run, a worker out of mail keeps its share unused.

Per-domain back-off is shared the same way: at each beat a worker publishes the domains its
transport holds back (``send_holds``) and holds back the ones the others published.

Workers tell who is alive by their heartbeats, so their hosts' clocks must agree (NTP).
Must not send or compose (worker.py does), or decide a delivery's outcome.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine, case, delete, select

from engine import db
from engine.config import Settings
from engine.delivery import ledger, runs
from engine.tables import SendHold

BEAT = timedelta(seconds=2)
GONE = 3 * BEAT                   # a worker silent this long no longer counts in the shares
LEASE = timedelta(seconds=60)     # a batch is a worker's this long past its last beat

Clock = Callable[[], datetime]


def live(engine: Engine, now: datetime) -> list[tuple[str, int]]:
    """(host, pid) of the workers alive at ``now``: unfinished, and beating within GONE."""
    r = runs.RUNS.c
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(select(r.host, r.pid).where(
            r.connections.is_not(None), r.finished_at.is_(None), r.heartbeat_at > now - GONE))]


class Fleet:
    """One worker's membership of the fleet, and the thread that beats for it."""

    def __init__(self, engine: Engine, settings: Settings, transport, connections: int,
                 campaign_ids: list[str], clock: Clock):
        self.engine, self.settings, self.transport = engine, settings, transport
        self.asked, self.clock = connections, clock
        self.worker_id = runs.start_run(engine, campaign_ids, clock(), connections)
        self.live = 1
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beating, name="fleet-beat", daemon=True)

    def others(self, now: datetime) -> int:
        """Other workers alive at ``now``."""
        return len(live(self.engine, now)) - 1

    def join(self, sleep: Callable[[float], None]) -> None:
        """Take this worker's share, start beating, and, when others are sending, wait until
        they have made room for it."""
        others = self.others(self.clock())
        self._share(others + 1)
        self._thread.start()
        if others:
            sleep(1.5 * BEAT.total_seconds())

    def lease_until(self) -> datetime:
        return self.clock() + LEASE

    def beat(self) -> None:
        now = self.clock()
        runs.heartbeat(self.engine, self.worker_id, now)
        ledger.renew(self.engine, self.worker_id, now + LEASE)
        ledger.recover(self.engine, now, current_run=self.worker_id)
        self._share(self.others(now) + 1)
        self._share_holds(now)

    def _share_holds(self, now: datetime) -> None:
        """Publish the domains (and the server) this worker's transport holds back, and hold
        back those the other workers published: a domain that says "later" to one worker is
        left alone by all of them."""
        domains = getattr(self.transport, "domains", None)
        if domains is None:
            return
        table = SendHold.__table__
        mine = [{"key": k, "until": now + timedelta(seconds=s)} for k, s in domains.held().items()]
        with self.engine.begin() as conn:
            if mine:
                insert = db.dialect_insert(conn, table)
                conn.execute(insert.on_conflict_do_update(index_elements=["key"], set_={
                    "until": case((insert.excluded.until > table.c.until, insert.excluded.until),
                                  else_=table.c.until)}), mine)
            conn.execute(delete(table).where(table.c.until < now - timedelta(hours=1)))
            theirs = conn.execute(select(table.c.key, table.c.until)
                                  .where(table.c.until > now)).all()
        for key, until in theirs:
            domains.hold(key, (until - now).total_seconds())

    def leave(self) -> None:
        """Stop beating and give back what this worker leased and did not claim."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        ledger.unlease(self.engine, self.worker_id)

    def _share(self, live: int) -> None:
        smtp, share = self.settings.smtp, getattr(self.transport, "share", None)
        self.live = live
        if share is not None:  # an SMTP transport (a file or memory one has no limits)
            share(smtp.rate_per_second / live,
                  min(self.asked, max(1, smtp.max_connections // live)))

    def _beating(self) -> None:
        while not self._stop.wait(BEAT.total_seconds()):
            try:
                self.beat()
            except Exception as error:  # noqa: BLE001 - the worker's loop raises it
                self.error = error
                return
