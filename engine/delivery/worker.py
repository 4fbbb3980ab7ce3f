"""`retain worker`: the sending half of a run, fed by leases from the ledger instead of a plan.

The scheduler and `retain run --plan-only` plan; any number of workers, on any number of
machines, send. A worker is ``runner.Sender`` (its threads claim → send → record, with every
rule of a run: the claim before DATA rechecks suppression and consent, a lost reply is
``unknown``, a message our back-off held gives its attempt back, a customer whose data makes no
message is failed for good) fed by ``runner.one_pass`` with batches it leases:

    loop   quiet hours held back (ledger.hold_for_quiet_hours)
           ledger.lease(a batch, FOR UPDATE SKIP LOCKED) ──► compose ──► Sender ──► …
           nothing due: wait POLL seconds (or, ``until_idle``, stop)

As in a run, a worker with POOL_MIN messages due renders in other processes on a machine with
more than one core (``runner.composer_for``): rendering in the sending process made its sender
threads queue behind the renderer for the interpreter lock (128 connections to a relay
answering in 100 ms: 806 messages/s, against 1,066 with one render process).

Why the ledger and not a job library (procrastinate and the like): the ledger already is the
queue — one row a delivery with its status, its next attempt and a unique key — and a second
table of jobs would be a second truth to keep in step with it (a job done whose row says
``planned``), PostgreSQL only, while SQLite must keep working. ``SKIP LOCKED`` on the rows
themselves is the whole of what such a library would add.

Limits across workers are ``fleet``'s: each worker sends within its share of the rate and the
connections. A worker that dies: the next beat of any other worker (``ledger.recover``) hands
back the rows it leased and marks those it held in ``sending`` ``unknown``; on another host,
its leases lapse after ``fleet.LEASE``, and its ``sending`` rows become ``unknown`` once its
heartbeat is 10 minutes old, as for a run.

A policy refusal or too many bounces pauses the worker's campaigns and stops it (as a run); a
server that cannot be reached or asks us to wait makes it wait, then go on.
Reads no clock of its own (``clock`` and ``sleep`` are injected). Must not plan.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, func, select

from engine.campaigns import models as cm
from engine.config import Settings
from engine.delivery import compose, fleet, ledger, runner, runs, verdicts
from engine.errors import RetainError

POLL = 1.0  # seconds between looks at the ledger while nothing is due


def work(engine: Engine, settings: Settings, campaigns: Callable[[], list[cm.Campaign]],
         transport, *, connections: int, clock: Callable[[], datetime],
         sleep: Callable[[float], None], stop: threading.Event | None = None,
         until_idle: bool = False, progress: Callable[[int], None] | None = None
         ) -> runner.RunReport:
    """Send what the ledger has due for ``campaigns()`` (asked again each pass: the runnable
    campaigns, paused ones left out) until ``stop`` is set, the worker is paused, or (with
    ``until_idle``) nothing is due or leased any more. ``connections``: this worker's sender
    threads (its SMTP connections, within its share of ``smtp.max_connections``)."""
    stop = stop or threading.Event()
    chosen = campaigns()
    member = fleet.Fleet(engine, settings, transport, connections, [c.id for c in chosen], clock)
    report = runner.RunReport(run_id=member.worker_id)
    own = settings.model_copy(update={"smtp": settings.smtp.model_copy(
        update={"max_connections": connections})})
    # Small batches: a worker holds no more rows than its connections will send in a moment,
    # so the others find mail to send too (a page of 200 leased by a 2-connection worker on a
    # slow relay left the rest of the fleet idle).
    batch = min(runner.PAGE, max(20, 8 * connections))
    sender = runner.Sender(engine, own, transport, member.worker_id, clock, report, stop,
                           queued=batch)
    composer = runner.composer_for(engine, settings, chosen, clock())
    try:
        member.join(sleep)
        while not sender.halted():
            chosen, composer = _current(settings, engine, campaigns, chosen, composer, clock())
            ids = [c.id for c in chosen]
            now = clock()
            if ids:
                ledger.hold_for_quiet_hours(engine, settings, ids, now)
            fetched = runner.one_pass(sender, composer, clock, progress, lambda _after, ids=ids: (
                ledger.lease(engine, member.worker_id, ids, clock(), member.lease_until(),
                             batch) if ids else []))
            if member.error is not None:
                raise member.error
            if sender.paused:
                break
            if _rest(sender, settings, clock, sleep):
                continue
            if fetched == 0:
                if until_idle and not _pending(engine, ids, clock()):
                    break
                sleep(POLL)
    except BaseException:
        sender.halt.set()  # what is queued and not claimed stays planned for the others
        raise
    finally:
        sender.close()
        composer.close()
        member.leave()
        report.paused, report.interrupted = sender.paused, sender.interrupted
        runs.finish_run(engine, member.worker_id, clock(), report.as_dict(), sender.paused)
    return report


def refuse_a_second(engine: Engine, now: datetime) -> None:
    """On a database that takes one writer at a time (SQLite), refuse to start a second worker."""
    running = fleet.live(engine, now)
    if running:
        host, pid = running[0]
        raise RetainError(f"a worker already sends from this database (host {host}, pid {pid}); "
                          "SQLite takes one worker: stop it first, or move to PostgreSQL "
                          "(README \"Sending workers\")")


def _current(settings: Settings, engine: Engine, campaigns: Callable[[], list[cm.Campaign]],
             chosen: list[cm.Campaign], composer: compose.Composer, now: datetime
             ) -> tuple[list[cm.Campaign], compose.Composer]:
    """The campaigns to send for now; a new composer when they changed (edited, resumed)."""
    now_chosen = campaigns()
    if {c.id: c for c in now_chosen} == {c.id: c for c in chosen}:
        return chosen, composer
    composer.close()
    return now_chosen, runner.composer_for(engine, settings, now_chosen, now)


def _rest(sender: runner.Sender, settings: Settings, clock: Callable[[], datetime],
          sleep: Callable[[float], None]) -> bool:
    """While the server holds us back or cannot be reached, wait; True when the worker waited.
    A run would stop here; a worker goes on once the server takes mail again."""
    now = clock()
    if sender.interrupted:
        wait = timedelta(seconds=settings.delivery.connection_backoff_seconds)
    elif sender.brakes.holding(now):
        wait = sender.brakes.held_until - now
    else:
        return False
    sleep(max(wait.total_seconds(), 0.0))
    sender.brakes = verdicts.Brakes(settings)  # a fresh start: the server may be back
    sender.halt.clear()
    return True


def _pending(engine: Engine, campaign_ids: list[str], now: datetime) -> int:
    """Deliveries due now, or leased and not yet claimed (a worker is on them)."""
    if not campaign_ids:
        return 0
    d = ledger.DELIVERIES
    leased = and_(d.c.status.in_(ledger.SENDABLE), d.c.lease_until > now,
                  d.c.campaign_id.in_(campaign_ids))
    with engine.connect() as conn:
        held = conn.execute(select(func.count()).where(leased)).scalar_one()
    return held + ledger.due_count(engine, campaign_ids, now)
