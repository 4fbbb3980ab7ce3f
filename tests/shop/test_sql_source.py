"""The SQL source against a shop database that is not ours (a second database on the test
PostgreSQL server, and a SQLite file): rows read since a watermark, changes between two syncs
applied, deleted customers forgotten, and nothing ever written to the shop's database."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    create_engine,
    func,
    select,
)

from engine import tables
from engine.consent import erasure, suppressions
from engine.shop import sources
from engine.shop.sources import syncstate
from tests.conftest import BACKENDS
from tests.sourcedata import with_sources

SHOP = MetaData()
# A shop schema that is not ours: its own names, naive timestamps, money as numeric(12,4).
PEOPLE = Table("shop_people", SHOP, Column("pid", Integer, primary_key=True),
               Column("mail", String), Column("given_name", String),
               Column("newsletter", Boolean), Column("signed_up", DateTime),
               Column("is_deleted", Boolean, default=False), Column("modified", DateTime))
SALES = Table("shop_sales", SHOP, Column("sid", Integer, primary_key=True),
              Column("pid", Integer), Column("placed", DateTime),
              Column("grand_total", Numeric(12, 4)), Column("state", String),
              Column("modified", DateTime))
LINES = Table("shop_sale_lines", SHOP, Column("lid", Integer, primary_key=True),
              Column("sid", Integer), Column("sku", String), Column("qty", Integer),
              Column("price", Numeric(12, 4)))
QUERIES = """
    queries:
      customers: >-
        SELECT 'P' || pid AS customer_id, mail AS email, given_name AS first_name,
        newsletter AS accepts_marketing, signed_up AS created_at, is_deleted AS deleted,
        modified AS updated_at FROM shop_people WHERE modified > :since
      orders: >-
        SELECT 'S' || s.sid AS order_id, 'P' || s.pid AS customer_id, s.placed AS created_at,
        s.grand_total AS total, s.state AS status, l.sku, l.qty AS quantity,
        l.price AS unit_price, s.modified AS updated_at
        FROM shop_sales s JOIN shop_sale_lines l ON l.sid = s.sid WHERE s.modified > :since
"""
T0 = datetime(2026, 6, 10, 9, 0)          # the shop's naive local times (Europe/Paris)
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def shop_url(request, tmp_path):
    """A shop database: a second database on the test PostgreSQL server, or a SQLite file."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shop.db'}"
        return
    base = os.environ.get("RETAIN_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("set RETAIN_TEST_POSTGRES_URL to run the SQL source on PostgreSQL")
    name = f"shop_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    yield base.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture
def shop(shop_url):
    db = create_engine(shop_url)
    SHOP.create_all(db)
    with db.begin() as conn:
        conn.execute(PEOPLE.insert(), [
            dict(pid=1, mail="anna@example.com", given_name="Anna", newsletter=True,
                 signed_up=T0 - timedelta(days=300), is_deleted=False, modified=T0),
            dict(pid=2, mail="bob@example.com", given_name="Bob", newsletter=False,
                 signed_up=T0 - timedelta(days=200), is_deleted=False, modified=T0)])
        conn.execute(SALES.insert(), [
            dict(sid=10, pid=1, placed=T0, grand_total=Decimal("67.0000"), state="complete",
                 modified=T0),
            dict(sid=11, pid=2, placed=T0, grand_total=Decimal("20.0000"), state="processing",
                 modified=T0 + timedelta(minutes=1))])
        conn.execute(LINES.insert(), [
            dict(lid=1, sid=10, sku="LS-S", qty=1, price=Decimal("49.0000")),
            dict(lid=2, sid=10, sku="CANDLE-1", qty=1, price=Decimal("18.0000")),
            dict(lid=3, sid=11, sku="CANDLE-2", qty=1, price=Decimal("20.0000"))])
    yield db
    db.dispose()


def settings_for(config_path, url: str, queries: str = QUERIES):
    return with_sources(config_path, f"  - name: shop-db\n    kind: sql\n    url: {url}\n"
                        + queries)


def ours(engine):
    with engine.connect() as conn:
        orders = {r.external_id: r for r in conn.execute(select(tables.Order.__table__))}
        items = conn.execute(select(func.count()).select_from(
            tables.OrderItem.__table__)).scalar()
        people = {r.external_id: r for r in conn.execute(select(tables.Customer.__table__))}
    return orders, items, people


def test_rows_changed_between_two_syncs_are_applied(engine, config_path, shop, shop_url):
    settings = settings_for(config_path, shop_url)
    (first,) = sources.sync(engine, settings, NOW, forget=erasure.forget)
    assert first.error is None, first.error
    orders, items, people = ours(engine)
    assert set(orders) == {"S10", "S11"} and items == 3 and orders["S10"].total_cents == 6700
    # Naive shop times are the store's (Paris): 09:00 there is 07:00 UTC.
    assert orders["S10"].created_at == datetime(2026, 6, 10, 7, 0, tzinfo=UTC)
    state = syncstate.read(engine)["shop-db"]
    assert state.last_success_at == NOW and state.rows_applied == first.applied == 4
    assert state.watermark["orders"].startswith("2026-06-10T07:01")

    # Between the two syncs the shop refunds S10, takes a new order, and deletes Anna.
    later = T0 + timedelta(days=1)
    with shop.begin() as conn:
        conn.execute(SALES.update().where(SALES.c.sid == 10).values(state="refunded",
                                                                    modified=later))
        conn.execute(SALES.insert().values(sid=12, pid=2, placed=later,
                                           grand_total=Decimal("35.5000"), state="complete",
                                           modified=later))
        conn.execute(LINES.insert().values(lid=4, sid=12, sku="LS-S", qty=1,
                                           price=Decimal("35.5000")))
        conn.execute(PEOPLE.update().where(PEOPLE.c.pid == 1).values(is_deleted=True,
                                                                     modified=later))
    (second,) = sources.sync(engine, settings, NOW + timedelta(hours=1), forget=erasure.forget)
    assert second.error is None, second.error
    # Rows within `overlap` (5 min) of the watermark are read again and change nothing.
    assert second.notes[0] == "customers: 1 rows read, 0 new, 0 updated, 1 forgotten"
    assert second.notes[1] == "orders: 4 rows read, 1 new, 1 updated"
    orders, items, people = ours(engine)
    assert orders["S10"].status == "refunded" and orders["S12"].total_cents == 3550
    assert people["P1"].email == "" and people["P1"].first_name == ""
    with engine.connect() as conn:
        assert suppressions.is_suppressed(conn, "anna@example.com")

    # A third sync with nothing new still answers: the data is fresh, nothing is applied.
    (third,) = sources.sync(engine, settings, NOW + timedelta(hours=2), forget=erasure.forget)
    assert third.applied == 0 and third.error is None
    assert syncstate.read(engine)["shop-db"].last_success_at == NOW + timedelta(hours=2)


def test_the_shop_database_is_only_read(engine, config_path, shop, shop_url):
    if shop.dialect.name == "sqlite":
        pytest.skip("a SELECT cannot write on SQLite (the sync sets query_only all the same)")
    with shop.begin() as conn:
        conn.exec_driver_sql("CREATE SEQUENCE shop_counter")
    # A query that would write (a sequence bumps even in a plain SELECT) is refused.
    sneaky = QUERIES.replace("s.modified AS updated_at",
                             "s.modified AS updated_at, nextval('shop_counter') AS n")
    (result,) = sources.sync(engine, settings_for(config_path, shop_url, sneaky), NOW,
                             forget=erasure.forget)
    assert "read-only transaction" in result.error
    with shop.connect() as conn:
        assert conn.exec_driver_sql("SELECT last_value, is_called FROM shop_counter"
                                    ).one() == (1, False)


def test_a_bad_row_names_the_query_and_row_and_an_outage_hides_the_password(
        engine, config_path, shop, shop_url):
    with shop.begin() as conn:
        conn.execute(SALES.update().where(SALES.c.sid == 11).values(state="lost in the post"))
    settings = settings_for(config_path, shop_url)
    (result,) = sources.sync(engine, settings, NOW, forget=erasure.forget)
    assert result.error.startswith('source "shop-db", orders query: result row 3: column '
                                   "'status'")
    assert ours(engine)[0] == {}                               # the kind is all or nothing
    assert syncstate.read(engine)["shop-db"].last_success_at is None
    down = settings_for(config_path, "postgresql+psycopg://shop:s3cr3t-pw@127.0.0.1:9/shop")
    (failed,) = sources.sync(engine, down, NOW, forget=erasure.forget)
    assert failed.error and "s3cr3t-pw" not in failed.error
