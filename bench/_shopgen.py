"""Generate a large synthetic shop in a SQLite file, fast, for the benchmarks.

All rows are made inside SQLite by ``INSERT ... SELECT`` over a recursive counter, so Python
never holds them: 1 M customers and 10 M orders take a few minutes. Every attribute is a
multiplicative hash of the row number (no random()), so the same arguments give the same shop.
Indexes are dropped during the load and rebuilt once at the end (a sort beats 10 M b-tree
inserts). Run it directly or let bench/segments.py call it:

    python bench/_shopgen.py --db bench/shop.db --customers 1000000 --orders-per-customer 10
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy.dialects import sqlite  # noqa: E402
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

    step("products", "INSERT INTO products "
         "(sku, name, category, price_cents, url, image_url, created_at) "
         + " UNION ALL ".join(
             f"SELECT printf('SKU-%04d', {k}), 'Product {k}', '{CATEGORIES[k % 10]}', "
             f"{1500 + 100 * k}, '', '', '2024-01-01 00:00:00.000000'" for k in range(PRODUCTS)))
    step(f"customers ({customers:,})", customers_sql(customers, now_epoch))
    step(f"orders ({customers * orders_per_customer:,})",
         orders_sql(customers * orders_per_customer, customers, now_epoch))
    step("order items (one an order)",
         f"INSERT INTO order_items (id, order_id, sku, quantity, unit_price_cents) "
         f"SELECT id, id, printf('SKU-%04d', {h('id', 7)} % {PRODUCTS}), 1, total_cents "
         f"FROM orders")
    for index in INDEXES:
        step(f"index {index.name}", str(CreateIndex(index).compile(dialect=sqlite.dialect())))
    # No ANALYZE: the planner sees what it sees in a shop imported by `retain import`.
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('data_version', '1')")
    conn.close()
    print(f"  generated in {time.perf_counter() - started:.1f} s: {path} "
          f"({path.stat().st_size / 1e9:.2f} GB)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--orders-per-customer", type=int, default=10)
    args = parser.parse_args()
    generate(args.db, args.customers, args.orders_per_customer)


if __name__ == "__main__":
    main()
