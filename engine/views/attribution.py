"""Attribution: which orders a campaign earned, and how each group ordered after its delivery.

Owns the report's SQL over the ledger, the coupons and the orders (README "Did it work?"):
- a delivery's *start* is when it was sent; for a held-out customer, when the delivery was
  planned (the moment the mail would have gone), so mailed and held-out customers are watched
  over the same window of ``reporting.window_days`` days: ``start <= order < start + window``;
- ``groups``: per campaign, step and group (mailed / holdout), the recipients, how many
  ordered within their window, and the revenue of those orders (sum and sum of squares, so
  means and variances add up over steps into campaigns);
- ``attributed``: an order is the campaign's when it redeemed the campaign's coupon; otherwise
  when it is the customer's first counted order within a delivery's window, it goes to the most
  recent such delivery. When that delivery is a held-out one, the order is the holdout's, and
  no campaign claims it;
- the per-day series and the coupon figures the report's tables and charts show.
Orders count by counted.py's one definition as of ``as_of``. Must not write, nor do statistics
(lift.py) or formatting (results.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Float, and_, case, cast, func, literal, select, true
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from engine.shop.counted import counted
from engine.tables import Coupon, Customer, Delivery, DeliveryStatus, Order, Suppression

DELIVERIES = Delivery.__table__
ORDERS = Order.__table__
COUPONS = Coupon.__table__
CUSTOMERS = Customer.__table__
SUPPRESSIONS = Suppression.__table__
MAILED, HOLDOUT = "mailed", "holdout"
HANDED_OVER = (DeliveryStatus.sent, DeliveryStatus.bounced, DeliveryStatus.unknown)


class plus_days(FunctionElement):
    """A UTC timestamp column plus a whole number of days."""

    inherit_cache = True


@compiles(plus_days, "sqlite")
def _plus_days_sqlite(element, compiler, **kw):
    moment, days = (compiler.process(c, **kw) for c in element.clauses)
    # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff': datetime() drops the fraction, put it back so a
    # boundary compares to the microsecond.
    return f"(datetime({moment}, '+' || {days} || ' days') || substr({moment}, 20))"


@compiles(plus_days)
def _plus_days_default(element, compiler, **kw):
    moment, days = (compiler.process(c, **kw) for c in element.clauses)
    return f"({moment} + make_interval(days => {days}))"


class step_of(FunctionElement):
    """An occasion's step, the part before its first ":" ("half_asleep:2026-01-03" →
    "half_asleep"): a winback tier, a bundle, a gift or a nudge. Grouped in SQL, since an
    occasion is nearly unique per customer and the report must not read a row per customer."""

    inherit_cache = True


@compiles(step_of, "sqlite")
def _step_sqlite(element, compiler, **kw):
    occasion = compiler.process(element.clauses, **kw)
    return (f"CASE WHEN instr({occasion}, ':') > 0 THEN substr({occasion}, 1, "
            f"instr({occasion}, ':') - 1) ELSE {occasion} END")


@compiles(step_of)
def _step_default(element, compiler, **kw):
    return f"split_part({compiler.process(element.clauses, **kw)}, ':', 1)"


STEP = step_of(DELIVERIES.c.occasion)


def _start() -> ColumnElement:
    return case((DELIVERIES.c.status == DeliveryStatus.held_out, DELIVERIES.c.planned_at),
                else_=DELIVERIES.c.sent_at)


def _group() -> ColumnElement:
    return case((DELIVERIES.c.status == DeliveryStatus.held_out, literal(HOLDOUT)),
                else_=literal(MAILED))


def _watched(campaigns: Sequence[str] | None, since: datetime | None, until: datetime | None,
             as_of: datetime, statuses=(DeliveryStatus.sent, DeliveryStatus.held_out),
             start: ColumnElement | None = None) -> list[ColumnElement]:
    """Deliveries in ``statuses`` of ``campaigns`` that started within [since, until) before
    as_of (by default: mailed and held out, from their start)."""
    start = _start() if start is None else start
    where = [DELIVERIES.c.status.in_(statuses), start < as_of]
    if campaigns:
        where.append(DELIVERIES.c.campaign_id.in_(list(campaigns)))
    if since is not None:
        where.append(start >= since)
    if until is not None:
        where.append(start < until)
    return where


def _in_window(start: ColumnElement, window_days: int, as_of: datetime) -> ColumnElement:
    return and_(ORDERS.c.customer_id == DELIVERIES.c.customer_id, counted(as_of),
                ORDERS.c.created_at >= start,
                ORDERS.c.created_at < plus_days(start, literal(window_days)))


def groups(conn: Connection, window_days: int, as_of: datetime, campaigns=None, since=None,
           until=None) -> list[dict[str, Any]]:
    """Per (campaign, step, group): recipients, converted, revenue and its sum of squares."""
    start = _start()
    per_delivery = (
        select(DELIVERIES.c.campaign_id, STEP.label("step"), _group().label("grp"),
               func.count(ORDERS.c.id).label("orders"),
               func.coalesce(func.sum(ORDERS.c.total_cents), 0).label("revenue"))
        .select_from(DELIVERIES.outerjoin(ORDERS, _in_window(start, window_days, as_of)))
        .where(*_watched(campaigns, since, until, as_of))
        .group_by(DELIVERIES.c.id, DELIVERIES.c.campaign_id, DELIVERIES.c.occasion,
                  DELIVERIES.c.status)
        .subquery("per_delivery"))
    revenue = cast(per_delivery.c.revenue, Float)
    query = (select(per_delivery.c.campaign_id, per_delivery.c.step, per_delivery.c.grp,
                    func.count().label("n"),
                    func.sum(case((per_delivery.c.orders > 0, 1), else_=0)).label("converted"),
                    func.sum(per_delivery.c.orders).label("orders"),
                    func.sum(per_delivery.c.revenue).label("revenue"),
                    func.sum(revenue * revenue).label("revenue_sq"))
             .group_by(per_delivery.c.campaign_id, per_delivery.c.step, per_delivery.c.grp))
    return [dict(row._mapping) for row in conn.execute(query)]


def attributed(conn: Connection, window_days: int, as_of: datetime, campaigns=None,
               since=None, until=None) -> list[dict[str, Any]]:
    """Per (campaign, step, group, how, day): orders and revenue attributed by coupon or
    by window."""
    start = _start()
    redeemed = (select(COUPONS.c.redeemed_order_id)
                .where(COUPONS.c.redeemed_order_id.is_not(None), COUPONS.c.redeemed_at < as_of))
    first_order = (select(ORDERS.c.id).where(_in_window(start, window_days, as_of))
                   .order_by(ORDERS.c.created_at, ORDERS.c.id).limit(1)
                   .correlate(DELIVERIES).scalar_subquery())
    # Every watched delivery's first order in its window (all campaigns: the most recent one
    # wins, whichever campaign it belongs to); filtered to the asked campaigns after ranking.
    firsts = (select(DELIVERIES.c.campaign_id, STEP.label("step"), _group().label("grp"),
                     first_order.label("order_id"), start.label("start"),
                     DELIVERIES.c.id.label("delivery_id"))
              .where(*_watched(None, since, until, as_of)).subquery("firsts"))
    ranked = (select(firsts, func.row_number().over(
        partition_by=firsts.c.order_id,
        order_by=(firsts.c.start.desc(), firsts.c.delivery_id.desc())).label("rn"))
        .where(firsts.c.order_id.is_not(None), firsts.c.order_id.not_in(redeemed))
        .subquery("ranked"))
    day = func.date(ORDERS.c.created_at)
    by_window = (select(ranked.c.campaign_id, ranked.c.step, ranked.c.grp,
                        literal("window").label("how"),
                        day.label("day"), func.count().label("orders"),
                        func.sum(ORDERS.c.total_cents).label("revenue"))
                 .select_from(ranked.join(ORDERS, ORDERS.c.id == ranked.c.order_id))
                 .where(ranked.c.rn == 1,
                        ranked.c.campaign_id.in_(list(campaigns)) if campaigns else true())
                 .group_by(ranked.c.campaign_id, ranked.c.step, ranked.c.grp, day))
    redeemed_day = func.date(COUPONS.c.redeemed_at)
    by_coupon = (select(COUPONS.c.campaign_id, STEP.label("step"),
                        literal(MAILED).label("grp"),
                        literal("coupon").label("how"), redeemed_day.label("day"),
                        func.count().label("orders"),
                        func.sum(COUPONS.c.redeemed_cents).label("revenue"))
                 .select_from(COUPONS.join(DELIVERIES, DELIVERIES.c.id == COUPONS.c.delivery_id))
                 .where(COUPONS.c.redeemed_at < as_of,
                        *_watched(campaigns, since, until, as_of))
                 .group_by(COUPONS.c.campaign_id, STEP, redeemed_day))
    rows = list(conn.execute(by_window)) + list(conn.execute(by_coupon))
    return [{**row._mapping, "day": str(row.day)[:10]} for row in rows]


def coupons(conn: Connection, as_of: datetime, campaigns=None, since=None,
            until=None) -> list[dict[str, Any]]:
    """Per (campaign, step): coupons issued, redeemed, redeemed after expiry, expired
    unused, and the discounts given."""
    redeemed = and_(COUPONS.c.redeemed_at.is_not(None), COUPONS.c.redeemed_at < as_of)
    late = and_(redeemed, COUPONS.c.expires_at.is_not(None),
                COUPONS.c.redeemed_at > COUPONS.c.expires_at)
    expired = and_(~redeemed, COUPONS.c.expires_at.is_not(None), COUPONS.c.expires_at < as_of)
    query = (select(COUPONS.c.campaign_id, STEP.label("step"),
                    func.count().label("issued"),
                    func.sum(case((redeemed, 1), else_=0)).label("redeemed"),
                    func.sum(case((late, 1), else_=0)).label("late"),
                    func.sum(case((expired, 1), else_=0)).label("expired"),
                    func.sum(case((redeemed, COUPONS.c.discount_cents), else_=0))
                    .label("discount"))
             .select_from(COUPONS.join(DELIVERIES, DELIVERIES.c.id == COUPONS.c.delivery_id))
             .where(DELIVERIES.c.status == DeliveryStatus.sent, COUPONS.c.issued_at < as_of,
                    *_watched(campaigns, since, until, as_of))
             .group_by(COUPONS.c.campaign_id, STEP))
    return [dict(row._mapping) for row in conn.execute(query)]


def sends(conn: Connection, as_of: datetime, campaigns=None, since=None,
          until=None) -> list[dict[str, Any]]:
    """Per (campaign, status, day): deliveries handed to the server or held out, and how many
    of the mailed customers unsubscribed after their delivery was sent."""
    start = func.coalesce(DELIVERIES.c.sent_at, DELIVERIES.c.planned_at)
    where = _watched(campaigns, since, until, as_of, (*HANDED_OVER, DeliveryStatus.held_out),
                     start)
    unsubscribed = (select(SUPPRESSIONS.c.email_key)
                    .select_from(SUPPRESSIONS.join(CUSTOMERS, CUSTOMERS.c.email_key
                                                   == SUPPRESSIONS.c.email_key))
                    .where(CUSTOMERS.c.id == DELIVERIES.c.customer_id,
                           SUPPRESSIONS.c.reason == "unsubscribed",
                           SUPPRESSIONS.c.created_at >= DELIVERIES.c.sent_at,
                           SUPPRESSIONS.c.created_at < as_of)
                    .correlate(DELIVERIES).exists())
    day = func.date(start)
    query = (select(DELIVERIES.c.campaign_id, DELIVERIES.c.status, day.label("day"),
                    func.count().label("n"),
                    func.sum(case((unsubscribed, 1), else_=0)).label("unsubscribed"))
             .where(*where).group_by(DELIVERIES.c.campaign_id, DELIVERIES.c.status, day))
    return [{**row._mapping, "status": str(getattr(row.status, "value", row.status)),
             "day": str(row.day)[:10]} for row in conn.execute(query)]


def campaign_ids(engine) -> list[str]:
    """Every campaign the ledger has a delivery of, for "did you mean"."""
    with engine.connect() as conn:
        return list(conn.execute(select(DELIVERIES.c.campaign_id).distinct()
                                 .order_by(DELIVERIES.c.campaign_id)).scalars())
