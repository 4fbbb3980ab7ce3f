"""Refreshing customer metrics for the customers whose orders changed, not for everyone.

A full rebuild reads every order (41 s at 1 M customers and 10 M orders). After new orders on
the same local day, only the customers who own them have other aggregates; what depends on the
whole population — RFM quintiles and value tiers — is recomputed by a cheaper pass over
``customer_metrics`` itself (no orders read), which writes only the rows whose scores moved.

Owns: taking the marked customers (``metrics_dirty``, filled by triggers on orders and
customers, tables.py) plus those with orders created between the cached moment and ``now``;
rebuilding their rows (and their ``customer_products``) with ``metrics``' own expressions; the
rescoring pass. The result is the
same table a full rebuild writes (tests/shop/test_metricsdelta.py compares them).
Must not decide whether the table is stale (``metrics.refresh`` does) or read the clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Date, bindparam, delete, func, insert, null, or_, select, update
from sqlalchemy.engine import Connection

from engine import tables
from engine.shop import metrics

DIRTY = tables.MetricsDirty.__table__
CHUNK = 5000          # customers a statement: SQLite allows 32,766 bound values
SHARE = 10            # more than 1 in SHARE customers changed: the full rebuild is cheaper


def refresh_changed(conn: Connection, params: dict[str, Any], cached: datetime,
                    now: datetime) -> bool:
    """Rebuild the rows of changed customers and rescore everyone; False (nothing done, the
    marks taken) when so many changed that a full rebuild is the cheaper way."""
    table = metrics.metrics_table
    population = conn.execute(select(func.count()).select_from(table)).scalar_one()
    marked = conn.execute(select(func.count()).select_from(DIRTY)).scalar_one()
    if marked > max(1000, population // SHARE):
        conn.execute(delete(DIRTY))
        return False
    # Taken in one statement: a mark a writer adds from now on stays for the next refresh.
    ids = set(conn.execute(delete(DIRTY).returning(DIRTY.c.customer_id)).scalars())
    low, high = sorted((cached, now))
    orders = metrics.orders
    ids.update(conn.execute(select(orders.c.customer_id).distinct().where(
        orders.c.created_at >= bindparam("low", low, type_=tables.UTCDateTime()),
        orders.c.created_at < bindparam("high", high, type_=tables.UTCDateTime()))).scalars())
    ordered = sorted(ids)
    for start in range(0, len(ordered), CHUNK):
        chunk = ordered[start:start + CHUNK]
        conn.execute(delete(table).where(table.c.customer_id.in_(chunk)))
        conn.execute(_own_rows(), dict(params, ids=chunk))
        bought = metrics.products_table
        conn.execute(delete(bought).where(bought.c.customer_id.in_(chunk)))
        conn.execute(metrics.products_statement(conn, only=True), {"now": now, "ids": chunk})
    if ordered:
        conn.execute(_rescore(), params)
    return True


def _own_rows():
    """The rows of the customers in ``ids`` from their own orders, scores left to rescore."""
    per_customer = metrics._per_customer(only=True)
    p = per_customer.c
    own = select(per_customer, metrics.days_between(
        bindparam("today", type_=Date()), p.last_local_date).label("recency_days")).cte("own")
    r = own.c
    none = null()
    values = {"customer_id": r.customer_id, "orders": r.orders, "spent_cents": r.spent_cents,
              "first_order_at": r.first_order_at, "last_order_at": r.last_order_at,
              "recency_days": r.recency_days, "r_score": none, "f_score": none,
              "m_score": none, "value_tier": none, **metrics._own(r)}
    return insert(metrics.metrics_table).from_select(
        metrics.COLUMNS, select(*(values[c] for c in metrics.COLUMNS)))


def _rescore():
    """RFM quintiles and value tiers of every buyer from ``customer_metrics`` alone: the same
    window functions as the full rebuild, recency ranked by ``recency_days`` descending (the
    same order as the last order's date); only rows whose scores moved are written."""
    table = metrics.metrics_table
    m = table.c
    ranked = select(m.customer_id, m.orders, m.spent_cents,
                    *metrics._ranks(m, m.recency_days.desc())).subquery("ranked")
    scores = metrics._scores(ranked.c)
    return (update(table).where(m.customer_id == ranked.c.customer_id,
                                or_(*(m[k].is_distinct_from(v) for k, v in scores.items())))
            .values(**scores))
