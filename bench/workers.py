"""Sending workers on PostgreSQL: fleet throughput, relay latency, and rate accuracy.

Each scenario plans a winback run (one email a customer) into a fresh PostgreSQL database, starts
N `retain worker --until-idle` processes against a sink on loopback (bench/smtp_sink.py, its own
process), and times from the first worker's start to the last one's exit. Afterwards the ledger
must hold every delivery `sent` exactly once (checked; a failure stops the benchmark).

  - throughput: 20,000 messages into the minimal sink with 1, 2 and 4 workers (4 connections
    each; smtp.max_connections 16), and what one plain smtplib connection pushes into the same
    sink (the yardstick);
  - relay latency: the sink answers each DATA after 100 ms; 8, 32 and 128 connections spread
    over 4 workers (--latency-workers, e.g. 1,2,4 for each spread; smtp.max_connections),
    100 messages a connection (--per-connection); and
    beside each, as many plain smtplib threads pushing pre-built messages (the yardstick: what
    Python threads reach on this machine with that many connections);
  - rate accuracy: smtp.rate_per_second 100 for the fleet, 1, 2 and 8 workers, 6,000 messages
    (a minute at the limit: in 15 s, 8 workers joining one after another, each leaving its
    share unused for its first 3 s, were a third of the run, and the rate measured 86-93 /s);
    the rate is measured from the ledger's sent_at (messages / (last - first)).

"sending, messages/s" is the ledger's rate (messages / the span of their sent_at): the fleet at
work; "steady" is the middle 80 % of the messages over the time between them (no ramp, no
tail). "wall s" adds each worker's start (~1.5 s of CPU: imports, loading and checking the
campaigns), a joining worker's wait of 3 s (fleet.py: the others make room first) and the last
look that finds nothing due.

    scripts/with-postgres.sh .venv/bin/python bench/workers.py [--messages 20000] [--quick]

Prints one JSON line per scenario and a Markdown table at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, insert, select, text  # noqa: E402

from engine import config, db, tables  # noqa: E402
from engine.campaigns import models, planner  # noqa: E402
from engine.delivery import ledger  # noqa: E402
from tests.campaignfiles import campaign_yaml  # noqa: E402 - the suite's winback campaign

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def folder_for(port: int, connections: int, rate: float) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="retain-workers-"))
    text_ = (ROOT / "config.yaml").read_text().replace("${RETAIN_SMTP_PORT:-8025}", str(port))
    text_ = text_.replace("max_connections: 4", f"max_connections: {connections}")
    text_ = text_.replace("rate_per_second: 200", f"rate_per_second: {rate}")
    (folder / "config.yaml").write_text(text_)
    (folder / "campaigns").mkdir()
    (folder / "campaigns" / "winback.yaml").write_text(campaign_yaml())
    shutil.copytree(ROOT / "templates", folder / "templates")
    return folder


def fresh_plan(url: str, folder: Path, count: int) -> None:
    engine = db.connect(url, check_revision=False)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    db.create_schema(engine)
    created = NOW.replace(month=4, day=6)
    with engine.begin() as conn:
        for start in range(1, count + 1, 5000):
            ids = range(start, min(start + 5000, count + 1))
            conn.execute(insert(tables.Customer.__table__), [dict(
                id=i, external_id=f"bulk-{i}", email=f"buyer{i}@d{i % 50}.example",
                email_key=f"buyer{i}@d{i % 50}.example", first_name="Ann", last_name="Lee",
                accepts_marketing=True, created_at=NOW.replace(year=2025), tags="")
                for i in ids])
            conn.execute(insert(tables.Order.__table__), [dict(
                external_id=f"bulk-o{i}", customer_id=i, created_at=created,
                local_date=created.date(), status="paid", total_cents=4000) for i in ids])
        db.bump_data_version(conn)
    settings = config.load(folder / "config.yaml", environ={})
    campaign = models.load_file(folder / "campaigns" / "winback.yaml")
    ledger.record_plan(engine, planner.plan(engine, settings, campaign, NOW), NOW)
    engine.dispose()


def sink(delay: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "bench" / "smtp_sink.py"),
                             "--delay", str(delay)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def fleet(url: str, folder: Path, workers: int, concurrency: int) -> dict:
    """Start ``workers`` processes, wait for all; seconds, the ledger's check, peak RSS."""
    command = [sys.executable, "-m", "engine.cli", "--config", str(folder / "config.yaml"),
               "--db", url, "worker", "--until-idle", "--json",
               "--concurrency", str(concurrency)]
    started = time.perf_counter()
    children = [subprocess.Popen(command, cwd=folder, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env={**os.environ,
                                                              "PYTHONPATH": str(ROOT)})
                for _ in range(workers)]
    for child in children:
        _, err = child.communicate()
        if child.returncode:
            raise SystemExit(f"a worker failed: {err.decode()[-2000:]}")
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    engine = db.connect(url)
    d = ledger.DELIVERIES
    with engine.connect() as conn:
        by_status = dict(conn.execute(select(d.c.status, func.count()).group_by(d.c.status)).all())
        first, last = conn.execute(select(func.min(d.c.sent_at), func.max(d.c.sent_at))).one()
        dupes = conn.execute(text("SELECT count(*) - count(DISTINCT message_id) FROM deliveries"
                                  " WHERE status = 'sent'")).scalar()
        # The steady rate: the middle 80 % of the messages over the time they took, without
        # the first workers' ramp and the last leases' tail.
        early, late = conn.execute(text(
            "SELECT percentile_disc(0.1) WITHIN GROUP (ORDER BY sent_at), "
            "percentile_disc(0.9) WITHIN GROUP (ORDER BY sent_at) FROM deliveries "
            "WHERE status = 'sent'")).one()
    engine.dispose()
    sent = by_status.get("sent", 0)
    if set(by_status) != {"sent"} or dupes:
        raise SystemExit(f"the ledger is not all sent once: {by_status}, {dupes} duplicates")
    span = (last - first).total_seconds() if sent > 1 else 0.0
    return {"sent": sent, "seconds": round(seconds, 2), "per_second": round(sent / seconds, 1),
            "ledger_rate": round(sent / span, 1) if span else None,
            "steady_rate": round(0.8 * sent / (late - early).total_seconds(), 1)
            if sent > 10 and late > early else None,
            "peak_rss_mb_any_worker": round(peak_mb, 1)}


def scenario(url: str, name: str, messages: int, workers: int, concurrency: int,
             connections: int, rate: float, delay: float = 0.0) -> dict:
    server = sink(delay)
    try:
        port = int(server.stdout.readline())
        folder = folder_for(port, connections, rate)
        fresh_plan(url, folder, messages)
        result = fleet(url, folder, workers, concurrency)
    finally:
        server.stdin.close()
        server.wait(timeout=10)
    result = {"scenario": name, "messages": messages, "workers": workers,
              "connections": min(connections, workers * concurrency), "rate_limit": rate,
              "relay_delay_ms": int(delay * 1000), **result}
    print(json.dumps(result), flush=True)
    return result


def plain_client(messages: int) -> dict:
    """One smtplib connection pushing pre-built 20 KB messages into the sink: the yardstick."""
    server = sink(0.0)
    try:
        port = int(server.stdout.readline())
        body = (b"Subject: bench\r\n\r\n" + b"x" * 78 + b"\r\n") * 250
        started = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", port) as client:
            for n in range(messages):
                client.sendmail("b@bench.example", [f"c{n}@bench.example"], body)
        seconds = time.perf_counter() - started
    finally:
        server.stdin.close()
        server.wait(timeout=10)
    result = {"scenario": "plain smtplib, 1 connection", "messages": messages,
              "seconds": round(seconds, 2), "per_second": round(messages / seconds, 1)}
    print(json.dumps(result), flush=True)
    return result


def plain_threads(connections: int, per_connection: int, delay: float) -> dict:
    """``connections`` smtplib clients, a thread each, pushing pre-built 20 KB messages into the
    sink answering DATA after ``delay``: what plain Python reaches on this machine with as many
    connections, the yardstick for the workers against the slow relay."""
    import threading

    server = sink(delay)
    try:
        port = int(server.stdout.readline())
        body = (b"Subject: bench\r\n\r\n" + b"x" * 78 + b"\r\n") * 250

        def push(first: int) -> None:
            with smtplib.SMTP("127.0.0.1", port) as client:
                for n in range(first, first + per_connection):
                    client.sendmail("b@bench.example", [f"c{n}@bench.example"], body)

        threads = [threading.Thread(target=push, args=(i * per_connection,))
                   for i in range(connections)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
    finally:
        server.stdin.close()
        server.wait(timeout=10)
    messages = connections * per_connection
    result = {"scenario": f"plain smtplib, {connections} threads, sink answering DATA in "
                          f"{int(delay * 1000)} ms", "messages": messages,
              "connections": connections, "seconds": round(seconds, 2),
              "per_second": round(messages / seconds, 1)}
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--quick", action="store_true", help="a tenth of every size")
    parser.add_argument("--only", help="throughput,latency,rate (default: all three)")
    parser.add_argument("--per-connection", type=int, default=100,
                        help="messages a connection against the slow sink")
    parser.add_argument("--latency-workers", default="4",
                        help="workers the slow sink's connections are spread over, comma-"
                             "separated for several runs (e.g. 1,2,4)")
    args = parser.parse_args()
    url = os.environ.get("RETAIN_TEST_POSTGRES_URL")
    if not url:
        raise SystemExit("run under scripts/with-postgres.sh (RETAIN_TEST_POSTGRES_URL)")
    scale = 10 if args.quick else 1
    big = args.messages // scale
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, "
          f"{platform.processor() or platform.machine()}, Python {platform.python_version()}",
          flush=True)
    wanted = set(args.only.split(",")) if args.only else {"throughput", "latency", "rate"}
    rows = [plain_client(big)] if "throughput" in wanted else []
    for workers in (1, 2, 4) if "throughput" in wanted else ():
        rows.append(scenario(url, "minimal sink", big, workers, 4, 16, 1e6))
    for connections in (8, 32, 128) if "latency" in wanted else ():
        rows.append(plain_threads(connections, args.per_connection // scale, 0.1))
        for spread in [int(n) for n in args.latency_workers.split(",")]:
            rows.append(scenario(url, "sink answering DATA in 100 ms",
                                 connections * args.per_connection // scale,
                                 spread, connections // spread, connections, 1e6, delay=0.1))
    for workers in (1, 2, 8) if "rate" in wanted else ():
        rows.append(scenario(url, "rate limit 100/s for the fleet", 6000 // scale, workers, 2,
                             16, 100))
    print("\n| scenario | messages | workers | connections | sending, messages/s | "
          "steady (middle 80 %) | wall s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['scenario']} | {r['messages']:,} | {r.get('workers', '-')} | "
              f"{r.get('connections', 1)} | {r.get('ledger_rate') or r['per_second']:,} | "
              f"{r.get('steady_rate') or '-'} | {r['seconds']} |")


if __name__ == "__main__":
    main()
