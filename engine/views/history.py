"""One customer's history with the campaigns: deliveries, the coupons they carried, redemptions.

Owns the listing ``retain customers show`` prints under the metrics: each delivery (id,
campaign, occasion, status, when), its coupon (id, code, expiry) and the order that redeemed it
(its external id, total, discount, and whether it came after the expiry). Customers appear by
id only, never by address. Must not write.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import Engine, select

from engine import display
from engine.money import decimal_text
from engine.tables import Coupon, Delivery, Order

DELIVERIES, COUPONS, ORDERS = Delivery.__table__, Coupon.__table__, Order.__table__


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def deliveries(engine: Engine, customer_id: int, as_of: datetime) -> list[dict[str, Any]]:
    """The customer's deliveries planned before ``as_of``, oldest first, with offers."""
    query = (select(DELIVERIES.c.id, DELIVERIES.c.campaign_id, DELIVERIES.c.occasion,
                    DELIVERIES.c.status, DELIVERIES.c.planned_at, DELIVERIES.c.sent_at,
                    COUPONS.c.id.label("coupon_id"), COUPONS.c.code, COUPONS.c.expires_at,
                    COUPONS.c.redeemed_at, COUPONS.c.redeemed_cents, COUPONS.c.discount_cents,
                    ORDERS.c.external_id.label("order"))
             .select_from(DELIVERIES.outerjoin(COUPONS, COUPONS.c.delivery_id == DELIVERIES.c.id)
                          .outerjoin(ORDERS, ORDERS.c.id == COUPONS.c.redeemed_order_id))
             .where(DELIVERIES.c.customer_id == customer_id, DELIVERIES.c.planned_at < as_of)
             .order_by(DELIVERIES.c.planned_at, DELIVERIES.c.id))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    listed = []
    for r in rows:
        redeemed = r.redeemed_at is not None and r.redeemed_at < as_of
        listed.append({
            "delivery_id": r.id, "campaign": r.campaign_id, "occasion": r.occasion,
            "status": str(getattr(r.status, "value", r.status)),
            "planned_at": _when(r.planned_at), "sent_at": _when(r.sent_at),
            "coupon": None if r.coupon_id is None else {
                "id": r.coupon_id, "code": r.code, "expires_at": _when(r.expires_at),
                "redemption": None if not redeemed else {
                    "order": r.order, "at": _when(r.redeemed_at),
                    "total": decimal_text(r.redeemed_cents),
                    "discount": decimal_text(r.discount_cents),
                    "after_expiry": bool(r.expires_at and r.redeemed_at > r.expires_at)}}})
    return listed


def lines(listed: list[dict[str, Any]], zone: tzinfo) -> list[tuple[str, ...]]:
    """Table rows: delivery, campaign, status, sent, coupon, redemption (times in ``zone``,
    the store's)."""
    rows = []
    for d in listed:
        coupon, redemption = d["coupon"], (d["coupon"] or {}).get("redemption")
        when = datetime.fromisoformat(d["sent_at"] or d["planned_at"])
        rows.append((str(d["delivery_id"]), f"{d['campaign']} ({d['occasion']})", d["status"],
                     display.moment(when, zone),
                     "-" if coupon is None else f"{coupon['id']} {coupon['code']}",
                     "-" if redemption is None else
                     f"order {redemption['order']} "
                     f"{display.day(datetime.fromisoformat(redemption['at']), zone)} "
                     f"total {redemption['total']}, discount {redemption['discount']}"
                     + (" (after expiry)" if redemption["after_expiry"] else "")))
    return rows
