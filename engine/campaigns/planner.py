"""The plan: a campaign's audience at ``now``, turned into would-be deliveries.

Owns the algorithm every kind shares, in the order it is applied: the audience (the segment
compiled to SQL plus the kind's own conditions, streamed in batches), the kind's proposal
(kinds.py: occasion, offer, products), consent, a pause the customer asked for, an offer the
kind declines, already-received and cooldown exclusions,
suppression, the deterministic holdout split, the frequency cap (limits.py), the budget, and
quiet hours. Per-batch lookups are one query each, so memory stays flat as the audience grows.
What it decides is counted in ``counts.Counts``. Three entry points: ``plan`` (the audience),
``for_customer`` (one customer of the audience) and ``as_if_in_segment`` (one customer, in the
segment or not: what previews and ``retain why`` show). Reads only: ``ledger.py`` writes what
the plan decides. Must not send.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from engine import db, display, money
from engine.campaigns import kinds, limits, offers
from engine.campaigns import models as cm
from engine.campaigns.counts import Counts
from engine.config import Settings, Store
from engine.consent import preferences, suppressions
from engine.shop import metrics, segments
from engine.tables import Customer, CustomerMetrics, Delivery, DeliveryStatus, Skip, Suppression

BATCH = 2000
CUSTOMERS, METRICS = Customer.__table__, CustomerMetrics.__table__
DELIVERIES, SUPPRESSIONS = Delivery.__table__, Suppression.__table__


@dataclass(frozen=True)
class Candidate:
    """One customer's outcome in the plan: a delivery to write, or the reason there is none."""
    campaign_id: str
    customer_id: int
    occasion: str | None = None
    status: DeliveryStatus | None = None   # planned, held out, suppressed, deferred, capped
    skip: Skip | None = None               # why the customer gets nothing (not in the ledger)
    offer: offers.OfferSpec | None = None
    products: tuple[str, ...] = ()         # skus shown in the email
    nudge: dict | None = None
    priority: int = 0
    reason: str | None = None              # why deferred, capped or skipped
    not_before: datetime | None = None     # quiet hours: the first moment it may be sent
    flow: dict | None = None               # a flow's event (flows.py): what the email shows
    checkout_id: int | None = None         # abandoned checkout: rechecked at send time
    transactional: bool = False            # no consent needed, no cap, never an offer

    @property
    def payload(self) -> dict[str, Any]:
        payload = {"products": list(self.products), "offer": self.offer.as_dict() if self.offer
                   else None, "nudge": self.nudge}
        return payload | {"flow": self.flow} if self.flow is not None else payload

    def count_in(self, counts: Counts, first: bool = True) -> None:
        counts.eligible += first  # a customer's second occasion in one plan: same customer
        if self.skip is not None:
            counts.skip(self.skip)
            return
        counts.count(self.status)
        if self.status == DeliveryStatus.planned and self.offer is not None:
            counts.offers += 1
            counts.offer_value_cents += self.offer.face_value_cents


def in_holdout(campaign_id: str, customer_id: int, fraction: float) -> bool:
    """Deterministic per (campaign, customer): the same customer stays in the same group."""
    if fraction <= 0:
        return False
    digest = hashlib.sha256(f"{campaign_id}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def plan(engine: Engine, settings: Settings, campaign: cm.Campaign, now: datetime, *,
         counts: Counts | None = None, caps: limits.Caps | None = None
         ) -> Iterator[list[Candidate]]:
    """Batches of candidates for ``campaign``'s audience at ``now``, in customer id order.

    Each candidate is counted in ``counts``. ``caps`` is shared by the campaigns of one run,
    planned in priority order.
    """
    return _plan(engine, settings, campaign, now, campaign.segment, None, counts, caps)


def for_customer(engine: Engine, settings: Settings, campaign: cm.Campaign, now: datetime,
                 customer_id: int, *, caps: limits.Caps | None = None) -> Candidate | None:
    """The plan for one customer of the audience; None when they are not in it."""
    return _first(_plan(engine, settings, campaign, now, campaign.segment, customer_id, None,
                        caps))


def as_if_in_segment(engine: Engine, settings: Settings, campaign: cm.Campaign, now: datetime,
                     customer_id: int, *, caps: limits.Caps | None = None) -> Candidate | None:
    """The plan for one customer with the segment ignored, so a preview or ``retain why`` can
    show what someone outside it would get; None when the kind's own rules leave them out (not
    dormant, under the spend floor...)."""
    return _first(_plan(engine, settings, campaign, now, None, customer_id, None, caps))


def _first(batches: Generator[list[Candidate], None, None]) -> Candidate | None:
    """The one customer's candidate, if any; the audience query is closed at once."""
    with closing(batches):
        return next((candidate for batch in batches for candidate in batch), None)


def _plan(engine: Engine, settings: Settings, campaign: cm.Campaign, now: datetime,
          segment: Any, customer_id: int | None, counts: Counts | None,
          caps: limits.Caps | None) -> Generator[list[Candidate], None, None]:
    metrics.refresh(engine, settings, now)
    counts = counts if counts is not None else Counts(campaign.id)
    caps = caps if caps is not None else limits.Caps(engine, settings, now, in_memory=True)
    quiet = _Quiet(settings, now)
    kind = kinds.for_campaign(engine, settings, campaign, now)
    budget = _Budget(campaign)
    where = kind.extra_where()
    if customer_id is not None:
        where.append(CUSTOMERS.c.id == customer_id)
    for rows in audience(engine, segment, now, kind.extra_columns(), where):
        ids = [row.id for row in rows]
        history = _history(engine, campaign, ids)
        kind.prepare(ids)
        caps.prepare(ids)
        batch = []
        for row in rows:
            past = history.get(row.id, {})
            for n, proposal in enumerate(kind.proposals(row, past)):
                candidate = _decide(campaign, row, proposal, past, kind, now, budget, caps,
                                    quiet)
                candidate.count_in(counts, first=n == 0)
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


def _decide(campaign: cm.Campaign, row: Any, proposal: kinds.Proposal | None,
            past: dict[str, datetime], kind: kinds.KindRules, now: datetime, budget: _Budget,
            caps: limits.Caps, quiet: _Quiet) -> Candidate:
    transactional = campaign.transactional
    base = dict(campaign_id=campaign.id, customer_id=row.id, priority=campaign.priority)
    consent = row.accepts_marketing or transactional  # transactional mail needs no consent
    if proposal is None:
        skip = Skip.no_consent if not consent else Skip.nothing_to_offer
        return Candidate(**base, skip=skip)
    occasion, offer = proposal.occasion, proposal.offer
    # Skipped candidates keep what they would have got: previews and `retain why` show it.
    shown = dict(occasion=occasion, products=proposal.products, nudge=proposal.nudge,
                 flow=proposal.flow, checkout_id=proposal.checkout_id,
                 transactional=transactional)
    if not consent:
        return Candidate(**base, **shown, offer=offer, skip=Skip.no_consent)
    if row.paused_until is not None and not transactional:  # a pause is of marketing mail
        return Candidate(**base, **shown, offer=offer, skip=Skip.paused,
                         reason=f"paused all mail until {row.paused_until:%Y-%m-%d %H:%M} UTC")
    if proposal.skip is not None:
        return Candidate(**base, **shown, offer=offer, skip=proposal.skip, reason=proposal.note)
    if occasion in past:
        return Candidate(**base, **shown, offer=offer, skip=Skip.already_received)
    if kind.cooling_down(past, occasion, now):
        return Candidate(**base, **shown, offer=offer, skip=Skip.cooldown)
    base.update(shown)
    if suppressions.blocks(row.suppressed_for, transactional):
        return Candidate(**base, status=DeliveryStatus.suppressed)
    if in_holdout(campaign.id, row.id, campaign.holdout):
        return Candidate(**base, status=DeliveryStatus.held_out)
    if transactional:  # no frequency cap: a shipping notice is not a newsletter
        return Candidate(**base, status=DeliveryStatus.planned,
                         not_before=quiet.not_before(row.timezone))
    if caps.full(row.id):
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
        self.max_value = money.cents(campaign.budget.max_value) \
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


def audience(engine: Engine, segment: Any, now: datetime, extra_columns: Sequence = (),
             extra_where: Sequence = ()) -> Iterator[list[Any]]:
    """The segment's customers (everyone when ``segment`` is None) with what the planner needs,
    in batches of BATCH, by customer id. Metrics must be fresh (``metrics.refresh``).

    The connection is held until the iterator is exhausted or closed; the caller writes the
    ledger through its own connections meanwhile (SQLite's WAL allows that).
    """
    columns = [CUSTOMERS.c.id, CUSTOMERS.c.accepts_marketing, CUSTOMERS.c.timezone,
               METRICS.c.dormancy,
               METRICS.c.last_order_at, METRICS.c.avg_order_value_cents,
               SUPPRESSIONS.c.email_key.is_not(None).label("suppressed"),
               preferences.PAUSES.c.until.label("paused_until"),
               SUPPRESSIONS.c.reason.label("suppressed_for"), *extra_columns]
    query = (select(*columns)
             .select_from(CUSTOMERS.join(METRICS, METRICS.c.customer_id == CUSTOMERS.c.id)
                          .outerjoin(SUPPRESSIONS,
                                     SUPPRESSIONS.c.email_key == CUSTOMERS.c.email_key)
                          .outerjoin(preferences.PAUSES, preferences.active(now))))
    if segment is not None:
        query = query.where(segment.where(now))
    for condition in extra_where:
        query = query.where(condition)
    # One query read in partitions (a server-side cursor on PostgreSQL, SQLite's lazy cursor):
    # the segment's order subqueries run once, however long the audience; memory holds one
    # batch. (Paging with a fresh query per batch re-ran a category's buyer list every batch:
    # hundreds of times for a million customers.)
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
                                   db.among(conn, DELIVERIES.c.customer_id, ids),
                                   DELIVERIES.c.status != DeliveryStatus.deferred.value))
        for customer_id, occasion, planned_at in rows:
            found.setdefault(customer_id, {})[occasion] = planned_at
    return found


@dataclass(frozen=True)
class CampaignPlan:
    """``retain plan`` for one campaign: how many customers its segment matches (the number
    ``retain segment`` gives), how many of them the kind's own condition keeps (``rule``, in
    English; None when the kind adds none), its counts, a sample of who would get what, and
    the skus its file names that the catalogue does not have."""
    campaign: cm.Campaign
    counts: Counts
    sample: list[dict[str, Any]]
    warnings: list[str]
    in_segment: int = 0
    rule: str | None = None

    def segment(self) -> str:
        return self.campaign.segment.explain() if self.campaign.segment is not None \
            else "all customers"

    def offer_value(self) -> str:
        return money.decimal_text(self.counts.offer_value_cents)

    def sentence(self, store: Store) -> str:
        """What each number of the plan counts: "winback: 1,115 customers in the segment
        (who …); 653 eligible (dormant in a tier it has a step for: …); 0 recipients; …"."""
        c, budget = self.counts, self.campaign.budget
        parts = [f"{self.campaign.id}: {display.count(self.in_segment, 'customer')} in the "
                 f"segment ({self.segment().removeprefix('customers ')})"]
        if self.rule:
            parts.append(f"{c.eligible:,} eligible ({self.rule})")
        parts.append(display.count(c.planned, "recipient"))
        if c.skipped:
            parts.append("skipped: " + c.skipped_words())
        limits = [display.count(budget.max_offers, "offer")] if budget.max_offers else []
        if budget.max_value is not None:
            limits.append(str(store.money(money.cents(budget.max_value))))
        if limits:
            parts.append("budget " + " and ".join(limits))
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        c, budget = self.campaign, self.campaign.budget
        return {
            "id": c.id, "kind": c.kind, "enabled": c.enabled, "segment": self.segment(),
            "in_segment": self.in_segment, "eligible": self.counts.eligible,
            **self.counts.plan_dict(),
            "offers": self.counts.offers, "offer_value": self.offer_value(),
            "budget": {"max_offers": budget.max_offers,
                       "max_value": str(budget.max_value) if budget.max_value is not None
                       else None},
            "sample": self.sample, "warnings": self.warnings}


def summarize(engine: Engine, settings: Settings, chosen: list[cm.Campaign], now: datetime,
              sample: int = 5) -> list[CampaignPlan]:
    """``retain plan``: per campaign, who would get what, without writing anything."""
    result = []
    caps = limits.Caps(engine, settings, now, in_memory=True)
    for campaign in sorted(chosen, key=lambda c: -c.priority):
        counts = Counts(campaign.id)
        examples: list[dict[str, Any]] = []
        for batch in plan(engine, settings, campaign, now, counts=counts, caps=caps):
            for c in batch:
                if c.status == DeliveryStatus.planned and len(examples) < sample:
                    examples.append({"customer": c.customer_id, "occasion": c.occasion,
                                     "products": list(c.products),
                                     "offer": c.offer.as_dict() if c.offer else None})
        result.append(CampaignPlan(
            campaign, counts, examples, offers.catalogue_warnings(engine, campaign),
            segments.count(engine, campaign.segment, now),
            kinds.for_campaign(engine, settings, campaign, now).audience_rule()))
    return result
