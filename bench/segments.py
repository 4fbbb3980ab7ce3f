"""Benchmark: customer metrics and segment queries on a large synthetic shop (SQLite).

Generates the shop once (bench/_shopgen.py, in a child process so its cache does not count in
this process's memory), then prints the time of ``metrics.refresh`` (a full rebuild, then the
cached paths), of segment counts, and of streaming an audience, with the peak resident memory
(ru_maxrss) after each step. Memory should stay flat as the shop grows. Figures are printed,
never asserted.

    python bench/segments.py --customers 100000
    python bench/segments.py --customers 1000000 --db /tmp/shop-1m.db
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from _shopgen import NOW  # noqa: E402 - the generator's fixed "today"
from sqlalchemy import func, select, text  # noqa: E402

from engine import config, db, tables, yamlfile  # noqa: E402
from engine.campaigns import planner  # noqa: E402
from engine.shop import metrics, segments  # noqa: E402

FOUR_CONDITIONS = """
all:
  - dormancy: [drowsy, half_asleep]
  - orders: {gte: 2}
  - spent: {between: [100, 2000]}
  - accepts_marketing: true
"""
WITH_ORDER_SUBQUERIES = """
all:
  - accepts_marketing: true
  - bought_category: shoes
  - spent_in_last_days: {days: 90, gte: 150}
  - not: {tag: vip}
"""


def peak_mb() -> float:
    """This process's peak resident memory. On Linux, VmHWM: ru_maxrss also keeps the peak of
    the process that started this one (a child of bench/report.py's generator read 504 MB
    before doing anything, 192 MB when started from a shell)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


@contextmanager
def timed(label: str):
    started = time.perf_counter()
    yield
    print(f"{label:<48} {time.perf_counter() - started:8.2f} s   peak {peak_mb():6.0f} MB",
          flush=True)


def ensure_shop(path: Path, customers: int, orders_per_customer: int) -> None:
    """Generate the shop unless the file already holds one of this size."""
    if path.exists():
        engine = db.connect(f"sqlite:///{path}")
        with engine.connect() as conn:
            have = conn.execute(select(func.count()).select_from(tables.Customer)).scalar_one()
        engine.dispose()
        if have == customers:
            print(f"reusing {path} ({customers:,} customers)")
            return
    print(f"generating {path}: {customers:,} customers, "
          f"{customers * orders_per_customer:,} orders", flush=True)
    subprocess.run([sys.executable, str(Path(__file__).with_name("_shopgen.py")), "--db",
                    str(path), "--customers", str(customers), "--orders-per-customer",
                    str(orders_per_customer)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--orders-per-customer", type=int, default=10)
    parser.add_argument("--db", type=Path, help="SQLite file (default bench/shop-<N>.db)")
    args = parser.parse_args()
    path = args.db or Path(__file__).with_name(f"shop-{args.customers}.db")
    ensure_shop(path, args.customers, args.orders_per_customer)

    url = f"sqlite:///{path}"
    settings = config.load(ROOT / "config.yaml", database_url=url, environ={})
    engine = db.connect(url)
    print(f"baseline after imports and connect{'':<14} peak {peak_mb():6.0f} MB")
    with engine.begin() as conn:  # force a full rebuild below, even on a reused file
        conn.execute(text("DELETE FROM meta WHERE key = 'metrics_as_of'"))
    with timed("metrics.refresh (full rebuild)"):
        metrics.refresh(engine, settings, NOW)
    with engine.begin() as conn:  # 1,000 new orders of 1,000 customers, the same day
        conn.execute(text(
            "INSERT INTO orders (external_id, customer_id, created_at, local_date, status, "
            "total_cents, currency) SELECT 'late-' || id, id, :at, :day, 'paid', 4200, 'EUR' "
            "FROM customers WHERE id % (SELECT max(1, count(*) / 1000) FROM customers) = 0 "
            "LIMIT 1000"), {"at": (NOW - timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S.%f"),
                            "day": NOW.date().isoformat()})
        db.bump_data_version(conn)
    with timed("metrics.refresh (after 1,000 new orders: incremental)"):
        metrics.refresh(engine, settings, NOW + timedelta(minutes=1))
    with timed("metrics.refresh (same now: cached)"):
        metrics.refresh(engine, settings, NOW + timedelta(minutes=1))
    with timed("metrics.refresh (an hour later, no new orders)"):
        metrics.refresh(engine, settings, NOW + timedelta(hours=1))

    for name, source in (("4-condition segment", FOUR_CONDITIONS),
                       ("segment with order subqueries", WITH_ORDER_SUBQUERIES)):
        segment = segments.parse(yamlfile.parse(source, name), name)
        print(f"-- {name}: {segment.explain()}")
        with timed("  evaluate (count + sample of 10)"):
            result = segments.evaluate(engine, settings, segment, NOW)
        print(f"  count = {result['count']:,}")
        with timed(f"  planner's audience streamed in batches of {planner.BATCH:,}"):
            streamed = sum(len(rows) for rows in planner.audience(engine, segment, NOW))
        assert streamed == result["count"], (streamed, result["count"])

    print("summary:", metrics.summary(engine, settings, NOW))
    print(f"peak resident memory: {peak_mb():.0f} MB")


if __name__ == "__main__":
    main()
