"""The send ledger: the only writer of ``deliveries`` (and of the offers issued with them).

Owns the life of a delivery row:

    planned ──claim──► sending ──reply──► sent | failed (retry later) | bounced | unknown
                          └──not tried (a back-off, a refused connection)──► planned | failed
    planned ──its customer's data cannot make a message──► failed (for good, with the reason)
    planned ──its checkout became an order meanwhile──► cancelled (at the claim)
    held_out, suppressed, deferred, capped: written at plan time, never sent

- ``record_plan`` inserts a plan's rows with INSERT … ON CONFLICT DO NOTHING on the unique key
  (campaign, customer, occasion) and issues coupons only for the rows actually inserted, all in
  one transaction: two planners racing, or a replan after a crash, cannot duplicate anything.
- ``outbox.Outbox.step`` (outbox.py: the sender threads' claims and outcomes, committed in
  groups) moves one row from planned/failed to ``sending`` in a committed transaction *before*
  the message's DATA goes out, together with the previous message's outcome; a row whose
  address was suppressed since the plan becomes ``suppressed`` instead.
  The claim writes the Message-ID: a ``sending`` row may have been handed to the server.
  An abandoned checkout's step whose checkout became an order since the plan becomes
  ``cancelled`` (reason ``checkout_completed``) in the claim: nothing is sent. A
  bounce's suppression is written in the transaction that records the bounce.
- ``attempts`` counts the times the server judged the message: the claim adds one, and a
  result the server never judged (``untried``) takes it back, so a delivery is given up only
  after ``max_attempts`` refusals by the server itself.
- ``fail_for_good`` records deliveries whose message cannot be built from the customer's data
  as ``failed`` with no next attempt: a rerun would fail the same way, so none is made, and
  ``retain deliveries`` and ``retain why`` show the reason.
- ``lease`` hands a worker a batch of due rows for a while (``FOR UPDATE SKIP LOCKED`` on
  PostgreSQL); others do not take them until the lease lapses, so a worker that dies gives its
  unclaimed rows back by itself. The claim is still what guards against a double send.
- ``recover`` turns ``sending`` rows whose run died into ``unknown``: the server may have them,
  so they are reported, never resent silently (``retry_unknown`` resends on purpose).
Must not render or send.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, func, or_, select, text, update
from sqlalchemy.engine import Connection

from engine import db
from engine.campaigns import limits, offers
from engine.campaigns.planner import Candidate
from engine.config import Settings
from engine.delivery import runs
from engine.tables import (
    Coupon,
    Customer,
    Delivery,
    DeliveryStatus,
    OfferKind,
    Product,
    ProductAnnouncement,
    Run,
)

DELIVERIES, COUPONS, RUNS = Delivery.__table__, Coupon.__table__, Run.__table__
PRODUCTS, ANNOUNCED = Product.__table__, ProductAnnouncement.__table__
S = DeliveryStatus
SENDABLE = (S.planned.value, S.failed.value)


@dataclass(frozen=True)
class Claimed:
    """A delivery taken for sending."""
    id: int
    campaign_id: str
    customer_id: int
    occasion: str
    payload: dict
    attempts: int


def record_plan(engine: Engine, batches: Iterable[list[Candidate]], now: datetime) -> dict:
    """Write a plan's deliveries and offers in one transaction; returns counts by status."""
    counts: dict[str, int] = {}
    with engine.begin() as conn:
        for batch in batches:
            rows = [c for c in batch if c.status is not None]
            if not rows:
                continue
            inserted = _insert_deliveries(conn, rows, now)
            issued = []
            for candidate in rows:
                delivery_id = inserted.get((candidate.customer_id, candidate.occasion))
                if delivery_id is None:
                    counts["already_planned"] = counts.get("already_planned", 0) + 1
                    continue
                counts[candidate.status.value] = counts.get(candidate.status.value, 0) + 1
                if candidate.status == S.planned:
                    issued.append((candidate, delivery_id))
            _issue_offers(conn, [(c, d) for c, d in issued if c.offer is not None], now)
            _announce(conn, [(c, d) for c, d in issued if c.products])
    return counts


def _insert_deliveries(conn: Connection, rows: list[Candidate],
                       now: datetime) -> dict[tuple[int, str], int]:
    values = [{"campaign_id": c.campaign_id, "customer_id": c.customer_id,
               "occasion": c.occasion, "status": c.status.value, "priority": c.priority,
               "payload": json.dumps(c.payload, sort_keys=True), "planned_at": now,
               "next_attempt_at": c.not_before or now, "reason": c.reason,
               "transactional": c.transactional, "checkout_id": c.checkout_id} for c in rows]
    # Many rows in one statement (db.insert_many), with RETURNING; the conflict clause is what
    # makes a duplicate occasion impossible. The one exception: a delivery deferred by the
    # frequency cap is planned again, in place.
    insert, parameters = db.insert_many(conn, DELIVERIES, values)
    statement = (insert.on_conflict_do_update(
        index_elements=["campaign_id", "customer_id", "occasion"],
        set_={"status": insert.excluded.status, "payload": insert.excluded.payload,
              "planned_at": insert.excluded.planned_at, "reason": insert.excluded.reason,
              "next_attempt_at": insert.excluded.next_attempt_at},
        where=DELIVERIES.c.status == S.deferred.value)
        .returning(DELIVERIES.c.id, DELIVERIES.c.customer_id, DELIVERIES.c.occasion))
    return {(r.customer_id, r.occasion): r.id for r in conn.execute(statement, parameters)}


def _issue_offers(conn: Connection, issued: list[tuple[Candidate, int]], now: datetime) -> None:
    """One coupon row per delivery with an offer, each with a fresh unguessable code."""
    if not issued:
        return
    rows = []
    prefixes = {delivery_id: candidate.offer.prefix for candidate, delivery_id in issued}
    for candidate, delivery_id in issued:
        offer = candidate.offer
        rows.append({
            "code": offers.new_code(offer.prefix), "kind": OfferKind(offer.kind).value,
            "campaign_id": candidate.campaign_id, "customer_id": candidate.customer_id,
            "delivery_id": delivery_id, "percent_off": offer.percent_off,
            "amount_off_cents": offer.amount_off_cents, "min_spend_cents": offer.min_spend_cents,
            "gift_sku": offer.gift_sku, "gift_card_cents": offer.gift_card_cents,
            "bundle_id": offer.bundle_id, "bundle_price_cents": offer.bundle_price_cents,
            "period": offer.period, "issued_at": now, "expires_at": offer.expires_at(now)})
    # 80+ random bits make a clash practically impossible; the UNIQUE index on the code makes
    # it impossible, and the rare clash draws new codes for the rows that lost.
    for _ in range(5):
        insert, parameters = db.insert_many(conn, COUPONS, rows)
        written = set(conn.execute(
            insert.on_conflict_do_nothing(index_elements=["code"])
            .returning(COUPONS.c.delivery_id), parameters).scalars())
        rows = [dict(r, code=offers.new_code(prefixes[r["delivery_id"]]))
                for r in rows if r["delivery_id"] not in written]
        if not rows:
            return
    raise RuntimeError("could not draw unique coupon codes; is the coupons table corrupt?")


def _announce(conn: Connection, announced: list[tuple[Candidate, int]]) -> None:
    """Remember which products each digest announced: a product is announced once."""
    if not announced:
        return
    skus = sorted({s for c, _ in announced for s in c.products})
    ids = dict(conn.execute(select(PRODUCTS.c.sku, PRODUCTS.c.id).where(PRODUCTS.c.sku.in_(skus))
                            ).all())
    values = [{"customer_id": c.customer_id, "product_id": ids[s], "delivery_id": d}
              for c, d in announced for s in c.products if s in ids]
    if values:
        insert, parameters = db.insert_many(conn, ANNOUNCED, values)
        conn.execute(insert.on_conflict_do_nothing(), parameters)


def recover(engine: Engine, now: datetime, stale_after: timedelta = timedelta(minutes=10),
            current_run: str | None = None) -> int:
    """Mark ``sending`` rows of dead runs ``unknown``; returns how many. The rows a dead worker
    leased and never claimed go back to the pool at once, not when their lease lapses."""
    leased = and_(DELIVERIES.c.status.in_(SENDABLE), DELIVERIES.c.lease_until > now)
    with engine.begin() as conn:
        claimants = conn.execute(select(DELIVERIES.c.claimed_by).distinct().where(
            or_(DELIVERIES.c.status == S.sending.value, leased))).scalars().all()
        dead = []
        for run_id in claimants:
            if run_id == current_run:
                continue
            row = conn.execute(select(RUNS).where(RUNS.c.id == run_id)).first()
            if row is None or not runs.alive(row, now, stale_after):
                dead.append(run_id)
        if not dead:
            return 0
        conn.execute(update(DELIVERIES).where(leased, DELIVERIES.c.claimed_by.in_(dead))
                     .values(lease_until=None))
        result = conn.execute(update(DELIVERIES).where(
            DELIVERIES.c.status == S.sending.value,
            or_(DELIVERIES.c.claimed_by.in_([d for d in dead if d]),
                DELIVERIES.c.claimed_by.is_(None)))
            .values(status=S.unknown.value,
                    reason="the sending process stopped after handing the message over; "
                           "the server may have it"))
        return result.rowcount


# --- sending -------------------------------------------------------------------------------

def _due(campaign_ids: list[str], now: datetime, *columns):
    # A failed row whose retries are used up has no next attempt (NULL) and is never due; a
    # row a live worker has leased is that worker's until its lease lapses.
    query = select(*columns).where(DELIVERIES.c.status.in_(SENDABLE),
                                   DELIVERIES.c.next_attempt_at <= now,
                                   or_(DELIVERIES.c.lease_until.is_(None),
                                       DELIVERIES.c.lease_until <= now))
    if campaign_ids:
        query = query.where(DELIVERIES.c.campaign_id.in_(campaign_ids))
    return query


def hold_for_quiet_hours(engine: Engine, settings: Settings, campaign_ids: list[str],
                         now: datetime) -> int:
    """Move due mail whose customer is in quiet hours right now to the end of those hours.

    The plan already times mail around quiet hours; this catches what falls due later (a retry,
    a run that starts late). Returns how many deliveries were held back.
    """
    if settings.quiet_hours is None:
        return 0
    customers = Customer.__table__
    zone_of_row = (select(customers.c.timezone)
                   .where(customers.c.id == DELIVERIES.c.customer_id).scalar_subquery())
    with engine.begin() as conn:
        zones = conn.execute(_due(campaign_ids, now, zone_of_row).distinct()).scalars().all()
        held = limits.quiet_zones(zones, settings.store.zone, settings.quiet_hours, now)
        moved = 0
        for zone, until in held.items():
            same_zone = zone_of_row.is_(None) if zone is None else zone_of_row == zone
            ids = _due(campaign_ids, now, DELIVERIES.c.id).where(same_zone)
            moved += conn.execute(update(DELIVERIES).where(DELIVERIES.c.id.in_(ids))
                                  .values(next_attempt_at=until)).rowcount
    return moved


def due(engine: Engine, campaign_ids: list[str], now: datetime, after_id: int = 0,
        limit: int = 500) -> list[int]:
    """Ids of deliveries ready to send (planned, or failed and due for a retry), by id."""
    query = (_due(campaign_ids, now, DELIVERIES.c.id).where(DELIVERIES.c.id > after_id)
             .order_by(DELIVERIES.c.id).limit(limit))
    with engine.connect() as conn:
        return list(conn.execute(query).scalars())


def lease(engine: Engine, holder: str, campaign_ids: list[str], now: datetime,
          until: datetime, limit: int) -> list[int]:
    """Lease up to ``limit`` due deliveries to the worker ``holder`` until ``until``; their
    ids, in id order. Nothing changes state: a leased row stays ``planned`` (or ``failed``) and
    is claimed one at a time by ``outbox.Outbox.step``, as in a run.

    On PostgreSQL, ``FOR UPDATE SKIP LOCKED``: workers leasing at once each take other rows and
    none waits for another's transaction. SQLite has one writer at a time and ignores it.
    """
    chosen = (_due(campaign_ids, now, DELIVERIES.c.id).order_by(DELIVERIES.c.id).limit(limit)
              .with_for_update(skip_locked=True))
    with engine.begin() as conn:
        return sorted(conn.execute(update(DELIVERIES).where(DELIVERIES.c.id.in_(chosen))
                                   .values(claimed_by=holder, lease_until=until)
                                   .returning(DELIVERIES.c.id)).scalars())


def renew(engine: Engine, holder: str, until: datetime) -> int:
    """Extend the leases ``holder`` still holds (rows it has not claimed yet) to ``until``."""
    return _leased_by(engine, holder, until)


def unlease(engine: Engine, holder: str) -> int:
    """Give back at once the rows ``holder`` leased and did not claim (a worker stopping)."""
    return _leased_by(engine, holder, None)


def _leased_by(engine: Engine, holder: str, until: datetime | None) -> int:
    # The rows are locked in a subquery that skips those being claimed at this moment: an
    # UPDATE of many rows otherwise locks them in scan order and can deadlock with a claim
    # (which records one row and claims another in one transaction). A row being claimed
    # needs no lease any more.
    held = (select(DELIVERIES.c.id).where(
        DELIVERIES.c.claimed_by == holder, DELIVERIES.c.status.in_(SENDABLE),
        DELIVERIES.c.lease_until.is_not(None)).with_for_update(skip_locked=True))
    with engine.begin() as conn:
        return conn.execute(update(DELIVERIES).where(DELIVERIES.c.id.in_(held))
                            .values(lease_until=until)).rowcount


def due_count(engine: Engine, campaign_ids: list[str], now: datetime) -> int:
    with engine.connect() as conn:
        return conn.execute(_due(campaign_ids, now, func.count())).scalar_one()


BOUNCEABLE = (S.sent.value, S.unknown.value, S.sending.value, S.failed.value)


_FAIL_FOR_GOOD = text(
    "UPDATE deliveries SET status = 'failed', reason = :reason, next_attempt_at = NULL, "
    "attempts = attempts + 1 WHERE id = :id AND status IN ('planned', 'failed') RETURNING id")


def fail_for_good(engine: Engine, failures: Iterable[tuple[int, str]]) -> list[int]:
    """Deliveries (id, reason) that can never be sent as they are: ``failed`` with the reason
    and no next attempt (a failed row without one is never due). Rows another run has taken
    meanwhile are left alone. Returns the ids recorded."""
    with engine.begin() as conn:
        return [row_id for delivery_id, reason in failures for row_id in conn.execute(
            _FAIL_FOR_GOOD, {"id": delivery_id, "reason": reason}).scalars()]


def mark_bounced(conn: Connection, delivery_id: int, reason: str) -> int:
    """A bounce report arrived for a delivery; held-out or suppressed rows are left alone."""
    return conn.execute(update(DELIVERIES).where(DELIVERIES.c.id == delivery_id,
                                                 DELIVERIES.c.status.in_(BOUNCEABLE))
                        .values(status=S.bounced.value, reason=reason)).rowcount


def next_retry(engine: Engine, campaign_ids: list[str], after: datetime) -> datetime | None:
    """The earliest moment after ``after`` at which a delivery of these campaigns falls due (a
    retry, mail held back by a back-off or by quiet hours), if any does; it may be past."""
    with engine.connect() as conn:
        return conn.execute(select(func.min(DELIVERIES.c.next_attempt_at)).where(
            DELIVERIES.c.status.in_(SENDABLE), DELIVERIES.c.next_attempt_at > after,
            DELIVERIES.c.campaign_id.in_(campaign_ids))).scalar()


def release(engine: Engine, run_id: str) -> int:
    """Give back rows this run holds in ``sending`` without a Message-ID: never handed to the
    server. (``outbox.Outbox.step`` claims with the Message-ID, and runner.run returns with none of
    its rows left in ``sending``: for its runs this finds nothing, safely.)"""
    with engine.begin() as conn:
        return conn.execute(update(DELIVERIES).where(
            DELIVERIES.c.claimed_by == run_id, DELIVERIES.c.status == S.sending.value,
            DELIVERIES.c.message_id.is_(None))
            .values(status=S.planned.value, attempts=DELIVERIES.c.attempts - 1)).rowcount


def retry_unknown(engine: Engine, campaign_ids: list[str], now: datetime) -> int:
    """Put ``unknown`` deliveries back to ``planned``: an explicit decision to resend."""
    condition = [DELIVERIES.c.status == S.unknown.value]
    if campaign_ids:
        condition.append(DELIVERIES.c.campaign_id.in_(campaign_ids))
    with engine.begin() as conn:
        return conn.execute(update(DELIVERIES).where(and_(*condition)).values(
            status=S.planned.value, next_attempt_at=now,
            reason="resent on purpose after an unknown outcome")).rowcount


def counts(engine: Engine, campaign_ids: list[str] | None = None) -> dict[str, dict[str, int]]:
    """Per campaign, deliveries by status."""
    query = select(DELIVERIES.c.campaign_id, DELIVERIES.c.status, func.count()).group_by(
        DELIVERIES.c.campaign_id, DELIVERIES.c.status)
    if campaign_ids:
        query = query.where(DELIVERIES.c.campaign_id.in_(campaign_ids))
    found: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for campaign_id, status, n in conn.execute(query):
            found.setdefault(campaign_id, {})[str(status)] = n
    return found
