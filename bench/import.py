"""Import speed at scale: a generic orders CSV of N rows (one row per line item) and its customers.

Generates the files in a temporary folder, imports customers then orders into a fresh SQLite
file (or, with ``--db URL``, a PostgreSQL database it empties first), and prints rows per second
and the process's peak memory. ``--twice`` imports the orders again to time an idempotent
re-import (everything unchanged).

    .venv/bin/python bench/import.py --rows 1000000 --twice
    .venv/bin/python bench/import.py --rows 10000000 --customers 1000000 --items 1  # 10 M orders
"""

from __future__ import annotations

import argparse
import csv
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import config, db  # noqa: E402
from engine.shop import importer  # noqa: E402

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
SKUS = [f"SKU-{n:04d}" for n in range(500)]


def write_customers(path: Path, count: int) -> None:
    with path.open("w", newline="") as file:
        out = csv.writer(file)
        out.writerow(["customer_id", "email", "first_name", "last_name", "accepts_marketing",
                      "created_at", "country", "tags"])
        for n in range(count):
            out.writerow([f"C{n}", f"customer{n}@example.com", "Ann", f"Test{n}",
                          "yes" if n % 3 else "no", "2023-01-01T10:00:00+01:00", "FR",
                          "vip" if n % 10 == 0 else ""])


def write_orders(path: Path, rows: int, customers: int, rng: random.Random,
                 most_items: int = 3) -> None:
    """One row per line item, the order repeated on each of its 1–``most_items`` rows."""
    start = datetime(2023, 1, 1, tzinfo=UTC)
    with path.open("w", newline="") as file:
        out = csv.writer(file)
        out.writerow(["order_id", "customer_id", "created_at", "total", "status", "currency",
                      "sku", "quantity", "unit_price"])
        written, order = 0, 0
        while written < rows:
            order += 1
            items = min(rng.randint(1, most_items), rows - written)
            created = (start + timedelta(minutes=order * 1.3)).isoformat(timespec="seconds")
            prices = [rng.randint(500, 9000) for _ in range(items)]
            total = f"{sum(prices) / 100:.2f}"
            customer = f"C{rng.randrange(customers)}"
            status = "refunded" if order % 50 == 0 else "paid"
            for price in prices:
                out.writerow([f"O{order}", customer, created, total, status, "EUR",
                              rng.choice(SKUS), 1, f"{price / 100:.2f}"])
            written += items


def timed(engine, settings, kind: str, path: Path) -> None:
    started, cpu = time.perf_counter(), time.process_time()
    result = importer.import_file(engine, settings, kind, path, now=NOW)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"{kind:9} {result.summary()}")
    # CPU time too: on a shared machine the wall clock also measures the neighbours.
    print(f"{'':9} {seconds:.1f} s wall ({result.rows / seconds:,.0f} rows/s), "
          f"{cpu:.1f} s CPU ({result.rows / cpu:,.0f} rows/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="order rows (line items)")
    parser.add_argument("--customers", type=int, help="customers (default: rows / 5)")
    parser.add_argument("--items", type=int, default=3,
                        help="most line items an order (1: one row an order)")
    parser.add_argument("--twice", action="store_true", help="re-import the orders file")
    parser.add_argument("--db", help="a throwaway PostgreSQL URL instead of a SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        customers = args.customers or max(1, args.rows // 5)
        started = time.perf_counter()
        write_customers(base / "customers.csv", customers)
        write_orders(base / "orders.csv", args.rows, customers, random.Random(7), args.items)
        size = (base / "orders.csv").stat().st_size / 1e6
        print(f"generated {customers:,} customers and {args.rows:,} order rows ({size:.0f} MB) "
              f"in {time.perf_counter() - started:.1f} s")
        text = (ROOT / "config.yaml").read_text()
        (base / "config.yaml").write_text(text.replace("sqlite:///retain.db",
                                                       "sqlite:///bench.db"))
        settings = config.load(base / "config.yaml", environ={})
        engine = db.connect(args.db or settings.database.url, check_revision=not args.db)
        if args.db:  # a throwaway database: start from an empty schema
            with engine.begin() as conn:
                conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
            db.create_schema(engine)
        timed(engine, settings, "customers", base / "customers.csv")
        timed(engine, settings, "orders", base / "orders.csv")
        if args.twice:
            timed(engine, settings, "orders", base / "orders.csv")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        print(f"peak memory (ru_maxrss): {peak:.0f} MiB")
        engine.dispose()


if __name__ == "__main__":
    main()
