"""The plan: a campaign's audience at ``now``, turned into would-be deliveries.

Owns: the occasion key of each kind (what "at most once" means), consent, suppression,
already-received and cooldown exclusions, the deterministic holdout split and the budget. The
audience comes from the segment compiled to SQL and is streamed in batches of customer ids; the
per-batch lookups (ledger, categories bought, skus owned) are one query each, so memory stays flat
as the audience grows. Reads only: ``ledger.py`` writes what the plan decides. Must not send.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, and_, func, select

from . import campaigns as cm
from . import limits, metrics, offers
from .config import Settings
from .tables import (
    Customer,
    CustomerMetrics,
    Delivery,
    DeliveryStatus,
    Order,
    OrderItem,
    OrderStatus,
    Product,
    ProductAnnouncement,
    Suppression,
)

BATCH = 2000
CUSTOMERS, METRICS = Customer.__table__, CustomerMetrics.__table__
ORDERS, ITEMS, PRODUCTS = Order.__table__, OrderItem.__table__, Product.__table__
DELIVERIES, SUPPRESSIONS = Delivery.__table__, Suppression.__table__
ANNOUNCED = ProductAnnouncement.__table__


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
    kind = _KIND_PLANNERS[campaign.kind](engine, settings, campaign, now)
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


def _decide(campaign: cm.Campaign, row: Any, kind: _KindPlanner, history: dict,
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


class _KindPlanner:
    """The steps one kind fills in: its extra audience conditions and its per-customer offer."""

    def __init__(self, engine: Engine, settings: Settings, campaign: Any, now: datetime):
        self.engine, self.settings, self.campaign, self.now = engine, settings, campaign, now
        self.zone = settings.store.zone

    def extra_columns(self) -> list:
        return []

    def extra_where(self) -> list:
        return []

    def prepare(self, ids: list[int]) -> None:
        """Per-batch lookups, one query each."""

    def propose(self, row: Any) -> tuple[str, offers.OfferSpec | None, tuple, dict | None] | None:
        raise NotImplementedError

    def cooling_down(self, past: dict[str, datetime], occasion: str, now: datetime) -> bool:
        days = self.campaign.cooldown_days
        return bool(days) and any(at > now - timedelta(days=days) for at in past.values())


def settings_currency(settings: Settings) -> str:
    return settings.store.currency


def _counted(now: datetime):
    return and_(ORDERS.c.status == OrderStatus.paid.value, ORDERS.c.created_at < now)


class _Winback(_KindPlanner):
    def extra_where(self) -> list:
        return [METRICS.c.dormancy.in_([s.tier for s in self.campaign.steps])]

    def propose(self, row):
        step = self.campaign.step_for(str(row.dormancy))
        if step is None or row.last_order_at is None:
            return None
        # The episode is named by the last order's date: a new order starts a new episode.
        episode = row.last_order_at.astimezone(self.zone).date().isoformat()
        offer = offers.coupon_offer(step.coupon, row.avg_order_value_cents or 0)
        return f"{step.tier}:{episode}", offer, (), None


class _NewProduct(_KindPlanner):
    def __init__(self, *args):
        super().__init__(*args)
        c = self.campaign
        self.products = offers.new_products(self.engine, self.now, c.lookback_days,
                                            c.include_price_drops, c.categories)

    def prepare(self, ids):
        self.bought: dict[int, set[str]] = {}
        self.categories: dict[int, set[str]] = {}
        self.announced: dict[int, set[int]] = {}
        if not self.products:
            return
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(ORDERS.c.customer_id, ITEMS.c.sku, PRODUCTS.c.category).distinct()
                .select_from(ORDERS.join(ITEMS, ITEMS.c.order_id == ORDERS.c.id)
                             .outerjoin(PRODUCTS, PRODUCTS.c.sku == ITEMS.c.sku))
                .where(ORDERS.c.customer_id.in_(ids), _counted(self.now)))
            for customer_id, sku, category in rows:
                self.bought.setdefault(customer_id, set()).add(sku)
                if category:
                    self.categories.setdefault(customer_id, set()).add(category)
            for customer_id, product_id in conn.execute(
                    select(ANNOUNCED.c.customer_id, ANNOUNCED.c.product_id)
                    .where(ANNOUNCED.c.customer_id.in_(ids))):
                self.announced.setdefault(customer_id, set()).add(product_id)

    def propose(self, row):
        liked = self.categories.get(row.id, set())
        owned = self.bought.get(row.id, set())
        seen = self.announced.get(row.id, set())
        chosen = [p for p in self.products
                  if p["id"] not in seen and p["sku"] not in owned
                  and (self.campaign.match == "all" or p["category"] in liked)]
        chosen = chosen[:self.campaign.max_products]
        if not chosen:
            return None
        skus = tuple(p["sku"] for p in chosen)
        return "products:" + ",".join(sorted(skus)), None, skus, None


class _SpendThreshold(_KindPlanner):
    def __init__(self, *args):
        super().__init__(*args)
        c = self.campaign
        today = cm.local_today(self.now, self.zone)
        if c.period == "month":
            start_day = today.replace(day=1)
            end_day = (start_day + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        elif c.period == "week":
            start_day = today - timedelta(days=today.weekday())
            end_day = start_day + timedelta(days=6)
        else:
            start_day = today - timedelta(days=c.period_days - 1)
            end_day = today
        self.period = cm.period_key(c, today)
        self.period_ends_on = end_day.isoformat()
        self.since = datetime.combine(start_day, datetime.min.time(), tzinfo=self.zone)
        threshold = offers.cents(c.threshold)
        self.threshold = threshold
        self.floor = threshold - offers.cents(c.nudge.within) if c.nudge else threshold
        gift_skus = {c.gift.product} if c.gift.product else set()
        self.catalogue = offers.catalogue(self.engine, gift_skus)
        spent = (select(ORDERS.c.customer_id, func.sum(ORDERS.c.total_cents).label("spent"))
                 .where(_counted(self.now), ORDERS.c.created_at >= self.since)
                 .group_by(ORDERS.c.customer_id).subquery("period_spend"))
        self.spent = spent
        self.gift_name = offers.gift_offer(c.gift, self.period, self.catalogue, 0,
                                           threshold, settings_currency(self.settings)).gift_name

    def extra_columns(self):
        return [self.spent.c.spent.label("period_spent")]

    def extra_where(self):
        # Joined through WHERE: only customers whose period spend is near or over the threshold.
        return [self.spent.c.customer_id == CUSTOMERS.c.id, self.spent.c.spent >= self.floor]

    def propose(self, row):
        spent = row.period_spent or 0
        if spent >= self.threshold:
            offer = offers.gift_offer(self.campaign.gift, self.period, self.catalogue,
                                      row.avg_order_value_cents or 0, self.threshold,
                                      settings_currency(self.settings))
            return f"gift:{self.period}", offer, (), None
        if self.campaign.nudge and spent >= self.floor:
            nudge = {"missing_cents": self.threshold - spent, "threshold_cents": self.threshold,
                     "spent_cents": spent, "period": self.period,
                     "period_ends_on": self.period_ends_on, "gift_name": self.gift_name}
            return f"nudge:{self.period}", None, (), nudge
        return None

    def cooling_down(self, past, occasion, now):
        if self.campaign.period != "days" or not occasion.startswith("gift:"):
            return super().cooling_down(past, occasion, now)
        # A rolling window: at most one gift per period_days, whatever the calendar says.
        window = now - timedelta(days=self.campaign.period_days)
        return any(o.startswith("gift:") and at > window for o, at in past.items())


class _Bundle(_KindPlanner):
    def __init__(self, *args):
        super().__init__(*args)
        self.deals = offers.resolve_bundles(self.engine, self.campaign.bundles,
                                            self.campaign.mine, self.now)
        self.skus = sorted({s for d in self.deals for s in d.skus})

    def prepare(self, ids):
        self.owned: dict[int, set[str]] = {}
        if not self.skus:
            return
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(ORDERS.c.customer_id, ITEMS.c.sku).distinct()
                .select_from(ORDERS.join(ITEMS, ITEMS.c.order_id == ORDERS.c.id))
                .where(ORDERS.c.customer_id.in_(ids), ITEMS.c.sku.in_(self.skus),
                       _counted(self.now)))
            for customer_id, sku in rows:
                self.owned.setdefault(customer_id, set()).add(sku)

    def propose(self, row):
        owned = self.owned.get(row.id, set())
        today = cm.local_today(self.now, self.zone).isoformat()
        for deal in self.deals:
            offer = deal.offer_for(owned)
            if offer is not None:
                return f"{deal.id}:{today}", offer, offer.bundle_skus, None
        return None

    def cooling_down(self, past, occasion, now):
        # The cooldown is per bundle: another bundle may still be offered.
        bundle_id = occasion.split(":", 1)[0]
        window = now - timedelta(days=self.campaign.cooldown_days)
        return any(o.split(":", 1)[0] == bundle_id and at > window for o, at in past.items())


_KIND_PLANNERS: dict[str, type[_KindPlanner]] = {
    "winback": _Winback,
    "new_product": _NewProduct,
    "spend_threshold": _SpendThreshold,
    "bundle": _Bundle,
}


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
        })
    return result
