"""Coupon redemptions: which issued code an imported order used, kept current on every import.

Owns ``code_key`` (a code as a customer types it: compared case-insensitively and without
separators, so "back-7kq4 xt..." redeems "BACK-7KQ4XT-..."; its SQL form is
``tables.code_key_sql``, declared beside the index on orders it must match) and ``refresh``,
the SQL that marks each coupon redeemed by the first counted order (counted.py, the one
definition) whose ``discount_code`` matches it: the order, its total, the discount the offer
gave and when. An order that stops counting (refunded in full, cancelled) un-redeems its
coupon; the next counted order with the code, if any, redeems it instead.

Choices, and why:
- Recomputed from the orders each time, not updated incrementally: a refund, a re-import or a
  webhook that arrives twice then cannot leave a stale mark, and importing the same file again
  writes the same values. Only rows whose redemption differs are written.
- The discount given is worked out from the offer, since an order carries its code but not its
  discount: percent off of a total that is already net of it (``total * p / (100 - p)``), the
  amount off, or the gift card's value. Bundles and gifts of a product cost what the report
  says the offer's text says, nothing here.
- Whoever uses a code redeems it: a unique code shared with a friend still earned an order.
- An import refreshes the codes its orders carry (a webhook's single order is a lookup, not a
  pass over every order); a large import (over INCREMENTAL_LIMIT codes) refreshes them all.
  An order re-imported with its code removed keeps its redemption until a full refresh.
Must not read the clock (imported orders carry their times) nor know campaigns or deliveries.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from datetime import UTC, datetime

from sqlalchemy import and_, case, func, literal, or_, select, update
from sqlalchemy.engine import Connection

from engine.shop.counted import counted
from engine.tables import CODE_SEPARATORS, Coupon, Order, code_key_sql

COUPONS = Coupon.__table__
ORDERS = Order.__table__
_SEPARATOR_RE = re.compile("[" + re.escape("".join(CODE_SEPARATORS)) + "]")
INCREMENTAL_LIMIT = 10_000  # codes an import refreshes one by one; past it, every coupon
# Every order the shop knows counts for redemption; ``--as-of`` reads redeemed_at.
_ALWAYS = datetime(9999, 1, 1, tzinfo=UTC)


def code_key(code: str) -> str:
    """"back-7kq4 xt" → "BACK7KQ4XT": what two spellings of one code have in common (in SQL:
    ``tables.code_key_sql``, which the index on orders' codes is built on)."""
    return _SEPARATOR_RE.sub("", code).upper()


def keys_of(records: Iterable[dict], keys: set[str] | None) -> set[str] | None:
    """``keys`` plus the code keys the order ``records`` carry; None (refresh everything) once
    there are more than INCREMENTAL_LIMIT, so a large import holds no growing set."""
    if keys is None:
        return None
    keys |= {code_key(r["discount_code"]) for r in records if r.get("discount_code")}
    return keys if len(keys) <= INCREMENTAL_LIMIT else None


def refresh(conn: Connection, keys: Collection[str] | None = None) -> int:
    """Bring coupons' redemptions up to date with the orders; the coupons changed.

    ``keys``: only the coupons with these code keys (what the orders just written carry: a
    webhook's one order costs a lookup, not a pass over every order); None: every coupon.
    Runs inside the caller's transaction (an import, a sync, a webhook), after its writes.
    """
    if keys is not None and not keys:
        return 0
    conn.execute(update(COUPONS).where(COUPONS.c.code_key.is_(None))
                 .values(code_key=code_key_sql(COUPONS.c.code)))
    key = code_key_sql(ORDERS.c.discount_code)
    chosen = [] if keys is None else [key.in_(sorted(keys))]
    mine = [] if keys is None else [COUPONS.c.code_key.in_(sorted(keys))]
    # The first counted order per code, by time then id: the orders that carry a code, read
    # through ix_orders_discount_key (sought by key when ``keys`` are given: a lookup), matched
    # to coupons through their indexed code_key. The index is partial (orders with a code), so
    # the condition on discount_code below is what lets both databases use it.
    ranked = (select(key.label("k"), ORDERS.c.id, ORDERS.c.created_at, ORDERS.c.total_cents,
                     func.row_number().over(partition_by=key, order_by=(
                         ORDERS.c.created_at, ORDERS.c.id)).label("rn"))
              .where(ORDERS.c.discount_code.is_not(None), counted(_ALWAYS), *chosen)
              .subquery("ranked"))
    first = select(ranked).where(ranked.c.rn == 1).subquery("first_use")
    percent = COUPONS.c.percent_off
    discount = case(
        (and_(percent.is_not(None), percent < 100),
         (first.c.total_cents * percent + (100 - percent) // 2) // (100 - percent)),
        (COUPONS.c.amount_off_cents.is_not(None),
         func.min(COUPONS.c.amount_off_cents, first.c.total_cents)
         if conn.dialect.name == "sqlite" else
         func.least(COUPONS.c.amount_off_cents, first.c.total_cents)),
        (COUPONS.c.gift_card_cents.is_not(None), COUPONS.c.gift_card_cents),
        else_=literal(0))
    redeemed = conn.execute(
        update(COUPONS)
        .where(COUPONS.c.code_key == first.c.k, *mine,
               or_(COUPONS.c.redeemed_order_id.is_(None),
                   COUPONS.c.redeemed_order_id != first.c.id,
                   COUPONS.c.redeemed_cents != first.c.total_cents))
        .values(redeemed_order_id=first.c.id, redeemed_at=first.c.created_at,
                redeemed_cents=first.c.total_cents, discount_cents=discount)).rowcount
    # Coupons whose order stopped counting (or went) and that no other counted order redeems.
    still = select(ORDERS.c.id).where(
        ORDERS.c.id == COUPONS.c.redeemed_order_id, counted(_ALWAYS),
        code_key_sql(ORDERS.c.discount_code) == COUPONS.c.code_key)
    cleared = conn.execute(
        update(COUPONS).where(COUPONS.c.redeemed_order_id.is_not(None), *mine,
                              ~still.exists())
        .values(redeemed_order_id=None, redeemed_at=None, redeemed_cents=None,
                discount_cents=None)).rowcount
    return redeemed + cleared
