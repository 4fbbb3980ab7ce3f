"""The plan: a campaign's audience at ``now``, turned into would-be deliveries.

Owns the algorithm every kind shares, in the order it is applied: the audience (the segment
compiled to SQL plus the kind's own conditions, streamed in batches), the kind's proposal
(kinds.py: occasion, offer, products), consent, already-received and cooldown exclusions,
suppression, the deterministic holdout split, the frequency cap, the budget, and quiet hours.
Per-batch lookups are one query each, so memory stays flat as the audience grows. Reads only:
``ledger.py`` writes what the plan decides. Must not send.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, select

from engine.campaigns import kinds, limits, offers
from engine.campaigns import models as cm
from engine.config import Settings
from engine.shop import metrics
from engine.tables import Customer, CustomerMetrics, Delivery, DeliveryStatus, Suppression

BATCH = 2000
CUSTOMERS, METRICS = Customer.__table__, CustomerMetrics.__table__
DELIVERIES, SUPPRESSIONS = Delivery.__table__, Suppression.__table__


class Skip(StrEnum):
    """Why a customer in the segment gets nothing from this run (not written to the ledger)."""
    no_consent = "no_consent"              # did not agree to marketing email
    already_received = "already_received"  # this occasion is in the ledger already
    cooldown = "cooldown"                  # got this campaign (or bundle) too recently
    nothing_to_offer = "nothing_to_offer"  # e.g. no new product in their categories
    over_budget = "over_budget"            # the run's offer budget is spent


@dataclass(frozen=True)
class Candidate:
    """One customer's outcome in the plan: a delivery to write, or the reason there is none."""
    campaign_id: str
    customer_id: int
    occasion: str | None = None
    status: DeliveryStatus | None = None   # planned, held_out or suppressed; None when skipped
    skip: Skip | None = None
    offer: offers.OfferSpec | None = None
    products: tuple[str, ...] = ()         # skus shown in the email
    nudge: dict | None = None
    priority: int = 0
    reason: str | None = None              # why deferred or capped
    not_before: datetime | None = None     # quiet hours: the first moment it may be sent

    @property
    def payload(self) -> dict[str, Any]:
        return {"products": list(self.products), "offer": self.offer.as_dict() if self.offer
                else None, "nudge": self.nudge}


@dataclass
class PlanStats:
    segment: int = 0
    recipients: int = 0
    held_out: int = 0
    suppressed: int = 0
    deferred: int = 0
    capped: int = 0
    skipped: Counter = field(default_factory=Counter)
    offers: int = 0
    offer_value_cents: int = 0

    def add(self, candidate: Candidate) -> None:
        self.segment += 1
        if candidate.skip:
            self.skipped[candidate.skip.value] += 1
        elif candidate.status == DeliveryStatus.held_out:
            self.held_out += 1
        elif candidate.status == DeliveryStatus.suppressed:
            self.suppressed += 1
        elif candidate.status == DeliveryStatus.deferred:
            self.deferred += 1
        elif candidate.status == DeliveryStatus.capped:
            self.capped += 1
        else:
            self.recipients += 1
            if candidate.offer:
                self.offers += 1
                self.offer_value_cents += candidate.offer.face_value_cents


def in_holdout(campaign_id: str, customer_id: int, fraction: float) -> bool:
    """Deterministic per (campaign, customer): the same customer stays in the same group."""
    if fraction <= 0:
        return False
    digest = hashlib.sha256(f"{campaign_id}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def plan(engine: Engine, settings: Settings, campaign: cm.Campaign, now: datetime,
         stats: PlanStats | None = None, only_customer: int | None = None,
         use_segment: bool = True, caps: limits.Caps | None = None
         ) -> Iterator[list[Candidate]]:
    """Batches of candidates for ``campaign`` at ``now``, in customer id order.

    ``only_customer`` plans for one customer (previews, ``retain why``); ``use_segment=False``
    ignores the segment so a preview can show what someone outside it would get. ``caps`` is
    shared by the campaigns of one run, planned in priority order.
    """
    metrics.refresh(engine, settings, now)
    stats = stats if stats is not None else PlanStats()
    caps = caps if caps is not None else limits.Caps(engine, settings, now, in_memory=True)
    quiet = _Quiet(settings, now)
    kind = kinds.for_campaign(engine, settings, campaign, now)
    budget = _Budget(campaign)
    where = kind.extra_where()
    if only_customer is not None:
        where.append(CUSTOMERS.c.id == only_customer)
    segment = campaign.segment if use_segment else None
    for rows in _audience(engine, segment, now, kind.extra_columns(), where):
        ids = [row.id for row in rows]
        history = _history(engine, campaign, ids)
        kind.prepare(ids)
        caps.prepare(ids)
        batch = []
        for row in rows:
            candidate = _decide(campaign, row, kind, history, now, budget, caps, quiet)
            stats.add(candidate)
            batch.append(candidate)
        yield batch


class _Quiet:
    """The first moment each customer may be emailed, outside quiet hours in their zone."""

    def __init__(self, settings: Settings, now: datetime):
        self.quiet, self.store_zone, self.now = settings.quiet_hours, settings.store.zone, now

    def not_before(self, customer_zone: str | None) -> datetime | None:
        if self.quiet is None:
            return None
        allowed = limits.next_allowed(self.now, limits.zone_of(customer_zone, self.store_zone),
                                      self.quiet)
        return allowed if allowed > self.now else None


def _decide(campaign: cm.Campaign, row: Any, kind: kinds.KindRules, history: dict,
            now: datetime, budget: _Budget, caps: limits.Caps, quiet: _Quiet) -> Candidate:
    base = dict(campaign_id=campaign.id, customer_id=row.id, priority=campaign.priority)
    proposal = kind.propose(row)
    if proposal is None:
        skip = Skip.no_consent if not row.accepts_marketing else Skip.nothing_to_offer
        return Candidate(**base, skip=skip)
    occasion, offer, products, nudge = proposal
    if not row.accepts_marketing:
        # Kept with its offer so a preview can still show what they would have got.
        return Candidate(**base, occasion=occasion, products=products, nudge=nudge,
                         offer=offer, skip=Skip.no_consent)
    past = history.get(row.id, {})
    # Skipped candidates keep what they would have got: previews and `retain why` show it.
    shown = dict(occasion=occasion, products=products, nudge=nudge, offer=offer)
    if occasion in past:
        return Candidate(**base, **shown, skip=Skip.already_received)
    if kind.cooling_down(past, occasion, now):
        return Candidate(**base, **shown, skip=Skip.cooldown)
    base.update(occasion=occasion, products=products, nudge=nudge)
    if row.suppressed:
        return Candidate(**base, status=DeliveryStatus.suppressed)
    if in_holdout(campaign.id, row.id, campaign.holdout):
        return Candidate(**base, status=DeliveryStatus.held_out)
    if caps.active and caps.used(row.id) >= caps.cap.count:
        status = DeliveryStatus.deferred if campaign.on_cap == "defer" else DeliveryStatus.capped
        return Candidate(**base, status=status, reason=caps.reason(row.id))
    if offer is not None and not budget.take(offer):
        return Candidate(**base, skip=Skip.over_budget)
    caps.take(row.id)
    return Candidate(**base, status=DeliveryStatus.planned, offer=offer,
                     not_before=quiet.not_before(row.timezone))


class _Budget:
    def __init__(self, campaign: cm.Campaign):
        self.max_offers = campaign.budget.max_offers
        self.max_value = offers.cents(campaign.budget.max_value) \
            if campaign.budget.max_value is not None else None
        self.count = 0
        self.value = 0

    def take(self, offer: offers.OfferSpec) -> bool:
        if self.max_offers is not None and self.count + 1 > self.max_offers:
            return False
        if self.max_value is not None and self.value + offer.face_value_cents > self.max_value:
            return False
        self.count += 1
        self.value += offer.face_value_cents
        return True


def _audience(engine: Engine, segment: Any, now: datetime, extra_columns: list,
              extra_where: list) -> Iterator[list[Any]]:
    """The segment's customers with what the planner needs, in batches, by customer id."""
    columns = [CUSTOMERS.c.id, CUSTOMERS.c.accepts_marketing, CUSTOMERS.c.timezone,
               METRICS.c.dormancy,
               METRICS.c.last_order_at, METRICS.c.avg_order_value_cents,
               SUPPRESSIONS.c.email_key.is_not(None).label("suppressed"), *extra_columns]
    query = (select(*columns)
             .select_from(CUSTOMERS.join(METRICS, METRICS.c.customer_id == CUSTOMERS.c.id)
                          .outerjoin(SUPPRESSIONS,
                                     SUPPRESSIONS.c.email_key == CUSTOMERS.c.email_key)))
    if segment is not None:
        query = query.where(segment.where(now))
    for condition in extra_where:
        query = query.where(condition)
    # One query read in partitions (a server-side cursor on PostgreSQL): the segment's order
    # subqueries run once, however long the audience; memory holds one batch.
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=BATCH).execute(query.order_by(CUSTOMERS.c.id))
        yield from result.partitions()


def _history(engine: Engine, campaign: cm.Campaign, ids: list[int]) -> dict[int, dict]:
    """Per customer of the batch: occasion → when it was planned, for this campaign."""
    found: dict[int, dict] = {}
    with engine.connect() as conn:
        # A deferred delivery has not happened: it is planned again, so it is not history.
        rows = conn.execute(select(DELIVERIES.c.customer_id, DELIVERIES.c.occasion,
                                   DELIVERIES.c.planned_at)
                            .where(DELIVERIES.c.campaign_id == campaign.id,
                                   DELIVERIES.c.customer_id.in_(ids),
                                   DELIVERIES.c.status != DeliveryStatus.deferred.value))
        for customer_id, occasion, planned_at in rows:
            found.setdefault(customer_id, {})[occasion] = planned_at
    return found


def summarize(engine: Engine, settings: Settings, chosen: list[cm.Campaign], now: datetime,
              sample: int = 5) -> list[dict[str, Any]]:
    """``retain plan``: per campaign, who would get what, without writing anything."""
    result = []
    caps = limits.Caps(engine, settings, now, in_memory=True)
    for campaign in sorted(chosen, key=lambda c: -c.priority):
        stats = PlanStats()
        examples: list[dict[str, Any]] = []
        for batch in plan(engine, settings, campaign, now, stats, caps=caps):
            for c in batch:
                if c.status == DeliveryStatus.planned and len(examples) < sample:
                    examples.append({"customer": c.customer_id, "occasion": c.occasion,
                                     "products": list(c.products),
                                     "offer": c.offer.as_dict() if c.offer else None})
        budget = campaign.budget
        result.append({
            "id": campaign.id, "kind": campaign.kind, "enabled": campaign.enabled,
            "segment": campaign.segment.explain() if campaign.segment is not None
            else "all customers",
            "in_segment": stats.segment, "recipients": stats.recipients,
            "held_out": stats.held_out, "suppressed": stats.suppressed,
            "deferred": stats.deferred, "capped": stats.capped,
            "skipped": dict(sorted(stats.skipped.items())),
            "offers": stats.offers, "offer_value": offers.money(stats.offer_value_cents),
            "budget": {"max_offers": budget.max_offers,
                       "max_value": str(budget.max_value) if budget.max_value is not None
                       else None},
            "sample": examples,
            "warnings": offers.catalogue_warnings(engine, campaign),
        })
    return result
