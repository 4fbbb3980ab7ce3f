"""Live shop data at scale: webhook deliveries through `retain serve`, and a large SQL sync.

Webhooks: starts `retain serve` on 127.0.0.1 (its own process, as a shop runs it) over a fresh
SQLite file (or ``--db URL``, a PostgreSQL database it empties first), posts N signed
``orders/create`` deliveries from ``--clients`` threads of this process (each a new order,
customers reused), and prints requests per second, the 50th/99th percentile answer time, and
the server's peak memory; every delivery is stored and applied before its answer. SQL: builds a
shop database that is not ours (a SQLite file, or ``--shop-url``) with M order rows, syncs it
once (``kind: sql``), and prints rows per second and the process's peak memory, which must
stay flat as M grows.

    .venv/bin/python bench/sources.py                       # quick: 2,000 deliveries, 50,000 rows
    .venv/bin/python bench/sources.py --deliveries 100000 --sql-rows 1000000
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from engine import config, db  # noqa: E402
from engine.consent import erasure  # noqa: E402
from engine.shop import sources  # noqa: E402
from engine.shop.sources import shopify  # noqa: E402

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
SECRET = "bench-secret"


def settings_for(folder: Path, url: str, shop_url: str) -> config.Settings:
    text_ = (ROOT / "config.yaml").read_text() + f"""
sources:
  - {{name: shopify, kind: shopify_webhooks, secret: {SECRET}}}
  - name: shop-db
    kind: sql
    url: {shop_url}
    queries:
      customers: SELECT cid AS customer_id, mail AS email, modified AS updated_at
        FROM shop_people WHERE modified > :since
      orders: SELECT sid AS order_id, cid AS customer_id, placed AS created_at,
        grand_total AS total, modified AS updated_at FROM shop_sales WHERE modified > :since
"""
    path = folder / "config.yaml"
    path.write_text(text_)
    return config.load(path, database_url=url, environ={})


def fresh_engine(url: str):
    engine = db.connect(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        db.create_schema(engine)
    return engine


def order(n: int, customers: int) -> bytes:
    created = (NOW - timedelta(minutes=n)).isoformat()
    return json.dumps({
        "id": 5_000_000_000 + n, "name": f"#{100000 + n}", "email": f"c{n % customers}@example.com",
        "created_at": created, "updated_at": created, "financial_status": "paid",
        "currency": "EUR", "current_total_price": "59.80", "total_price": "59.80",
        "discount_codes": [], "customer": {"id": 7_000_000 + n % customers,
                                           "email": f"c{n % customers}@example.com",
                                           "first_name": "Ann", "last_name": f"Test{n}"},
        "line_items": [{"sku": "LS-S", "quantity": 1, "price": "41.80"},
                       {"sku": "CANDLE-1", "quantity": 1, "price": "18.00"}],
        "fulfillments": [], "refunds": []}).encode()


def serve(config_path: Path, url: str) -> tuple[subprocess.Popen, str]:
    """`retain serve` in a process of its own, as a shop runs it; its webhook URL once it
    answers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Its log goes to a file: a pipe nobody reads would stop the server once it filled.
    log = (config_path.parent / "serve.log").open("wb")
    server = subprocess.Popen([str(Path(sys.executable).with_name("retain")), "--config",
                               str(config_path), "--db", url, "serve", "--port", str(port)],
                              stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, f"http://127.0.0.1:{port}/webhooks/shopify"
        except OSError:
            if server.poll() is not None:
                said = (config_path.parent / "serve.log").read_text(errors="replace")
                raise SystemExit(f"retain serve exited: {said[-2000:]}") from None
            time.sleep(0.2)
    server.kill()
    raise SystemExit("retain serve did not start within 60 s")


def peak_of(pid: int) -> float:
    """A live process's peak resident memory (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_webhooks(config_path: Path, url: str, engine, deliveries: int, clients: int) -> None:
    server, url_ = serve(config_path, url)
    customers = max(1, deliveries // 3)
    times: list[float] = []
    lock = threading.Lock()

    def client(worker: int) -> None:
        mine = []
        for n in range(worker, deliveries, clients):
            body = order(n, customers)
            request = urllib.request.Request(url_, data=body, headers={
                "X-Shopify-Topic": "orders/create", "X-Shopify-Webhook-Id": f"bench-{n}",
                "X-Shopify-Hmac-Sha256": shopify.signature(SECRET, body),
                "Content-Type": "application/json"})
            start = time.perf_counter()
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.read() == b"applied\n"
            mine.append(time.perf_counter() - start)
        with lock:
            times.extend(mine)

    began = time.perf_counter()
    threads = [threading.Thread(target=client, args=(w,)) for w in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    peak = peak_of(server.pid)
    server.terminate()
    server.wait(timeout=30)
    with engine.connect() as conn:
        applied = conn.execute(text("SELECT count(*) FROM orders")).scalar()
        receipts = conn.execute(text("SELECT count(*) FROM webhook_receipts "
                                     "WHERE applied_at IS NOT NULL")).scalar()
    cuts = statistics.quantiles(times, n=100)
    print(f"webhooks: {deliveries:,} deliveries from {clients} clients in {elapsed:.1f} s: "
          f"{deliveries / elapsed:,.0f} requests/s; answer p50 {cuts[49] * 1000:.1f} ms, "
          f"p99 {cuts[98] * 1000:.1f} ms, max {max(times) * 1000:.0f} ms; {receipts:,} "
          f"deliveries applied, {applied:,} orders ({engine.dialect.name}); peak memory of "
          f"retain serve {peak:.0f} MiB")


def build_shop(shop_url: str, rows: int) -> None:
    shop = create_engine(shop_url)
    with shop.begin() as conn:
        for table in ("shop_sales", "shop_people"):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        conn.exec_driver_sql("CREATE TABLE shop_people (cid VARCHAR PRIMARY KEY, mail VARCHAR, "
                             "modified TIMESTAMP)")
        conn.exec_driver_sql("CREATE TABLE shop_sales (sid VARCHAR PRIMARY KEY, cid VARCHAR, "
                             "placed TIMESTAMP, grand_total NUMERIC(12, 4), modified TIMESTAMP)")
        people = max(1, rows // 10)
        start = datetime(2023, 1, 1)
        conn.execute(text("INSERT INTO shop_people VALUES (:c, :m, :t)"), [
            {"c": f"P{n}", "m": f"p{n}@example.com", "t": start} for n in range(people)])
        batch = []
        for n in range(rows):
            moment = start + timedelta(seconds=n * 60)
            batch.append({"s": f"S{n}", "c": f"P{n % people}", "p": moment,
                          "g": f"{(n % 9000) / 100 + 5:.4f}", "t": moment})
            if len(batch) == 20_000:
                conn.execute(text("INSERT INTO shop_sales VALUES (:s, :c, :p, :g, :t)"), batch)
                batch = []
        if batch:
            conn.execute(text("INSERT INTO shop_sales VALUES (:s, :c, :p, :g, :t)"), batch)
    shop.dispose()


def bench_sql(settings, engine, shop_url: str, rows: int) -> None:
    build_shop(shop_url, rows)
    began = time.perf_counter()
    (result,) = sources.sync(engine, settings, NOW, ["shop-db"], forget=erasure.forget)
    elapsed = time.perf_counter() - began
    assert result.error is None, result.error
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"sql: {rows} order rows (+ {rows // 10} customers) synced in {elapsed:.1f} s: "
          f"{(rows + rows // 10) / elapsed:,.0f} rows/s; peak memory {peak:.0f} MiB; "
          f"{'; '.join(result.notes)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--sql-rows", type=int, default=50_000)
    parser.add_argument("--db", help="our database URL (default: a fresh SQLite file)")
    parser.add_argument("--shop-url", help="the shop database to build (default: SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="retain-bench-") as folder:
        url = args.db or f"sqlite:///{folder}/retain.db"
        shop_url = args.shop_url or f"sqlite:///{folder}/shop.db"
        settings = settings_for(Path(folder), url, shop_url)
        engine = fresh_engine(url)
        if args.sql_rows:  # first, so the peak memory is the sync's own
            bench_sql(settings, engine, shop_url, args.sql_rows)
        if args.deliveries:
            bench_webhooks(Path(folder) / "config.yaml", url, engine, args.deliveries,
                           args.clients)


if __name__ == "__main__":
    main()
