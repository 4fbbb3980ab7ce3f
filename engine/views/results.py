"""``retain report``: did each campaign work? Sends, coupons, attributed revenue, lift.

Owns the report's figures per campaign, and per step (a winback tier, a bundle, a gift or a
nudge: an occasion's prefix, ``attribution.step_of``) where a campaign has more than one,
assembled from attribution.py's queries and lift.py's statistics, and their machine form
(``as_dict``: money as decimal strings in the store's currency, rates as fractions). Must not
write, query beyond attribution.py, nor print (the CLI prints; reportpage.py makes the tables
and the HTML page).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from engine.config import Settings
from engine.errors import NotFound, did_you_mean
from engine.money import decimal_text
from engine.views import attribution, lift
from engine.views.attribution import HOLDOUT, MAILED
from engine.views.lift import Difference, Group


@dataclass
class Outcome:
    """One campaign's (or one step's) figures."""
    id: str
    sent: int = 0
    delivered: int = 0
    bounced: int = 0
    unsubscribed: int = 0
    held_out: int = 0
    coupons_issued: int = 0
    coupons_redeemed: int = 0
    coupons_redeemed_after_expiry: int = 0
    coupons_expired: int = 0
    discount_cost: int = 0
    attributed_orders: int = 0
    attributed_revenue: int = 0
    attributed_by_coupon: int = 0
    holdout_orders: int = 0
    mailed: Group = Group()
    holdout: Group = Group()
    steps: list[Outcome] = field(default_factory=list)

    @property
    def conversion(self) -> Difference:
        return lift.conversion(self.mailed, self.holdout)

    @property
    def revenue_per_recipient(self) -> Difference:
        return lift.revenue_per_recipient(self.mailed, self.holdout)

    @property
    def verdict(self) -> str:
        if not self.holdout.n:
            return "no holdout: lift cannot be measured"
        if not self.mailed.n:
            return "nothing mailed yet"
        conversion = self.conversion
        if not conversion.significant:
            more = lift.more_recipients_needed(self.mailed, self.holdout)
            return "not significant yet" + (
                f": about {more:,} more recipients needed" if more else
                ": no lift seen so far" if more is None else "")
        return "lift" if conversion.lift > 0 else "worse than the holdout"

    @property
    def incremental_orders(self) -> float | None:
        lifted = self.conversion.lift
        return None if lifted is None else lifted * self.mailed.n

    @property
    def incremental_revenue(self) -> int | None:
        lifted = self.revenue_per_recipient.lift
        return None if lifted is None else round(lifted * self.mailed.n)

    def as_dict(self) -> dict[str, Any]:
        conversion, revenue = self.conversion, self.revenue_per_recipient
        incremental = self.incremental_revenue
        data = {
            "id": self.id, "sent": self.sent, "delivered": self.delivered,
            "bounced": self.bounced, "unsubscribed": self.unsubscribed,
            "held_out": self.held_out, "coupons_issued": self.coupons_issued,
            "coupons_redeemed": self.coupons_redeemed,
            "coupons_redeemed_after_expiry": self.coupons_redeemed_after_expiry,
            "coupons_expired": self.coupons_expired,
            "attributed_orders": self.attributed_orders,
            "attributed_by_coupon": self.attributed_by_coupon,
            "attributed_revenue": decimal_text(self.attributed_revenue),
            "holdout_orders": self.holdout_orders,
            "discount_cost": decimal_text(self.discount_cost),
            "conversion": {**_rates(conversion), "significant": conversion.significant,
                           "method": lift.CONVERSION_METHOD},
            "revenue_per_recipient": {**_money(revenue), "method": lift.REVENUE_METHOD},
            "incremental_orders": None if self.incremental_orders is None
            else round(self.incremental_orders, 1),
            "incremental_revenue": decimal_text(incremental),
            "net_of_discounts": None if incremental is None
            else decimal_text(incremental - self.discount_cost),
            "more_recipients_needed": None if conversion.significant
            else lift.more_recipients_needed(self.mailed, self.holdout),
            "verdict": self.verdict,
        }
        if self.steps:
            data["steps"] = [step.as_dict() for step in self.steps]
        return data


def _rates(d: Difference) -> dict[str, Any]:
    def r(x):
        return None if x is None else round(x, 6)
    return {"mailed": r(d.mailed), "holdout": r(d.holdout), "lift": r(d.lift),
            "ci95": None if d.low is None else [r(d.low), r(d.high)]}


def _money(d: Difference) -> dict[str, Any]:
    def m(x):
        return None if x is None else decimal_text(round(x))
    return {"mailed": m(d.mailed), "holdout": m(d.holdout), "lift": m(d.lift),
            "ci95": None if d.low is None else [m(d.low), m(d.high)]}


@dataclass
class Report:
    """Every campaign's outcome, the window, the moment, and the per-day series for charts."""
    as_of: datetime
    window_days: int
    currency: str
    campaigns: list[Outcome]
    sends_per_day: dict[str, int]
    revenue_per_day: dict[str, int]
    since: datetime | None = None
    until: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"as_of": self.as_of.isoformat(), "window_days": self.window_days,
                "currency": self.currency,
                "from": self.since.isoformat() if self.since else None,
                "to": self.until.isoformat() if self.until else None,
                "campaigns": [c.as_dict() for c in self.campaigns],
                "sends_per_day": self.sends_per_day,
                "attributed_revenue_per_day": {day: decimal_text(cents) for day, cents
                                               in self.revenue_per_day.items()}}


def build(engine: Engine, settings: Settings, as_of: datetime, campaigns=None,
          since: datetime | None = None, until: datetime | None = None) -> Report:
    """The report as of ``as_of`` for ``campaigns`` (default: every campaign in the ledger),
    over deliveries that started in [since, until)."""
    window = settings.reporting.window_days
    scope = dict(campaigns=campaigns or None, since=since, until=until)
    with engine.connect() as conn:
        group_rows = attribution.groups(conn, window, as_of, **scope)
        attributed_rows = attribution.attributed(conn, window, as_of, **scope)
        coupon_rows = attribution.coupons(conn, as_of, **scope)
        send_rows = attribution.sends(conn, as_of, **scope)
    outcomes: dict[str, Outcome] = {}
    steps: dict[str, dict[str, Outcome]] = defaultdict(dict)

    def targets(campaign: str, step: str | None) -> list[Outcome]:
        whole = outcomes.setdefault(campaign, Outcome(campaign))
        if step is None:
            return [whole]
        return [whole, steps[campaign].setdefault(step, Outcome(step))]

    sends_per_day: dict[str, int] = defaultdict(int)
    revenue_per_day: dict[str, int] = defaultdict(int)
    for row in send_rows:
        for o in targets(row["campaign_id"], None):
            status, n = row["status"], row["n"]
            if status == "held_out":
                o.held_out += n
                continue
            o.sent += n
            o.delivered += n if status == "sent" else 0
            o.bounced += n if status == "bounced" else 0
            o.unsubscribed += row["unsubscribed"] or 0
        if row["status"] != "held_out":
            sends_per_day[row["day"]] += row["n"]
    for row in group_rows:
        group = Group(row["n"], row["converted"] or 0, int(row["revenue"] or 0),
                      float(row["revenue_sq"] or 0))
        for o in targets(row["campaign_id"], row["step"]):
            if row["grp"] == MAILED:
                o.mailed = o.mailed + group
            else:
                o.holdout = o.holdout + group
    for row in coupon_rows:
        for o in targets(row["campaign_id"], row["step"]):
            o.coupons_issued += row["issued"]
            o.coupons_redeemed += row["redeemed"] or 0
            o.coupons_redeemed_after_expiry += row["late"] or 0
            o.coupons_expired += row["expired"] or 0
            o.discount_cost += int(row["discount"] or 0)
    for row in attributed_rows:
        for o in targets(row["campaign_id"], row["step"]):
            if row["grp"] == HOLDOUT:
                o.holdout_orders += row["orders"]
                continue
            o.attributed_orders += row["orders"]
            o.attributed_revenue += int(row["revenue"] or 0)
            o.attributed_by_coupon += row["orders"] if row["how"] == "coupon" else 0
        if row["grp"] != HOLDOUT:
            revenue_per_day[row["day"]] += int(row["revenue"] or 0)
    for campaign, outcome in outcomes.items():
        if len(steps[campaign]) > 1:
            outcome.steps = [steps[campaign][name] for name in sorted(steps[campaign])]
            for step in outcome.steps:  # sends are counted per day; a step's, by its groups
                step.sent = step.delivered = step.mailed.n
                step.held_out = step.holdout.n
    missing = [c for c in campaigns or () if c not in outcomes]
    if missing:
        raise NotFound(f'no deliveries of campaign "{missing[0]}" in this period'
                       + did_you_mean(missing[0], attribution.campaign_ids(engine)))
    ordered = [outcomes[c] for c in (campaigns or sorted(outcomes))]
    return Report(as_of, window, settings.store.currency, ordered,
                  dict(sorted(sends_per_day.items())), dict(sorted(revenue_per_day.items())),
                  since, until)
