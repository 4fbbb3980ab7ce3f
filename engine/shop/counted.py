"""What a *counted* order is: the one definition that metrics, segments, campaign kinds, offers
and the demo all use.

An order counts when it is paid and was created before the as-of moment ``now``:

    paid                              counts
    cancelled                         never counts (Shopify's voided and expired orders too)
    refunded                          fully refunded: never counts
    partially refunded                counts, with its total net of the refund (the importer
                                      subtracts Shopify's "Refunded Amount", csvformats.py)
    pending, authorized, partly paid  imported as paid (csvformats.SHOPIFY_STATUSES): counts
    created at or after ``now``       does not count yet, so ``--as-of`` sees what was known then

Owns ``counted(now)``, that rule as one SQL condition on the orders table, for a WHERE or a JOIN.
Must not run queries or read the clock: ``now`` is a parameter (a datetime or a bound parameter).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_
from sqlalchemy.sql.elements import ColumnElement

from engine.tables import Order, OrderStatus

orders = Order.__table__


def counted(now: datetime | Any) -> ColumnElement[bool]:
    """``orders`` rows that count as of ``now``: paid, and created before ``now``."""
    # The column order matches ix_orders_customer_metrics (customer, status, created_at, ...),
    # so a per-customer lookup seeks the index on status and ranges over created_at.
    return and_(orders.c.status == OrderStatus.paid, orders.c.created_at < now)
