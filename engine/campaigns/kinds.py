"""What each campaign kind adds to the plan: the variants of one algorithm (planner.py).

Owns, per kind: the extra audience conditions in SQL (winback: the dormancy tiers of its steps;
spend threshold: the period's counted spend near or over the threshold), the per-batch lookups
(categories bought, products owned — from ``customer_products``, beside the metrics — and
products announced: one query each), the occasion key
that makes "at most once" precise, the offer proposed for one customer (or, for an offer that
would not make sense, the ``Skip`` reason), and the kind's cooldown rule. Reads only; must not
write, render or send.

    new_product      occasion "products:<sorted skus>"   never a product announced before
    winback          occasion "<tier>:<last order date>"  each step once per dormancy episode
    spend_threshold  occasion "gift:<period>" / "nudge:<period>"   once per period
    bundle           occasion "<bundle id>:<date>"        each bundle once per cooldown

The flow kinds (post_purchase, review_followup, abandoned_checkout, vip) live in flows.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select

from engine import db, money
from engine.campaigns import models as cm
from engine.campaigns import offers
from engine.config import Settings
from engine.shop.counted import counted
from engine.tables import (
    Customer,
    CustomerMetrics,
    CustomerProduct,
    Order,
    Product,
    ProductAnnouncement,
    Skip,
)

CUSTOMERS, METRICS = Customer.__table__, CustomerMetrics.__table__
ORDERS, PRODUCTS = Order.__table__, Product.__table__
ANNOUNCED = ProductAnnouncement.__table__
BOUGHT = CustomerProduct.__table__  # each customer's skus, as of the metrics (metrics.py)


@dataclass(frozen=True)
class Proposal:
    """What a kind proposes for one customer, before the planner's shared exclusions."""
    occasion: str                            # names the "at most once": see the table above
    offer: offers.OfferSpec | None = None    # None: the email carries no offer
    products: tuple[str, ...] = ()           # skus shown in the email
    nudge: dict | None = None                # spend threshold: how far the customer is from it
    flow: dict | None = None                 # a flow's event: order, shipment, review, checkout
    checkout_id: int | None = None           # abandoned checkout: rechecked at send time
    skip: Skip | None = None                 # not made: a flow step too late, a senseless offer
    note: str | None = None                  # why it is skipped, in the marketer's words


class KindRules:
    """The steps one kind fills in: its extra audience conditions, per-batch lookups, the
    occasion and offer it proposes for a customer, and what its cooldown means."""

    def __init__(self, engine: Engine, settings: Settings, campaign: Any, now: datetime):
        self.engine, self.settings, self.campaign, self.now = engine, settings, campaign, now
        self.zone = settings.store.zone

    def extra_columns(self) -> list:
        return []

    def extra_where(self) -> list:
        return []

    def audience_rule(self) -> str | None:
        """``extra_where`` in English, as ``retain plan`` explains its counts; None: none."""
        return None

    def prepare(self, ids: list[int]) -> None:
        """Per-batch lookups, one query each."""

    def propose(self, row: Any) -> Proposal | None:
        raise NotImplementedError

    def propose_for(self, row: Any, past: dict[str, datetime]) -> Proposal | None:
        """The proposal given the occasions this customer already has (flows pick the next
        step not yet in the ledger; the other kinds propose one occasion)."""
        return self.propose(row)

    def proposals(self, row: Any, past: dict[str, datetime]) -> list[Proposal | None]:
        """What the planner decides on for this customer in one plan: one proposal (None:
        nothing to offer), or for transactional flows every step due (flows.py)."""
        return [self.propose_for(row, past)]

    def cooling_down(self, past: dict[str, datetime], occasion: str, now: datetime) -> bool:
        days = self.campaign.cooldown_days
        return bool(days) and any(at > now - timedelta(days=days) for at in past.values())


class _Winback(KindRules):
    def extra_where(self) -> list:
        return [METRICS.c.dormancy.in_([s.tier for s in self.campaign.steps])]

    def audience_rule(self) -> str:
        tiers = [s.tier.replace("_", " ") for s in self.campaign.steps]
        listed = tiers[0] if len(tiers) == 1 else f"{', '.join(tiers[:-1])} or {tiers[-1]}"
        return f"dormant in a tier it has a step for: {listed}"

    def propose(self, row):
        step = self.campaign.step_for(str(row.dormancy))
        if step is None or row.last_order_at is None:
            return None
        # The episode is named by the last order's date: a new order starts a new episode.
        episode = row.last_order_at.astimezone(self.zone).date().isoformat()
        offer = offers.coupon_offer(step.coupon, row.avg_order_value_cents or 0)
        return Proposal(f"{step.tier}:{episode}", offer)


class _NewProduct(KindRules):
    def __init__(self, *args):
        super().__init__(*args)
        c = self.campaign
        self.products = offers.new_products(self.engine, self.now,
                                            c.lookback_days + c.held_back_days,
                                            c.include_price_drops, c.categories)
        # A vip campaign's early access: this campaign shows a product held_back_days after
        # it became new; the vip campaign announced it to its segment at once (and a product
        # is announced to a customer once).
        held = self.now - timedelta(days=c.held_back_days)
        self.products = [p for p in self.products if _new_since(p) <= held]

    def prepare(self, ids):
        self.bought: dict[int, set[str]] = {}
        self.categories: dict[int, set[str]] = {}
        self.announced: dict[int, set[int]] = {}
        if not self.products:
            return
        batch = BOUGHT.c.customer_id
        with self.engine.connect() as conn:
            # Of the new products, those each customer already owns; and, when the digest
            # follows what they buy, the categories they bought from.
            for customer_id, sku in conn.execute(
                    select(batch, BOUGHT.c.sku).where(
                        db.among(conn, batch, ids),
                        BOUGHT.c.sku.in_(sorted({p["sku"] for p in self.products})))):
                self.bought.setdefault(customer_id, set()).add(sku)
            if self.campaign.match != "all":
                for customer_id, category in conn.execute(
                        select(batch, PRODUCTS.c.category).distinct()
                        .select_from(BOUGHT.join(PRODUCTS, PRODUCTS.c.sku == BOUGHT.c.sku))
                        .where(db.among(conn, batch, ids), PRODUCTS.c.category != "")):
                    self.categories.setdefault(customer_id, set()).add(category)
            for customer_id, product_id in conn.execute(
                    select(ANNOUNCED.c.customer_id, ANNOUNCED.c.product_id)
                    .where(db.among(conn, ANNOUNCED.c.customer_id, ids))):
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
        return Proposal("products:" + ",".join(sorted(skus)), products=skus)


class _SpendThreshold(KindRules):
    def __init__(self, *args):
        super().__init__(*args)
        c = self.campaign
        period = cm.spend_period(c, cm.local_today(self.now, self.zone))
        self.period = period.key
        self.period_ends_on = period.last_day.isoformat()
        self.since = period.starts_at(self.zone)
        threshold = money.cents(c.threshold)
        self.threshold = threshold
        self.floor = threshold - money.cents(c.nudge.within) if c.nudge else threshold
        gift_skus = {c.gift.product} if c.gift.product else set()
        self.catalogue = offers.catalogue(self.engine, gift_skus)
        spent = (select(ORDERS.c.customer_id, func.sum(ORDERS.c.total_cents).label("spent"))
                 .where(counted(self.now), ORDERS.c.created_at >= self.since)
                 .group_by(ORDERS.c.customer_id).subquery("period_spend"))
        self.spent = spent
        self.gift_name = offers.gift_offer(c.gift, self.period, self.catalogue, 0,
                                           threshold, self.settings.store).gift_name

    def extra_columns(self):
        return [self.spent.c.spent.label("period_spent")]

    def extra_where(self):
        # Joined through WHERE: only customers whose period spend is near or over the threshold.
        return [self.spent.c.customer_id == CUSTOMERS.c.id, self.spent.c.spent >= self.floor]

    def audience_rule(self) -> str:
        return (f"spent at least {self.settings.store.money(self.floor)} in the period "
                f"{self.period}")

    def propose(self, row):
        spent = row.period_spent or 0
        if spent >= self.threshold:
            offer = offers.gift_offer(self.campaign.gift, self.period, self.catalogue,
                                      row.avg_order_value_cents or 0, self.threshold,
                                      self.settings.store)
            return Proposal(f"gift:{self.period}", offer)
        if self.campaign.nudge and spent >= self.floor:
            nudge = {"missing_cents": self.threshold - spent, "threshold_cents": self.threshold,
                     "spent_cents": spent, "period": self.period,
                     "period_ends_on": self.period_ends_on, "gift_name": self.gift_name}
            return Proposal(f"nudge:{self.period}", nudge=nudge)
        return None

    def cooling_down(self, past, occasion, now):
        if self.campaign.period != "days" or not occasion.startswith("gift:"):
            return super().cooling_down(past, occasion, now)
        # A rolling window: at most one gift per period_days, whatever the calendar says.
        window = now - timedelta(days=self.campaign.period_days)
        return any(o.startswith("gift:") and at > window for o, at in past.items())


class _Bundle(KindRules):
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
            for customer_id, sku in conn.execute(
                    select(BOUGHT.c.customer_id, BOUGHT.c.sku)
                    .where(db.among(conn, BOUGHT.c.customer_id, ids),
                           BOUGHT.c.sku.in_(self.skus))):
                self.owned.setdefault(customer_id, set()).add(sku)

    def propose(self, row):
        owned = self.owned.get(row.id, set())
        today = cm.local_today(self.now, self.zone).isoformat()
        declined = None
        for deal in self.deals:
            offer = deal.offer_for(owned)
            if offer is not None and deal.saves_enough(offer):
                return Proposal(f"{deal.id}:{today}", offer, offer.bundle_skus)
            if offer is not None and declined is None:
                declined = Proposal(f"{deal.id}:{today}", offer, offer.bundle_skus,
                                    skip=Skip.small_saving,
                                    note=deal.too_small(offer, self.settings.store))
        return declined

    def cooling_down(self, past, occasion, now):
        # The cooldown is per bundle: another bundle may still be offered.
        bundle_id = occasion.split(":", 1)[0]
        window = now - timedelta(days=self.campaign.cooldown_days)
        return any(o.split(":", 1)[0] == bundle_id and at > window for o, at in past.items())


def _new_since(product: dict) -> datetime:
    """When a product became new: created, or later reduced in price."""
    return max(product["created_at"], product["price_reduced_at"] or product["created_at"])


_RULES: dict[str, type[KindRules]] = {
    "winback": _Winback,
    "new_product": _NewProduct,
    "spend_threshold": _SpendThreshold,
    "bundle": _Bundle,
}


def for_campaign(engine: Engine, settings: Settings, campaign: cm.Campaign,
                 now: datetime) -> KindRules:
    from engine.campaigns import flows

    rules = _RULES.get(campaign.kind) or flows.RULES[campaign.kind]
    return rules(engine, settings, campaign, now)
