"""Benchmark: ``retain report`` on a large shop, SQLite and PostgreSQL.

Generates a shop in SQL (no rows through Python): customers, orders (as bench/_shopgen.py makes
them: skewed frequency, 8 % cancelled or refunded), and a winback ledger over a quarter of the
customers, sent over 60 days with a 10 % holdout, a coupon per sent delivery, and one order in
seven carrying a coupon's code (typed in lower case). Then times the redemption refresh an
import runs (``redemptions.refresh``) and the whole report (``results.build``), with the peak
resident memory of the measuring process (a child of its own, so the generator's cache does not
count). Memory should stay flat as the shop grows: the report reads aggregates, never a row per
customer. Figures are printed, never asserted; the target is under
10 s for 1 M customers and 10 M orders.

    python bench/report.py                                  # 20,000 customers, SQLite
    python bench/report.py --customers 1000000              # 1 M customers, 10 M orders
    python bench/report.py --postgres postgresql+psycopg://...   # the same on PostgreSQL
                                                            # (a throwaway database: emptied)
    python bench/report.py --customers 1000000 --no-sqlite --postgres URL   # PostgreSQL only
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from _shopgen import NOW, generate, generate_postgres  # noqa: E402
from segments import peak_mb, timed  # noqa: E402
from sqlalchemy import text  # noqa: E402

from engine import config, db  # noqa: E402
from engine.shop import redemptions  # noqa: E402
from engine.views import results  # noqa: E402

MULTS = [2654435761, 2246822519, 3266489917, 668265263, 374761393, 1181783497]


def h(n: str, k: int) -> str:
    return f"((({n}) * {MULTS[k]}) % 4294967296)"


def ledger_sql(dialect: str, customers: int) -> list[str]:
    """Deliveries for every 4th customer, a coupon per sent one, codes on some orders."""
    epoch = int(NOW.timestamp())
    enum = "" if dialect == "sqlite" else "::{}"
    if dialect == "sqlite":
        def moment(expr: str) -> str:
            return f"datetime({expr}, 'unixepoch') || '.000000'"
        code = "printf('WB-%08d-%06d', d.id, d.customer_id)"
        typed = "lower(printf('wb%08d%06d', d.id, d.customer_id))"
    else:
        def moment(expr: str) -> str:
            return f"to_timestamp({expr}) AT TIME ZONE 'UTC'"
        code = "'WB-' || lpad(d.id::text, 8, '0') || '-' || lpad(d.customer_id::text, 6, '0')"
        typed = "lower('wb' || lpad(d.id::text, 8, '0') || lpad(d.customer_id::text, 6, '0'))"
    planned = f"{epoch} - 86400 * (30 + {h('c.id', 0)} % 60)"
    return [
        f"""INSERT INTO deliveries (campaign_id, customer_id, occasion, status, priority,
                payload, attempts, planned_at, sent_at)
            SELECT 'winback', c.id,
                   CASE {h('c.id', 1)} % 3 WHEN 0 THEN 'drowsy' WHEN 1 THEN 'half_asleep'
                        ELSE 'sleeping' END || ':' || c.id,
                   CASE WHEN {h('c.id', 2)} % 10 = 0 THEN 'held_out' ELSE 'sent' END
                   {enum.format('deliverystatus')}, 0, '{{}}', 1, {moment(planned)},
                   CASE WHEN {h('c.id', 2)} % 10 = 0 THEN NULL ELSE {moment(planned)} END
            FROM customers c WHERE c.id % 4 = 0""",
        f"""INSERT INTO coupons (code, kind, campaign_id, customer_id, delivery_id, percent_off,
                min_spend_cents, issued_at, expires_at)
            SELECT {code}, 'coupon'{enum.format('offerkind')}, 'winback', d.customer_id, d.id,
                   15, 0, d.sent_at, NULL
            FROM deliveries d WHERE d.status = 'sent'""",
        # One order in seven of a mailed customer's carries the code (UPDATE ... FROM: one
        # join, where a correlated subquery would scan the ledger once an order on PostgreSQL).
        f"""UPDATE orders SET discount_code = {typed}
            FROM deliveries d WHERE d.customer_id = orders.customer_id AND d.status = 'sent'
            AND orders.id % 7 = 0 AND orders.customer_id % 4 = 0""",
    ]


def postgres_shop(url: str, customers: int, per_customer: int) -> None:
    """The same shop (bench/_shopgen.py) and ledger in an emptied PostgreSQL database."""
    generate_postgres(url, customers, per_customer)
    engine = db.connect(url)
    with engine.begin() as conn:
        for statement in ledger_sql("postgresql", customers):
            conn.execute(text(statement))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()


def sqlite_shop(path: Path, customers: int, per_customer: int) -> None:
    generate(path, customers, per_customer)
    engine = db.connect(f"sqlite:///{path}")
    with engine.begin() as conn:
        for statement in ledger_sql("sqlite", customers):
            conn.exec_driver_sql(statement)
    engine.dispose()


def measure(url: str) -> None:
    settings = config.load(ROOT / "config.yaml", database_url=url, environ={})
    engine = db.connect(url)
    print(f"baseline after imports and connect{'':<10} peak {peak_mb():6.0f} MB")
    with timed("redemptions.refresh (first: every coupon)"), engine.begin() as conn:
        changed = redemptions.refresh(conn)
    print(f"  coupons redeemed or changed: {changed:,}")
    with timed("redemptions.refresh (again: nothing new)"), engine.begin() as conn:
        redemptions.refresh(conn)
    with engine.connect() as conn:
        some = set(conn.execute(text("SELECT code_key FROM coupons LIMIT 100")).scalars())
    with timed("redemptions.refresh (100 codes: an import's)"), engine.begin() as conn:
        redemptions.refresh(conn, some)
    with timed("results.build (the whole report)"):
        report = results.build(engine, settings, NOW + timedelta(days=1))
    winback = report.as_dict()["campaigns"][0]
    print(f"  sent {winback['sent']:,}, held out {winback['held_out']:,}, redeemed "
          f"{winback['coupons_redeemed']:,}, attributed {winback['attributed_orders']:,} "
          f"orders, conversion {winback['conversion']['mailed']:.3f} vs "
          f"{winback['conversion']['holdout']:.3f}")
    engine.dispose()


def measure_apart(url: str) -> None:
    """``measure`` in a fresh process, so its peak memory is the report's own."""
    subprocess.run([sys.executable, __file__, "--measure", url], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--orders-per-customer", type=int, default=10)
    parser.add_argument("--db", type=Path, help="SQLite file (default bench/report-<N>.db)")
    parser.add_argument("--postgres", metavar="URL",
                        help="also run on this PostgreSQL database (emptied first)")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--measure", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure)
        print(f"peak resident memory of the report's process: {peak_mb():.0f} MB", flush=True)
        return
    n, per = args.customers, args.orders_per_customer
    if not args.no_sqlite:
        path = args.db or Path(__file__).with_name(f"report-{n}.db")
        print(f"== SQLite: {n:,} customers, {n * per:,} orders", flush=True)
        sqlite_shop(path, n, per)
        measure_apart(f"sqlite:///{path}")
    if args.postgres:
        print(f"== PostgreSQL: {n:,} customers, {n * per:,} orders", flush=True)
        started = time.perf_counter()
        postgres_shop(args.postgres, n, per)
        print(f"  generated in {time.perf_counter() - started:.1f} s", flush=True)
        measure_apart(args.postgres)


if __name__ == "__main__":
    main()
