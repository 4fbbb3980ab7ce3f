"""After new, changed and cancelled orders on the same day, a refresh rebuilds only the
customers concerned (and rescores everyone) — and the table is exactly what a full rebuild
writes: every customer's aggregates, RFM scores, dormancy, value tier and lifecycle, and the
products each one bought (customer_products), also after a line is added to or taken from an
order they placed earlier."""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy import select, text, update

from engine import db, tables
from engine.shop import metrics
from tests.conftest import on_each_backend
from tests.shopdata import NOW, Shop

ORDERS = tables.Order.__table__
ITEMS = tables.OrderItem.__table__


engine = on_each_backend("incremental metrics")


def table(engine) -> dict[int, tuple]:
    with engine.connect() as conn:
        return {row[0]: tuple(row) for row in conn.execute(
            select(metrics.metrics_table).order_by(metrics.metrics_table.c.customer_id))}


def bought(engine) -> set[tuple[int, str]]:
    with engine.connect() as conn:
        return {tuple(row) for row in conn.execute(select(metrics.products_table))}


def state(engine, settings, now) -> str:
    with engine.connect() as conn:
        return metrics._cache_state(conn, settings, now)


def test_an_incremental_refresh_writes_the_table_a_full_rebuild_writes(engine, settings):
    rng = random.Random(7)
    maker = Shop(engine)
    people = [maker.customer() for _ in range(60)]
    for person in people[:50]:
        for _ in range(rng.randint(1, 4)):  # few distinct totals and days: many ties
            maker.order(person, days_ago=rng.choice([3, 40, 90, 200, 400]),
                        total=rng.choice([1000, 2500, 4000]),
                        items={sku: 1000 for sku in rng.sample(["MAT", "BLOCK", "TEA"], 2)})
    metrics.refresh(engine, settings, NOW)
    before = bought(engine)

    later = NOW + timedelta(hours=1)  # the same day in the store's zone
    for person in rng.sample(people, 8):
        maker.order(person, days_ago=0, total=rng.choice([1000, 9000]),
                    at=NOW + timedelta(minutes=30))
    newcomer = maker.customer()
    maker.order(newcomer, days_ago=1, total=2500)
    maker.customer()  # a prospect
    with engine.begin() as conn:  # a cancellation and a refund on earlier orders
        first, second = conn.execute(select(ORDERS.c.id).order_by(ORDERS.c.id).limit(2)
                                     ).scalars()
        conn.execute(update(ORDERS).where(ORDERS.c.id == first).values(status="cancelled"))
        conn.execute(update(ORDERS).where(ORDERS.c.id == second).values(total_cents=1))
        # A line added to an earlier order, and every line taken from another one.
        third, fourth = conn.execute(select(ORDERS.c.id, ORDERS.c.customer_id).where(
            ORDERS.c.status == "paid").order_by(ORDERS.c.id.desc()).limit(2)).all()
        conn.execute(ITEMS.insert().values(order_id=third.id, sku="GIFTCARD", quantity=1,
                                           unit_price_cents=500))
        conn.execute(ITEMS.delete().where(ITEMS.c.order_id == fourth.id))
        db.bump_data_version(conn)
    assert state(engine, settings, later) == "changed"

    metrics.refresh(engine, settings, later)
    incremental, incremental_bought = table(engine), bought(engine)
    assert (third.customer_id, "GIFTCARD") in incremental_bought - before
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM metrics_dirty")).scalar() == 0
    with engine.begin() as conn:  # forget the cache: the next refresh rebuilds everything
        conn.execute(text("DELETE FROM meta WHERE key = 'metrics_as_of'"))
    metrics.refresh(engine, settings, later)
    full = table(engine)

    assert len(full) == 62
    assert incremental == full
    assert incremental_bought == bought(engine)
    assert {row[8] for row in full.values()} > {None}  # r_score: scores were computed


def test_a_new_day_or_new_thresholds_rebuild_everything(engine, settings):
    maker = Shop(engine)
    maker.order(maker.customer(), days_ago=3)
    metrics.refresh(engine, settings, NOW)
    maker.order(maker.customer(), days_ago=3)
    assert state(engine, settings, NOW) == "changed"
    assert state(engine, settings, NOW + timedelta(days=1)) == "stale"  # every recency moved
