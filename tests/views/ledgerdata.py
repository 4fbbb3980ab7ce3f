"""Deliveries and coupons written straight into a test database, beside shopdata.Shop's orders.

The engine's only writer of deliveries is delivery/ledger.py; the report's tests need ledgers of
a known shape (who was mailed when, who was held out), so they write the rows themselves.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import count

from sqlalchemy import insert

from engine import tables


class Ledger:
    def __init__(self, engine):
        self.engine = engine
        self._n = count(1)

    def delivery(self, customer_id: int, campaign: str = "winback", *, at: datetime,
                 status: str = "sent", occasion: str | None = None) -> int:
        """A delivery planned at ``at`` and, unless held out, sent then too."""
        n = next(self._n)
        with self.engine.begin() as conn:
            return conn.execute(insert(tables.Delivery.__table__).values(
                campaign_id=campaign, customer_id=customer_id,
                occasion=occasion or f"drowsy:{n}", status=status, planned_at=at,
                sent_at=None if status == "held_out" else at)).inserted_primary_key[0]

    def coupon(self, delivery_id: int, customer_id: int, code: str, campaign: str = "winback",
               *, at: datetime, percent: int | None = 20, amount: int | None = None,
               valid_days: int = 30) -> int:
        with self.engine.begin() as conn:
            return conn.execute(insert(tables.Coupon.__table__).values(
                code=code, campaign_id=campaign, customer_id=customer_id,
                delivery_id=delivery_id, percent_off=percent, amount_off_cents=amount,
                issued_at=at, expires_at=at + timedelta(days=valid_days))
            ).inserted_primary_key[0]

    def mailed(self, customer_id: int, code: str, campaign: str = "winback", *,
               at: datetime, **offer) -> int:
        """A sent delivery carrying a coupon; the delivery's id."""
        delivery_id = self.delivery(customer_id, campaign, at=at)
        self.coupon(delivery_id, customer_id, code, campaign, at=at, **offer)
        return delivery_id
