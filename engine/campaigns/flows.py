"""What the flow kinds add to the plan: messages triggered by the shop's events.

Owns, per flow kind, the events of a batch of customers (one query each), the occasion that makes
"at most once" precise, each step's due moment, and the ``max_late`` rule: a step whose moment
passed more than ``max_late`` ago (the shop's data arrived late) is skipped with ``Skip.too_late``
instead of being sent out of time. A customer gets one message of a campaign per run (the
earliest due step not yet in the ledger; the next run, one scheduler tick later, takes the
next), except transactional mail, which sends every step due at once. Also owns ``COMPLETED``,
the one definition of a checkout that became an order, which the ledger's claim checks again at
send time. Reads only; must not write, render or send.

    post_purchase       occasion "order:<order id>:<step>"       each step once per order
    review_followup     occasion "review:<review id>"            once per review
    abandoned_checkout  occasion "checkout:<checkout id>:<after>" each step once per checkout
    vip                 occasion "early:<sorted skus>" / "anniversary:<year>"
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, not_, or_, select

from engine import db
from engine.campaigns import kinds, offers
from engine.campaigns import models as cm
from engine.controlchars import one_line
from engine.shop.counted import counted
from engine.tables import Checkout, Fulfillment, OrderItem, Review, Skip

FULFILLMENTS, REVIEWS, CHECKOUTS = Fulfillment.__table__, Review.__table__, Checkout.__table__
ORDERS, METRICS, ITEMS = kinds.ORDERS, kinds.METRICS, OrderItem.__table__
# A checkout that became an order: planning leaves it out, and the claim rechecks it (as SQL
# text, the ledger's claim being a prebuilt statement).
IS_COMPLETED = or_(CHECKOUTS.c.completed_at.is_not(None), CHECKOUTS.c.order_id.is_not(None))
COMPLETED = f"({IS_COMPLETED.compile()})"
# Products a flow's email shows (the order's, the review's) are in ``flow["skus"]``, not in
# the proposal's products: those are announcements (new_product, vip early access).
ORDER_WINDOW = timedelta(days=60)  # how long after an order its fulfillment may still come
REVIEW_EXCERPT = 280
LATE_SHOWN = timedelta(days=7)


@dataclass(frozen=True)
class Event:
    """One step of a flow for one customer: its occasion, when it is due, what it shows."""
    occasion: str
    due: datetime
    step: str
    flow: dict = field(default_factory=dict)
    products: tuple[str, ...] = ()
    offer: offers.OfferSpec | None = None
    checkout_id: int | None = None


class FlowRules(kinds.KindRules):
    """The variant steps: ``window`` (the customers with recent events, in SQL) and
    ``events`` (per batch); choosing the step and the lateness rule are shared."""

    def prepare(self, ids):
        self.found: dict[int, list[Event]] = {}
        for customer_id, event in self.events(ids):
            self.found.setdefault(customer_id, []).append(event)

    def events(self, ids: list[int]):
        raise NotImplementedError

    def proposals(self, row, past):
        # Transactional mail (two orders shipped in one tick) goes out at once; marketing mail
        # is one message of a campaign per customer a run, under the frequency cap.
        if not self.campaign.transactional:
            return [self.propose_for(row, past)]
        found, seen = [], dict(past)
        while (proposal := self.propose_for(row, seen)) is not None and \
                proposal.skip is None and proposal.occasion not in seen:
            found.append(proposal)
            seen[proposal.occasion] = self.now
        return found or [proposal]

    def propose_for(self, row: Any, past: dict[str, datetime]) -> kinds.Proposal | None:
        late = received = None
        for event in sorted(self.found.get(row.id, ()), key=lambda e: (e.due, e.occasion)):
            if event.due > self.now:
                continue
            proposal = kinds.Proposal(
                event.occasion, event.offer, event.products,
                flow={"step": event.step, **event.flow}, checkout_id=event.checkout_id)
            if event.occasion in past:
                received = proposal  # the planner says "already received" if nothing else
                continue
            if self.now - event.due > self.campaign.max_late:
                late = late or proposal
                continue
            return proposal
        if late is not None:
            return kinds.Proposal(late.occasion, products=late.products, flow=late.flow,
                                  skip=Skip.too_late)
        return received


class _PostPurchase(FlowRules):
    def __init__(self, *args):
        super().__init__(*args)
        longest = max(s.after for s in self.campaign.steps)
        self.since = self.now - ORDER_WINDOW - longest - self.campaign.max_late
        # Without an `on: ordered` step only shipped orders make events: the audience is then
        # the customers with a recent shipment, not every recent buyer (at 1 M customers the
        # latter read the items of a million orders to find nothing to send).
        self.shipped_only = all(step.on != "ordered" for step in self.campaign.steps)

    def extra_where(self):
        recent = select(ORDERS.c.customer_id).where(ORDERS.c.created_at >= self.since,
                                                    counted(self.now))
        if self.shipped_only:  # shipped after it was placed, so since `since` too
            recent = recent.where(ORDERS.c.id.in_(select(FULFILLMENTS.c.order_id).where(
                FULFILLMENTS.c.shipped_at >= self.since, FULFILLMENTS.c.shipped_at <= self.now)))
        return [kinds.CUSTOMERS.c.id.in_(recent)]

    def events(self, ids):
        shipments: dict[int, list] = {}
        items: dict[int, list[str]] = {}
        with self.engine.connect() as conn:
            orders = conn.execute(select(ORDERS).where(
                db.among(conn, ORDERS.c.customer_id, ids), ORDERS.c.created_at >= self.since,
                counted(self.now))).all()
            for f in conn.execute(select(FULFILLMENTS).where(
                    db.among(conn, FULFILLMENTS.c.order_id, [o.id for o in orders]),
                    FULFILLMENTS.c.shipped_at <= self.now)
                    .order_by(FULFILLMENTS.c.shipped_at, FULFILLMENTS.c.id)):
                shipments.setdefault(f.order_id, []).append(f)
            if self.shipped_only:
                orders = [o for o in orders if o.id in shipments]
            for order_id, sku in conn.execute(select(ITEMS.c.order_id, ITEMS.c.sku).where(
                    db.among(conn, ITEMS.c.order_id, [o.id for o in orders]))
                    .order_by(ITEMS.c.id)):
                items.setdefault(order_id, []).append(sku)
        for order in orders:
            sent = shipments.get(order.id, [])
            first = sent[0] if sent else None
            delivered = [f.delivered_at for f in sent if f.delivered_at is not None
                         and f.delivered_at <= self.now]
            moments = {"ordered": order.created_at, "shipped": first and first.shipped_at,
                       "delivered": max(delivered) if len(delivered) == len(sent) and sent
                       else None}
            flow = {"order": {"number": order.external_id, "placed_on": _day(order.created_at,
                                                                              self.zone),
                              "total_cents": order.total_cents},
                    "shipment": _shipment(first, moments["delivered"], self.zone)}
            for step in self.campaign.steps:
                if moments[step.on] is None:
                    continue
                yield order.customer_id, Event(
                    f"order:{order.id}:{step.name}", moments[step.on] + step.after, step.name,
                    {**flow, "skus": list(dict.fromkeys(items.get(order.id, ())))[:4]})


def _shipment(first: Any, delivered_at: datetime | None, zone) -> dict | None:
    if first is None:
        return None
    return {"carrier": one_line(first.carrier), "tracking_number": one_line(first.tracking_number),
            "tracking_url": first.tracking_url or None, "shipped_on": _day(first.shipped_at, zone),
            "delivered_on": _day(delivered_at, zone) if delivered_at else None}


class _ReviewFollowup(FlowRules):
    def __init__(self, *args):
        super().__init__(*args)
        # A week past max_late, a review is still found: `retain why` can say it came too late.
        self.since = self.now - self.campaign.max_late - LATE_SHOWN

    def extra_where(self):
        return [kinds.CUSTOMERS.c.id.in_(select(REVIEWS.c.customer_id).where(
            REVIEWS.c.created_at >= self.since, REVIEWS.c.created_at <= self.now))]

    def events(self, ids):
        c = self.campaign
        with self.engine.connect() as conn:
            reviews = conn.execute(select(REVIEWS).where(
                db.among(conn, REVIEWS.c.customer_id, ids), REVIEWS.c.created_at >= self.since,
                REVIEWS.c.created_at <= self.now)).all()
        for r in reviews:
            if not c.when.rating.matches(r.rating):
                continue
            flow = {"review": {"rating": r.rating, "sku": r.sku, "created_on": _day(
                r.created_at, self.zone), "excerpt": _excerpt(r.body)}}
            yield r.customer_id, Event(f"review:{r.id}", r.created_at, "review",
                                       {**flow, "skus": [r.sku]})

    def propose_for(self, row, past):
        proposal = super().propose_for(row, past)
        if proposal is None or proposal.skip is not None or self.campaign.coupon is None:
            return proposal
        offer = offers.coupon_offer(self.campaign.coupon, row.avg_order_value_cents or 0)
        return kinds.Proposal(proposal.occasion, offer, proposal.products, flow=proposal.flow)


def _excerpt(body: str) -> str:
    body = one_line(body or "")
    return body if len(body) <= REVIEW_EXCERPT else body[:REVIEW_EXCERPT - 1].rstrip() + "…"


class _AbandonedCheckout(FlowRules):
    def __init__(self, *args):
        super().__init__(*args)
        self.since = self.now - self.campaign.steps[-1].after - self.campaign.max_late

    def _open(self):
        return and_(CHECKOUTS.c.created_at >= self.since, CHECKOUTS.c.created_at <= self.now,
                    not_(IS_COMPLETED))

    def extra_where(self):
        return [kinds.CUSTOMERS.c.id.in_(select(CHECKOUTS.c.customer_id).where(self._open()))]

    def events(self, ids):
        with self.engine.connect() as conn:
            found = conn.execute(select(CHECKOUTS).where(
                db.among(conn, CHECKOUTS.c.customer_id, ids), self._open())).all()
        for k in found:
            lines = json.loads(k.items or "[]")
            flow = {"checkout": {"url": k.url or None, "total_cents": k.total_cents,
                                 "started_on": _day(k.created_at, self.zone),
                                 "items": [[str(s), int(q), int(p)] for s, q, p in lines]},
                    "skus": list(dict.fromkeys(str(line[0]) for line in lines))[:4]}
            for step in self.campaign.steps:
                name = cm.duration_text(step.after)
                offer = offers.coupon_offer(step.coupon, k.total_cents) if step.coupon else None
                yield k.customer_id, Event(f"checkout:{k.id}:{name}", k.created_at + step.after,
                                           name, flow, (), offer, k.id)


class _Vip(FlowRules):
    def __init__(self, *args):
        super().__init__(*args)
        target = self.campaign.early_target
        self.early = kinds.for_campaign(self.engine, self.settings, target, self.now) \
            if target is not None else None

    def extra_columns(self):
        return [METRICS.c.first_order_at]

    def prepare(self, ids):
        super().prepare(ids)
        if self.early is not None:
            self.early.prepare(ids)

    def events(self, ids):
        return ()

    def propose_for(self, row, past):
        if self.early is not None:
            digest = self.early.propose(row)
            if digest is not None and "early:" + digest.occasion.removeprefix("products:") \
                    not in past:
                return kinds.Proposal("early:" + digest.occasion.removeprefix("products:"),
                                      products=digest.products,
                                      flow={"step": "early_access", "vip": {
                                          "occasion": "early_access",
                                          "early_access_days": self.campaign.early_access.days,
                                          "years": None, "first_order_on": None}})
        if not self.campaign.anniversary or row.first_order_at is None:
            return None
        first = row.first_order_at.astimezone(self.zone).date()
        today = cm.local_today(self.now, self.zone)
        day = _same_day(first, today.year)
        if day > today:
            day = _same_day(first, today.year - 1)
        years = day.year - first.year
        if years < 1:
            return None
        self.found = {row.id: [Event(
            f"anniversary:{day.year}", datetime.combine(day, time.min, tzinfo=self.zone),
            "anniversary", {"vip": {"occasion": "anniversary", "years": years,
                                    "first_order_on": first.isoformat(),
                                    "early_access_days": None}})]}
        return super().propose_for(row, past)


def _same_day(first: date, year: int) -> date:
    """The anniversary of ``first`` in ``year``; a 29 February falls on the 28th otherwise."""
    try:
        return first.replace(year=year)
    except ValueError:
        return first.replace(year=year, day=28)


def _day(moment: datetime, zone) -> str:
    return moment.astimezone(zone).date().isoformat()


RULES: dict[str, type[kinds.KindRules]] = {
    "post_purchase": _PostPurchase,
    "review_followup": _ReviewFollowup,
    "abandoned_checkout": _AbandonedCheckout,
    "vip": _Vip,
}
