"""The sender threads' hold on the ledger: each message is claimed before its DATA goes out, and
its outcome recorded after, in transactions the threads of one process share.

A sender thread asks ``Outbox.step`` to record its previous message's outcome and to claim its
next delivery, and waits until that is committed. One committer thread takes every step waiting
at that moment and commits them together (group commit):

    sender threads   step(done, claim) ─┐                        ┌─► Claim, then DATA
                     step(done, claim) ─┼─► committer: ONE transaction ─┤
                     step(done, None)  ─┘   outcomes, suppressions,     └─► …
                                            then the claims

So a sender still has at most one row in ``sending`` at a time (the message in flight: just
claimed, or handed over with its reply not yet recorded), and a crash leaves exactly those for
``ledger.recover`` to mark ``unknown``: nothing planned is lost, nothing sent is sent twice.
A bounce's suppression is written with the bounce, before the same transaction's claims, which
check suppression and consent again: an unsubscribe since the plan counts at once.

Why together: 128 threads each running their own transaction waited ~55 ms a message for a
pooled connection and for the interpreter's lock between their round trips, so a worker of 128
connections on a relay answering in 100 ms sent half of what the relay takes. One transaction a
group holds one connection and costs one commit, whatever the group's size. When a group's
transaction fails (two runs racing for the same rows can deadlock), each of its steps is
committed on its own, as before, so an error is only that step's.

The statements are written once as text and compiled once per dialect: building SQLAlchemy
expressions for each of a million messages costs more than running them.
Must not render, send or decide an outcome (verdicts.py does).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, bindparam, text

from engine.campaigns import flows
from engine.consent import suppressions
from engine.tables import DeliveryStatus, Skip, UTCDateTime

S = DeliveryStatus
GROUP = 256  # steps committed in one transaction, at most

_MARKETING_ONLY = ", ".join(f"'{reason}'" for reason in suppressions.MARKETING_ONLY)
_CLAIM = text(
    "UPDATE deliveries SET status = 'sending', claimed_at = :now, claimed_by = :run, "
    "message_id = :message_id, attempts = attempts + 1, lease_until = NULL "
    "WHERE id = :id AND status IN ('planned', 'failed') "
    # Not a row another worker leased, unless its lease lapsed.
    "AND (lease_until IS NULL OR lease_until <= :now OR claimed_by = :run) "
    # Checked in the claim itself, right before the send: an unsubscribe, a pause, a bounce or
    # withdrawn consent since the plan counts at once. Transactional mail needs no consent, and
    # neither an unsubscribe nor a pause of marketing mail stops it.
    "AND EXISTS (SELECT 1 FROM customers c WHERE c.id = deliveries.customer_id "
    "AND (c.accepts_marketing OR deliveries.transactional) AND NOT EXISTS "
    "(SELECT 1 FROM suppressions s WHERE s.email_key = c.email_key "
    f"AND NOT (deliveries.transactional AND s.reason IN ({_MARKETING_ONLY}))) "
    "AND (deliveries.transactional OR NOT EXISTS "
    "(SELECT 1 FROM mail_pauses p WHERE p.email_key = c.email_key AND p.until > :now))) "
    # An abandoned checkout's step: the checkout must still be open.
    f"AND NOT EXISTS (SELECT 1 FROM checkouts WHERE checkouts.id = deliveries.checkout_id "
    f"AND {flows.COMPLETED}) "
    "RETURNING attempts"
).bindparams(bindparam("now", type_=UTCDateTime()))
_CANCEL = text(
    "UPDATE deliveries SET status = 'cancelled', reason = :reason, lease_until = NULL "
    "WHERE id = :id AND status IN ('planned', 'failed') "
    "AND (lease_until IS NULL OR lease_until <= :now OR claimed_by = :run) "
    "AND EXISTS (SELECT 1 FROM checkouts "
    f"WHERE checkouts.id = deliveries.checkout_id AND {flows.COMPLETED}) RETURNING id"
).bindparams(bindparam("now", type_=UTCDateTime()))
_SUPPRESS = text(
    "UPDATE deliveries SET status = 'suppressed', reason = :reason, lease_until = NULL "
    "WHERE id = :id AND status IN ('planned', 'failed') "
    "AND (lease_until IS NULL OR lease_until <= :now OR claimed_by = :run) RETURNING id"
).bindparams(bindparam("now", type_=UTCDateTime()))
_MARK = text(
    "UPDATE deliveries SET status = :status, reason = :reason, "
    "message_id = COALESCE(:message_id, message_id), sent_at = COALESCE(:sent_at, sent_at), "
    "next_attempt_at = :retry_at, attempts = attempts - :untried "
    "WHERE id = :id AND status = 'sending'"
).bindparams(bindparam("sent_at", type_=UTCDateTime()),
             bindparam("retry_at", type_=UTCDateTime()))
SUPPRESSED_AT_SEND = ("unsubscribed, paused their mail, bounced or withdrew consent after the "
                      "plan; not sent")


@dataclass(frozen=True, slots=True)
class Result:
    """What became of a message handed to the transport, to be recorded."""
    delivery_id: int
    status: DeliveryStatus            # sent, failed, bounced or unknown; planned: untried
    message_id: str | None
    reason: str | None = None
    retry_at: datetime | None = None  # failed/planned: when to try again; None: given up
    suppress: str | None = None       # bounced: the address to put on the suppression list
    tried: bool = True                # False: the server never judged it; no attempt spent


def untried(delivery_id: int, attempts: int, retry_at: datetime, reason: str) -> Result:
    """A claimed delivery the server never judged (held back, connection refused): its attempt
    is given back, and it is ``planned`` again, or ``failed`` if the server refused it before."""
    status = S.planned if attempts <= 1 else S.failed
    return Result(delivery_id, status, None, reason, retry_at, tried=False)


@dataclass(frozen=True, slots=True)
class Claim:
    attempts: int      # this one included
    suppressed: bool   # not claimed: the address may no longer be mailed (now ``suppressed``)
    cancelled: bool = False  # not claimed: its occasion ended (a checkout became an order)


@dataclass(slots=True)
class _Step:
    done: Result | None
    claim_id: int | None
    now: datetime
    message_id: str | None
    claim: Claim | None = None
    error: BaseException | None = None
    finished: threading.Event = field(default_factory=threading.Event)


class Outbox:
    """One run's (or worker's) hold on the ledger, shared by its sender threads."""

    def __init__(self, engine: Engine, run_id: str):
        self.engine, self.run_id = engine, run_id
        dialect = engine.dialect
        self._time = UTCDateTime().bind_processor(dialect) or (lambda value: value)
        self._sql = {name: _compiled(statement, dialect) for name, statement in (
            ("claim", _CLAIM), ("suppressed", _SUPPRESS), ("mark", _MARK), ("cancel", _CANCEL),
            ("suppress", suppressions.ADD))}
        self._waiting: list[_Step] = []
        self._wake = threading.Condition()
        self._closed = False
        self._committer: threading.Thread | None = None

    def step(self, done: Result | None, claim_id: int | None, now: datetime,
             message_id: str | None = None) -> Claim | None:
        """Record ``done`` (if any) and claim ``claim_id`` (if any) for the message
        ``message_id``, and return once that is committed; None: another run has it."""
        step = _Step(done, claim_id, now, message_id)
        with self._wake:
            if self._closed:
                raise RuntimeError("the outbox is closed")
            if self._committer is None:
                self._committer = threading.Thread(target=self._committing, daemon=True,
                                                   name="outbox-commit")
                self._committer.start()
            self._waiting.append(step)
            self._wake.notify()
        step.finished.wait()
        if step.error is not None:
            raise step.error
        return step.claim

    def close(self) -> None:
        """Commit what is waiting, then stop the committer."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._committer is not None:
            self._committer.join()

    def _committing(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._waiting or self._closed)
                if not self._waiting:
                    return
                group, self._waiting = self._waiting[:GROUP], self._waiting[GROUP:]
            try:
                self._commit(group)
            except Exception:  # noqa: BLE001 - each step alone: an error is that step's own
                for step in group:
                    try:
                        self._commit([step])
                    except BaseException as error:  # noqa: BLE001 - its sender raises it
                        step.error = error
            except BaseException as error:  # noqa: BLE001 - interpreter exit: tell them all
                for step in group:
                    step.error = error
            finally:
                for step in group:
                    step.finished.set()

    def _commit(self, group: list[_Step]) -> None:
        dbapi = self.engine.raw_connection()
        try:
            cursor = dbapi.cursor()
            self._record(cursor, [step for step in group if step.done is not None])
            claiming = [step for step in group if step.claim_id is not None]
            rows = self._many(cursor, "claim", [dict(
                now=self._time(step.now), run=self.run_id, id=step.claim_id,
                message_id=step.message_id) for step in claiming], returning=True)
            claims = [Claim(row[0], suppressed=False) if row is not None
                      else self._unclaimed(cursor, step)
                      for step, row in zip(claiming, rows, strict=True)]
            dbapi.commit()
        except BaseException:
            dbapi.rollback()
            raise
        finally:
            dbapi.close()
        for step, claim in zip(claiming, claims, strict=True):
            step.claim = claim

    def _record(self, cursor, recording: list[_Step]) -> None:
        """The steps' outcomes, stamped with the steps' ``now``, and the suppressions of the
        bounces among them."""
        self._many(cursor, "mark", [dict(
            status=step.done.status.value, reason=step.done.reason,
            message_id=step.done.message_id, id=step.done.delivery_id,
            sent_at=self._time(step.now) if step.done.status == S.sent else None,
            retry_at=self._time(step.done.retry_at) if step.done.retry_at else None,
            untried=0 if step.done.tried else 1) for step in recording])
        for step in recording:
            if step.done.suppress:
                params = suppressions.add_params(step.done.suppress, "bounced",
                                                 f"smtp {(step.done.reason or '')[:60]}", step.now)
                self._many(cursor, "suppress", [dict(params, now=self._time(step.now))])

    def _unclaimed(self, cursor, step: _Step) -> Claim | None:
        """A delivery the claim did not take: its checkout became an order (cancelled), its
        address may no longer be mailed (suppressed), or another run has it (None)."""
        at = self._time(step.now)
        if self._many(cursor, "cancel", [dict(
                reason=Skip.checkout_completed.value, id=step.claim_id, now=at,
                run=self.run_id)], returning=True)[0] is not None:
            return Claim(0, suppressed=False, cancelled=True)
        row = self._many(cursor, "suppressed", [dict(
            reason=SUPPRESSED_AT_SEND, id=step.claim_id, now=at, run=self.run_id)],
            returning=True)[0]
        return Claim(0, suppressed=True) if row is not None else None

    def _many(self, cursor, name: str, params: list[dict], returning: bool = False) -> list:
        """Run statement ``name`` once for each of ``params``; with ``returning``, the first
        row each gave (or None)."""
        sql, order = self._sql[name]
        if order is not None:
            params = [tuple(p[k] for k in order) for p in params]
        # One statement after another, not psycopg's executemany (pipeline mode): a hostile run
        # once stopped with the committer inside it and the server idle. One at a time costs
        # ~3 % of the rate at 128 connections, and never stopped in forty runs.
        rows = []
        for one in params:
            cursor.execute(sql, one)
            rows.append(cursor.fetchone() if returning else None)
        return rows


def _compiled(statement, dialect) -> tuple[str, list[str] | None]:
    """The SQL in the driver's parameter style, and the parameter order if it is positional."""
    compiled = statement.compile(dialect=dialect)
    return compiled.string, (list(compiled.positiontup) if compiled.positiontup else None)
