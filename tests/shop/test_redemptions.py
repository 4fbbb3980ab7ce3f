"""Redemptions: an imported order whose discount code matches an issued coupon redeems it, as
a customer types the code; only counted orders redeem; a refund un-redeems; importing the same
file again changes nothing. SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, text

from engine.shop import importer, redemptions
from tests.conftest import on_each_backend
from tests.views.ledgerdata import Ledger

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
SENT = NOW - timedelta(days=20)
CUSTOMERS = ("customer_id,email,first_name,last_name,accepts_marketing,created_at\n"
             "C1,anna@example.com,Anna,M,yes,2024-03-01\n"
             "C2,bob@example.com,Bob,D,yes,2024-03-01\n")


engine = on_each_backend("redemption")


@pytest.fixture
def shop(engine, settings, tmp_path):
    """Anna and Bob imported; Anna was mailed BACK-7KQ4XT-9MWA3C (20 % off), Bob BACK-ABC (€5)."""
    importer.import_file(engine, settings, "customers", orders_file(tmp_path, CUSTOMERS,
                                                                    "customers.csv"), now=NOW)
    ids = customer_ids(engine)
    ledger = Ledger(engine)
    ledger.mailed(ids["C1"], "BACK-7KQ4XT-9MWA3C", at=SENT, percent=20)
    ledger.mailed(ids["C2"], "BACK-ABC", at=SENT, percent=None, amount=500, valid_days=3)
    return engine


def orders_file(tmp_path: Path, body: str, name: str = "orders.csv") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def orders(*lines: str) -> str:
    return "order_id,customer_id,created_at,total,status,discount_code\n" + "\n".join(lines)


def customer_ids(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT external_id, id FROM customers")).all())


def coupons(engine) -> dict[str, dict]:
    with engine.connect() as conn:
        found = conn.execute(text(
            "SELECT c.code, o.external_id AS order_ref, c.redeemed_cents, c.discount_cents, "
            "c.redeemed_at FROM coupons c LEFT JOIN orders o ON o.id = c.redeemed_order_id"))
        return {row.code: dict(row._mapping) for row in found}


def load(engine, settings, tmp_path, *lines):
    return importer.import_file(engine, settings, "orders", orders_file(tmp_path, orders(*lines)),
                                now=NOW)


def test_codes_typed_lower_case_or_without_dashes_redeem(shop, settings, tmp_path):
    load(shop, settings, tmp_path, "O-1,C1,2026-05-27T10:00:00Z,80.00,paid,back 7kq4xt9mwa3c",
         "O-2,C2,2026-05-27T11:00:00Z,45.00,paid,backabc")
    found = coupons(shop)
    anna, bob = found["BACK-7KQ4XT-9MWA3C"], found["BACK-ABC"]
    assert (anna["order_ref"], anna["redeemed_cents"]) == ("O-1", 8000)
    assert anna["discount_cents"] == 2000  # 20 % off: €80 paid of €100
    assert (bob["order_ref"], bob["discount_cents"]) == ("O-2", 500)


def test_the_first_counted_order_redeems_and_cancelled_ones_never(shop, settings, tmp_path):
    load(shop, settings, tmp_path,
         "O-1,C1,2026-05-27T10:00:00Z,80.00,cancelled,BACK-7KQ4XT-9MWA3C",
         "O-2,C1,2026-05-28T10:00:00Z,40.00,paid,BACK-7KQ4XT-9MWA3C",
         "O-3,C1,2026-05-29T10:00:00Z,60.00,paid,BACK-7KQ4XT-9MWA3C")
    assert coupons(shop)["BACK-7KQ4XT-9MWA3C"]["order_ref"] == "O-2"


def test_a_refund_un_redeems_and_the_same_file_twice_changes_nothing(shop, settings, tmp_path):
    line = "O-1,C1,2026-05-27T10:00:00Z,80.00,{},BACK-7KQ4XT-9MWA3C"
    load(shop, settings, tmp_path, line.format("paid"))
    before = coupons(shop)
    again = load(shop, settings, tmp_path, line.format("paid"))
    assert again.updated == 0 and coupons(shop) == before
    load(shop, settings, tmp_path, line.format("refunded"))
    assert coupons(shop)["BACK-7KQ4XT-9MWA3C"]["order_ref"] is None
    load(shop, settings, tmp_path, line.format("paid"))
    assert coupons(shop)["BACK-7KQ4XT-9MWA3C"] == before["BACK-7KQ4XT-9MWA3C"]


def test_a_code_nobody_issued_redeems_nothing(shop, settings, tmp_path):
    load(shop, settings, tmp_path, "O-1,C1,2026-05-27T10:00:00Z,80.00,paid,WELCOME10")
    assert all(c["order_ref"] is None for c in coupons(shop).values())


@pytest.mark.parametrize("typed", ["BACK-7KQ4XT-9MWA3C", "back-7kq4xt-9mwa3c",
                                   "BACK7KQ4XT9MWA3C", "Back 7KQ4XT 9MWA3C", "back_7kq4xt.9mwa3c"])
def test_code_key(typed):
    assert redemptions.code_key(typed) == "BACK7KQ4XT9MWA3C"


def test_a_folder_sync_keeps_redemptions_current(engine, config_path, tmp_path):
    """The drop-folder source imports through the same path: redeemed, then refunded."""
    from engine.consent import erasure
    from engine.shop import sources
    from tests.sourcedata import with_sources

    drop = tmp_path / "drop"
    drop.mkdir()
    settings = with_sources(config_path, f"  - {{name: drop, kind: folder, path: {drop}, "
                                         "settle_seconds: 0}\n")
    (drop / "1-customers.csv").write_text(CUSTOMERS)
    sources.sync(engine, settings, NOW, forget=erasure.forget, sleep=lambda s: None)
    ids = customer_ids(engine)
    Ledger(engine).mailed(ids["C1"], "BACK-SYNC", at=SENT)
    for name, status in (("2-orders.csv", "paid"), ("3-orders.csv", "refunded")):
        line = f"O-1,C1,2026-05-27T10:00:00Z,80.00,{status},back-sync\n"  # a finished file
        (drop / name).write_text(orders(line))
        result = sources.sync(engine, settings, NOW, forget=erasure.forget, sleep=lambda s: None)
        assert result[0].error is None and result[0].applied == 1, result[0]
        expected = "O-1" if status == "paid" else None
        assert coupons(engine)["BACK-SYNC"]["order_ref"] == expected


def test_a_large_import_refreshes_every_coupon(shop, settings, tmp_path, monkeypatch):
    """Past INCREMENTAL_LIMIT codes, an import refreshes all coupons, with the same outcome."""
    monkeypatch.setattr(redemptions, "INCREMENTAL_LIMIT", 1)
    load(shop, settings, tmp_path, "O-1,C1,2026-05-27T10:00:00Z,80.00,paid,back 7kq4xt9mwa3c",
         "O-2,C2,2026-05-27T11:00:00Z,45.00,paid,backabc")
    assert {c["order_ref"] for c in coupons(shop).values()} == {"O-1", "O-2"}


def test_one_codes_refresh_looks_its_orders_up_by_the_code_key_index(shop):
    """A webhook's order refreshes its one code without reading every order that carries a code:
    on both databases, the plan of the keyed refresh seeks ix_orders_discount_key (an index on
    exactly tables.code_key_sql), and the "still redeemed" check reads orders by a key."""
    ids = customer_ids(shop)
    with shop.begin() as conn:
        conn.execute(redemptions.ORDERS.insert(), [
            dict(external_id=f"B-{i}", customer_id=ids["C1"], created_at=SENT,
                 local_date=SENT.date(), status="paid", total_cents=1000,
                 discount_code=f"x-{i % 500}" if i % 10 == 0 else None)
            for i in range(20_000)])
    with shop.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")  # the planner sees a shop, not an empty table

    statements = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    with shop.begin() as conn:
        event.listen(conn, "before_cursor_execute", record)
        redemptions.refresh(conn, {redemptions.code_key("back-7kq4xt-9mwa3c")})
        event.remove(conn, "before_cursor_execute", record)
    plans = {}
    with shop.connect() as conn:
        sqlite = shop.dialect.name == "sqlite"
        for statement, parameters in statements:
            if "FROM orders" in statement:
                found = conn.exec_driver_sql(
                    ("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + statement, parameters)
                plans["ranked" if "row_number" in statement else "still"] = "\n".join(
                    str(row[-1] if sqlite else row[0]) for row in found)
    assert "ix_orders_discount_key" in plans["ranked"], plans["ranked"]
    assert "SCAN orders" not in plans["ranked"] and "Seq Scan on orders" not in plans["ranked"]
    assert re.search(r"orders USING INTEGER PRIMARY KEY|orders_pkey|ix_orders_discount_key",
                     plans["still"]), plans["still"]
