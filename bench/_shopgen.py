"""Generate a large synthetic shop, fast, for the benchmarks: a SQLite file or PostgreSQL.

All rows are made inside the database by ``INSERT ... SELECT`` over a counter (SQLite's
recursive CTE, PostgreSQL's generate_series), so Python never holds them: 1 M customers and
10 M orders take a minute or two. Every attribute is a multiplicative hash of the row number (no
random()), so the same arguments give the same shop on either database. Indexes are dropped
during the load and rebuilt once at the end (a sort beats 10 M b-tree inserts).

The shop: 503 products (ten of them new in the last ten days, and the yoga set of the shipped
bundles campaign), customers signed up 2 to 5 years ago (70 % accept marketing, 5 % tagged
vip), orders with a skewed frequency and a churn offset per customer (8 % cancelled or
refunded), one line item an order and a second one on every fourth (so the bundles campaign
has pairs to mine; one line in fifty is a yoga product). Run it directly or let bench/
segments.py, report.py and scale.py call it:

    python bench/_shopgen.py --db bench/shop.db --customers 1000000 --orders-per-customer 10
    python bench/_shopgen.py --postgres postgresql+psycopg://... --customers 1000000  # emptied
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.dialects import postgresql, sqlite  # noqa: E402
from sqlalchemy.schema import CreateIndex  # noqa: E402

from engine import db, tables  # noqa: E402 - after the path fix: runs from a checkout

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
CATEGORIES = ["shoes", "bags", "kitchen", "garden", "books", "toys", "beauty", "sport", "home",
              "music"]
COUNTRIES = ["FR", "DE", "BE", "ES", "IT"]
PRODUCTS = 500
# Dropped during the load and rebuilt after, exactly as tables.py declares them.
INDEXES = [*tables.Order.__table__.indexes, *tables.OrderItem.__table__.indexes]

# h(n, k): a well-spread 32-bit hash of row n for attribute k (Knuth's multiplicative method).
_H = "((({n}) * {mult}) % 4294967296)"
MULTS = [2654435761, 2246822519, 3266489917, 668265263, 374761393, 1181783497, 1597334677,
         2869860233]


def h(n: str, k: int) -> str:
    return _H.format(n=n, mult=MULTS[k])


def products() -> list[dict]:
    """The catalogue: SKU-0000..0499 (the last ten new, one a day), and the yoga set."""
    old = datetime(2024, 1, 1, tzinfo=UTC)
    rows = [{"sku": f"SKU-{k:04d}", "name": f"Product {k}", "category": CATEGORIES[k % 10],
             "price_cents": 1500 + 100 * k,
             "created_at": NOW - timedelta(days=PRODUCTS - k) if k >= PRODUCTS - 10 else old}
            for k in range(PRODUCTS)]
    rows += [{"sku": sku, "name": name, "category": "sport", "price_cents": cents,
              "created_at": old}
             for sku, name, cents in (("YOGA-001", "Yoga mat", 4900),
                                      ("YOGA-002", "Yoga strap", 1290),
                                      ("YOGA-003", "Cork yoga block", 1890))]
    return rows


def items_sql(dialect: str, orders: int) -> list[str]:
    """One line an order, and a second line on every fourth order (ids after the firsts)."""
    def sku(n: str, k: int) -> str:
        # One line in fifty a yoga product, the others spread over the catalogue.
        pick = f"{h(n, k)} % {PRODUCTS}"
        padded = (f"substr('0000' || ({pick}), -4, 4)" if dialect == "sqlite"
                  else f"lpad(({pick})::text, 4, '0')")
        return (f"CASE WHEN {h(n, k)} % 50 = 0 THEN 'YOGA-00' || (1 + {h(n, 3)} % 3) "
                f"ELSE 'SKU-' || {padded} END")

    n = "id" if dialect == "sqlite" else "id::bigint"  # a hash overflows PostgreSQL's integer
    return [f"INSERT INTO order_items (id, order_id, sku, quantity, unit_price_cents) "
            f"SELECT id, id, {sku(n, 7)}, 1, total_cents FROM orders",
            f"INSERT INTO order_items (id, order_id, sku, quantity, unit_price_cents) "
            f"SELECT {orders} + id, id, {sku(n, 4)}, 1, 1500 + {h(n, 1)} % 5000 "
            f"FROM orders WHERE {h(n, 6)} % 4 = 0"]


def customers_sql(count: int, now_epoch: int) -> str:
    # Signed up between 2 and 5 years ago; 70 % accept marketing; 5 % carry the vip tag.
    return f"""
    WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {count})
    INSERT INTO customers (id, external_id, email, email_key, first_name, last_name,
                           accepts_marketing, country, tags, created_at)
    SELECT n, printf('c%09d', n), printf('c%09d@example.com', n), printf('c%09d@example.com', n),
           'Customer', printf('%d', n), {h('n', 0)} % 10 < 7,
           CASE {h('n', 1)} % 5 {' '.join(f"WHEN {i} THEN '{c}'" for i, c in
                                           enumerate(COUNTRIES))} END,
           CASE WHEN {h('n', 2)} % 20 = 0 THEN 'vip' ELSE '' END,
           datetime({now_epoch} - 63072000 - {h('n', 3)} % 94608000, 'unixepoch') || '.000000'
    FROM seq
    """


def orders_sql(count: int, customers: int, now_epoch: int) -> str:
    # 60 % of orders go to any of the first 90 % of customers, 40 % to the first 18 %: a
    # skewed frequency, and the last 10 % are prospects. Each customer has a churn offset
    # (0-299 days) before which they stopped ordering, so recency and dormancy spread out.
    buyers, top = max(customers * 9 // 10, 1), max(customers * 18 // 100, 1)
    return f"""
    WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {count}),
    picked AS (
      SELECT n, CASE WHEN {h('n', 0)} % 10 < 6 THEN 1 + ({h('n', 1)} % {buyers})
                     ELSE 1 + ({h('n', 1)} % {top}) END AS cid
      FROM seq),
    dated AS (
      SELECT n, cid, {now_epoch} - 86400 * ({h('cid', 6)} % 300 + {h('n', 3)} % 365)
                     - {h('n', 4)} % 86400 AS epoch
      FROM picked)
    INSERT INTO orders (id, external_id, customer_id, created_at, local_date, status,
                        total_cents, currency)
    SELECT n, printf('o%010d', n), cid, datetime(epoch, 'unixepoch') || '.000000',
           date(epoch + 7200, 'unixepoch'),
           CASE WHEN {h('n', 5)} % 100 < 3 THEN 'cancelled'
                WHEN {h('n', 5)} % 100 < 8 THEN 'refunded' ELSE 'paid' END,
           1500 + {h('n', 2)} % 20000, 'EUR'
    FROM dated
    """


def generate(path: Path, customers: int, orders_per_customer: int) -> None:
    started = time.perf_counter()
    if path.exists():
        path.unlink()
    engine = db.connect(f"sqlite:///{path}")  # the engine's own schema
    engine.dispose()
    now_epoch = int(NOW.timestamp())
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; "
                       "PRAGMA cache_size=-262144; PRAGMA temp_store=FILE;")
    for index in INDEXES:
        conn.execute(f"DROP INDEX IF EXISTS {index.name}")

    def step(label: str, sql: str) -> None:
        t = time.perf_counter()
        conn.execute("BEGIN")
        conn.execute(sql)
        conn.execute("COMMIT")
        print(f"  {label:<28} {time.perf_counter() - t:7.1f} s", flush=True)

    t = time.perf_counter()
    conn.executemany(
        "INSERT INTO products (sku, name, category, price_cents, url, image_url, created_at) "
        "VALUES (?, ?, ?, ?, '', '', ?)",
        [(p["sku"], p["name"], p["category"], p["price_cents"],
          p["created_at"].strftime("%Y-%m-%d %H:%M:%S.%f")) for p in products()])
    print(f"  {'products':<28} {time.perf_counter() - t:7.1f} s", flush=True)
    step(f"customers ({customers:,})", customers_sql(customers, now_epoch))
    step(f"orders ({customers * orders_per_customer:,})",
         orders_sql(customers * orders_per_customer, customers, now_epoch))
    first, second = items_sql("sqlite", customers * orders_per_customer)
    step("order items (one an order)", first)
    step("order items (every fourth a 2nd)", second)
    for index in INDEXES:
        step(f"index {index.name}", str(CreateIndex(index).compile(dialect=sqlite.dialect())))
    # No ANALYZE: the planner sees what it sees in a shop imported by `retain import`.
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('data_version', '1')")
    conn.close()
    print(f"  generated in {time.perf_counter() - started:.1f} s: {path} "
          f"({path.stat().st_size / 1e9:.2f} GB)", flush=True)


def generate_postgres(url: str, customers: int, orders_per_customer: int) -> None:
    """The same shop in an emptied PostgreSQL database, at the engine's schema revision."""
    started = time.perf_counter()
    engine = db.connect(url, check_revision=False)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    engine.dispose()
    engine = db.connect(url)  # the engine's own schema, at its revision
    epoch = int(NOW.timestamp())
    orders = customers * orders_per_customer
    buyers, top = max(customers * 9 // 10, 1), max(customers * 18 // 100, 1)
    countries = " ".join(f"WHEN {i} THEN '{c}'" for i, c in enumerate(COUNTRIES))
    statements = [
        ("customers", f"""
            INSERT INTO customers (id, external_id, email, email_key, first_name, last_name,
                                   accepts_marketing, country, tags, created_at)
            SELECT n, 'c' || lpad(n::text, 9, '0'), 'c' || lpad(n::text, 9, '0') || '@example.com',
                   'c' || lpad(n::text, 9, '0') || '@example.com', 'Customer', n::text,
                   {h('n', 0)} % 10 < 7, CASE {h('n', 1)} % 5 {countries} END,
                   CASE WHEN {h('n', 2)} % 20 = 0 THEN 'vip' ELSE '' END,
                   to_timestamp({epoch} - 63072000 - {h('n', 3)} % 94608000) AT TIME ZONE 'UTC'
            FROM generate_series(1::bigint, {customers}) n"""),
        ("orders", f"""
            INSERT INTO orders (id, external_id, customer_id, created_at, local_date, status,
                                total_cents, currency)
            SELECT n, 'o' || lpad(n::text, 10, '0'), cid, to_timestamp(epoch) AT TIME ZONE 'UTC',
                   (to_timestamp(epoch + 7200) AT TIME ZONE 'UTC')::date,
                   CASE WHEN {h('n', 5)} % 100 < 3 THEN 'cancelled'
                        WHEN {h('n', 5)} % 100 < 8 THEN 'refunded' ELSE 'paid' END::orderstatus,
                   1500 + {h('n', 2)} % 20000, 'EUR'
            FROM (SELECT n, cid, {epoch} - 86400 * ({h('cid', 6)} % 300 + {h('n', 3)} % 365)
                                 - {h('n', 4)} % 86400 AS epoch
                  FROM (SELECT n, CASE WHEN {h('n', 0)} % 10 < 6
                                       THEN 1 + ({h('n', 1)} % {buyers})
                                       ELSE 1 + ({h('n', 1)} % {top}) END AS cid
                        FROM generate_series(1::bigint, {orders}) n) picked) dated"""),
    ]
    first, second = items_sql("postgresql", orders)
    statements += [("order items (one an order)", first),
                   ("order items (every fourth a 2nd)", second)]
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO products (sku, name, category, price_cents, url, image_url, created_at) "
            "VALUES (:sku, :name, :category, :price_cents, '', '', :created_at)"), products())
        for index in INDEXES:
            conn.exec_driver_sql(f"DROP INDEX IF EXISTS {index.name}")
        for label, sql in statements:
            t = time.perf_counter()
            conn.execute(text(sql))  # text(): psycopg would read a bare % as a placeholder
            print(f"  {label:<28} {time.perf_counter() - t:7.1f} s", flush=True)
        for index in INDEXES:
            t = time.perf_counter()
            conn.exec_driver_sql(str(CreateIndex(index).compile(dialect=postgresql.dialect())))
            print(f"  index {index.name:<22} {time.perf_counter() - t:7.1f} s", flush=True)
        for table in ("customers", "orders", "order_items", "products"):
            conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                 f"(SELECT max(id) FROM {table}))")
        conn.exec_driver_sql("INSERT INTO meta (key, value) VALUES ('data_version', '1') "
                             "ON CONFLICT (key) DO UPDATE SET value = '1'")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()
    print(f"  generated in {time.perf_counter() - started:.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, help="the SQLite file to make")
    parser.add_argument("--postgres", metavar="URL", help="a throwaway PostgreSQL database")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--orders-per-customer", type=int, default=10)
    args = parser.parse_args()
    if args.postgres:
        generate_postgres(args.postgres, args.customers, args.orders_per_customer)
    else:
        generate(args.db, args.customers, args.orders_per_customer)


if __name__ == "__main__":
    main()
