"""The counted-order rule, case by case, on SQLite and PostgreSQL: a shop's orders as Shopify
exports them, imported, then asked which count as of a moment (and whether metrics agree)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from engine.shop import importer, metrics
from engine.shop.counted import counted, orders
from tests.conftest import on_each_backend

AS_OF = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)  # 14:00 in Paris, the test store's zone

# Name, Financial Status, Created at, Total, Cancelled at, Refunded Amount → counted total
CASES = [
    ("#1", "paid", "2026-06-01 10:00:00 +0200", "50.00", "", "", 5000),
    ("#2", "pending", "2026-06-02 10:00:00 +0200", "20.00", "", "", 2000),
    ("#3", "authorized", "2026-06-03 10:00:00 +0200", "30.00", "", "", 3000),
    ("#4", "partially_paid", "2026-06-04 10:00:00 +0200", "40.00", "", "", 4000),
    ("#5", "partially_refunded", "2026-06-05 10:00:00 +0200", "100.00", "", "25.50", 7450),
    ("#6", "refunded", "2026-06-06 10:00:00 +0200", "60.00", "", "60.00", None),
    ("#7", "voided", "2026-06-07 10:00:00 +0200", "70.00", "", "", None),
    ("#8", "expired", "2026-06-08 10:00:00 +0200", "80.00", "", "", None),
    ("#9", "paid", "2026-06-09 10:00:00 +0200", "90.00", "2026-06-09 11:00:00 +0200", "", None),
    ("#10", "paid", "2026-06-15 14:00:00 +0200", "10.00", "", "", None),  # at the as-of moment
    ("#11", "paid", "2026-06-15 14:00:01 +0200", "10.00", "", "", None),  # after it
    ("#12", "paid", "2026-06-15 13:59:59 +0200", "11.00", "", "", 1100),  # just before it
]


engine = on_each_backend("counted-order")


@pytest.fixture
def shop(engine, settings, tmp_path):
    header = "Name,Email,Financial Status,Created at,Total,Cancelled at,Refunded Amount\n"
    rows = "".join(f"{name},ann@example.com,{status},{at},{total},{cancelled},{refunded}\n"
                   for name, status, at, total, cancelled, refunded, _ in CASES)
    path = tmp_path / "orders_export.csv"
    path.write_text(header + rows)
    importer.import_file(engine, settings, "orders", path, "shopify", now=AS_OF)
    return engine


def test_which_orders_count(shop):
    with shop.connect() as conn:
        found = dict(conn.execute(select(orders.c.external_id, orders.c.total_cents)
                                  .where(counted(AS_OF))).all())
    assert found == {name: total for name, *_, total in CASES if total is not None}


def test_metrics_count_the_same_orders(shop, settings):
    ann = metrics.for_customer(shop, settings, "ann@example.com", AS_OF)
    totals = [total for *_, total in CASES if total is not None]
    assert ann["orders"] == len(totals)
    assert ann["spent"] == f"{sum(totals) / 100:.2f}"
    assert ann["last_order_at"] == datetime(2026, 6, 15, 11, 59, 59, tzinfo=UTC).isoformat()
