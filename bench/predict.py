"""Benchmark: fitting and scoring the per-customer predictions on a large shop (SQLite).

The shop is drawn from a known MBG/NBD process (btyd.simulate_mbgnbd: r=0.6, alpha=40 days,
a=0.8, b=1.6; first orders over three years), written once by a child process so that its
memory does not count here. Then, in this process, the figures a shop's operator cares about:
the sample's history query, the fit (two MBG/NBD fits, Gamma-Gamma, the calibration, on at
most predict.SAMPLE customers), scoring every buyer in batches, the whole refresh that writes
the predictions beside the metrics, and the incremental refresh a scheduler tick takes after
new orders (which keeps the day's predictions), each with its wall and CPU time and the peak
resident memory (ru_maxrss) so far; and how close the fit came to the truth. Printed, never
asserted.

    python bench/predict.py --customers 100000
    python bench/predict.py --customers 1000000 --db /tmp/predict-1m.db
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from engine import config, db, tables  # noqa: E402 - after the path fix: runs from a checkout
from engine.shop import btyd, metrics, predict  # noqa: E402

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
TRUTH = btyd.MBGNBD(r=0.6, alpha=40.0, a=0.8, b=1.6)
BATCH = 200_000


def generate(path: Path, customers: int, seed: int) -> None:
    """Customers and orders straight into SQLite (executemany, batches of 200,000 rows)."""
    import numpy as np

    db.connect(f"sqlite:///{path}").dispose()  # the schema
    rng = np.random.default_rng(seed)
    ages = rng.integers(0, 3 * 365, customers)
    who, days = btyd.simulate_mbgnbd(TRUTH, ages, seed)
    totals = np.rint(rng.gamma(4.0, 1200.0, len(who))).astype(int) + 100
    today = NOW.date()
    with sqlite3.connect(path) as conn:
        created = (NOW - timedelta(days=1200)).replace(tzinfo=None).isoformat(" ")
        for start in range(0, customers, BATCH):
            conn.executemany(
                "INSERT INTO customers (id, external_id, email, email_key, first_name, "
                "last_name, accepts_marketing, tags, created_at) VALUES (?,?,?,?,'','',1,'',?)",
                ((i, f"c{i}", f"c{i}@example.com", f"c{i}@example.com", created)
                 for i in range(start + 1, min(start + BATCH, customers) + 1)))
        for start in range(0, len(who), BATCH):
            stop = min(start + BATCH, len(who))
            conn.executemany(
                "INSERT INTO orders (external_id, customer_id, created_at, local_date, status, "
                "total_cents, currency) VALUES (?,?,?,?,'paid',?,'EUR')",
                ((f"o{n}", int(who[n]) + 1, f"{day} 10:00:00.000000", day, int(totals[n]))
                 for n in range(start, stop)
                 for day in [(today - timedelta(days=int(ages[who[n]] - days[n]))).isoformat()]))
        conn.execute("INSERT INTO meta (key, value) VALUES ('data_version', '1')")
    print(f"generated {customers} customers, {len(who)} orders in {path}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    path = args.db or ROOT / "bench" / f"predict-{args.customers}.db"
    if args.generate_only:
        generate(path, args.customers, args.seed)
        return
    if not path.exists():
        started = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--customers", str(args.customers),
                        "--db", str(path), "--seed", str(args.seed), "--generate-only"],
                       check=True)
        print(f"  ({time.perf_counter() - started:.0f} s)")
    settings = config.load(ROOT / "config.yaml", f"sqlite:///{path}", environ={})
    engine = db.connect(settings.database.url)

    def step(label, work):
        # CPU seconds beside wall seconds: on a shared machine the wall clock also counts
        # other people's work.
        started, cpu = time.perf_counter(), time.process_time()
        result = work()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{label:58} {time.perf_counter() - started:7.1f} s  "
              f"(cpu {time.process_time() - cpu:6.1f} s)   peak {peak:6.0f} MB", flush=True)
        return result

    h = settings.predict.horizon_days
    with engine.connect() as conn:
        every = predict.sample_every(conn)
        now_h, _ = step("history query of the sample (both moments, one GROUP BY)",
                        lambda: predict.histories(conn, settings, NOW, h, every))
        step(f"MBG/NBD fit alone ({len(now_h)} buyers)",
             lambda: btyd.fit_mbgnbd(now_h.x, now_h.t_x, now_h.T))
        fitted = step("the fit (query, 2 MBG/NBD fits, Gamma-Gamma, calibration)",
                      lambda: predict.fit(conn, settings, NOW))
        scored = step("every buyer scored, a batch at a time (not written)", lambda: sum(
            len(batch.churn_risk) for batch in predict.scored(conn, settings, NOW, fitted)))
    with engine.begin() as conn:
        conn.execute(tables.Meta.__table__.delete().where(
            tables.Meta.__table__.c.key.in_(["metrics_as_of", "predictions_key"])))
    step("metrics.refresh: metrics, then predictions written", lambda: metrics.refresh(
        engine, settings, NOW))
    step("metrics.refresh again (cached)", lambda: metrics.refresh(engine, settings, NOW))
    with engine.begin() as conn:  # a tick's worth of new orders, later the same day
        conn.execute(text(
            "INSERT INTO orders (external_id, customer_id, created_at, local_date, status, "
            "total_cents, currency) SELECT 'late-' || id, id, :at, :day, 'paid', 4200, 'EUR' "
            "FROM customers WHERE id % 1000 = 0"),
            {"at": (NOW + timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S.%f"),
             "day": NOW.date().isoformat()})
        db.bump_data_version(conn)
    step("metrics.refresh after new orders the same day (incremental)",
         lambda: metrics.refresh(engine, settings, NOW + timedelta(minutes=10)))
    print(f"scored {scored} buyers; the models saw {len(now_h)} "
          f"({fitted.info['fitted_on']})")
    print("truth ", json.dumps(TRUTH.params()))
    print("fitted", json.dumps({k: round(v, 3) for k, v in fitted.info["mbgnbd"].items()}))
    print("calibration", fitted.info["calibration"])


if __name__ == "__main__":
    main()
