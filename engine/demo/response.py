"""The demo's aftermath: a few days of the shop after the send, then the report.

Owns the demo's injected response effect and nothing else: each customer the run mailed orders
within ``DAYS`` days with probability ``MAILED_RATE``, each held-out customer with
``HOLDOUT_RATE`` (the effect the report should find: ``MAILED_RATE - HOLDOUT_RATE``); a mailed
customer who orders types their coupon's code (in lower case, as people do) most of the time.
The orders go in through the same tables an import writes, and redemptions are refreshed as an
import refreshes them. Then it prints ``retain report``'s tables and writes its HTML file next
to outbox/. Seeded: same seed, same orders. Writing the responses twice writes nothing new.
Must not be imported by anything but the CLI, nor read the clock.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

from rich.console import Console
from sqlalchemy import Engine, insert, select

from engine import db, tables
from engine.config import Settings
from engine.shop import redemptions
from engine.views import reportpage, results

DAYS = 5
MAILED_RATE, HOLDOUT_RATE = 0.12, 0.04
CODE_TYPED = 0.7  # share of mailed buyers who use their code
EFFECT = (f"injected effect: mailed customers order within {DAYS} days with a "
          f"{MAILED_RATE:.0%} chance, held-out ones with {HOLDOUT_RATE:.0%} "
          f"(a true lift of {(MAILED_RATE - HOLDOUT_RATE) * 100:.0f} points)")
D, C = tables.Delivery.__table__, tables.Coupon.__table__


def simulate(engine: Engine, settings: Settings, seed: int = 7) -> int:
    """Write the responses to every sent or held-out delivery without one; how many orders."""
    rng = random.Random(seed)
    with engine.begin() as conn:
        done = set(conn.execute(select(tables.Order.external_id).where(
            tables.Order.external_id.like("demo-response-%"))).scalars())
        rows = conn.execute(
            select(D.c.id, D.c.customer_id, D.c.status, D.c.planned_at, D.c.sent_at, C.c.code)
            .select_from(D.outerjoin(C, C.c.delivery_id == D.c.id))
            .where(D.c.status.in_(("sent", "held_out"))).order_by(D.c.id)).all()
        orders = []
        for row in rows:
            mailed = row.status == "sent"
            draw = rng.random(), rng.uniform(1, DAYS * 24 - 1), rng.randrange(2500, 12000), \
                rng.random()
            key = f"demo-response-{row.id}"
            if key in done or draw[0] >= (MAILED_RATE if mailed else HOLDOUT_RATE):
                continue
            at = (row.sent_at if mailed else row.planned_at) + timedelta(hours=draw[1])
            code = row.code.lower() if mailed and row.code and draw[3] < CODE_TYPED else None
            orders.append({"external_id": key, "customer_id": row.customer_id,
                           "created_at": at, "local_date": at.astimezone(
                               settings.store.zone).date(), "status": "paid",
                           "total_cents": draw[2] // 100 * 100 - 10,
                           "currency": settings.store.currency, "discount_code": code})
        if orders:
            conn.execute(insert(tables.Order), orders)
            redemptions.refresh(conn)
            db.bump_data_version(conn)
    return len(orders)


def show(engine: Engine, settings: Settings, now: datetime, console: Console,
         seed: int = 7) -> Path:
    """Simulate the days after the send, print the report as of then, write the HTML file."""
    written = simulate(engine, settings, seed)
    as_of = now + timedelta(days=DAYS)
    console.print(f"Simulated {DAYS} days after the send ({EFFECT}): {written} new orders.",
                  markup=False)
    report = results.build(engine, settings, as_of)
    for table in reportpage.tables(report, settings):
        console.print(table)
    console.print(reportpage.NOTES, markup=False)
    path = settings.folder("outbox").parent / "report.html"
    path.write_text(reportpage.html(report, settings), encoding="utf-8")
    console.print(f"The report with charts: {path} (retain report --as-of "
                  f"{as_of:%Y-%m-%dT%H:%M} --html report.html writes it again)", markup=False)
    return path
