"""The scheduler syncs the shop's sources before each tick, and holds campaigns back when the
data is older than data.max_age: a customer who ordered yesterday gets no win-back."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime

from sqlalchemy import select
from typer.testing import CliRunner

from engine import tables
from engine.campaigns import validate
from engine.delivery import runner
from engine.service import status
from engine.service.scheduler import Scheduler
from engine.transport import MemoryTransport
from tests.campaignfiles import write_campaign
from tests.clock import FakeClock
from tests.service.test_scheduler import shutil_copy_templates
from tests.sourcedata import with_sources

SOURCES = "  - {name: drop, kind: folder, path: drop, settle_seconds: 0}\n"
CUSTOMERS = """customer_id,email,first_name,accepts_marketing,created_at
C1,anna@example.com,Anna,yes,2025-01-10
C2,bob@example.com,Bob,yes,2025-01-11
"""
# Both last ordered on 2026-04-08: 70 days before the 17th, drowsy: the win-back's audience.
OLD_ORDERS = """order_id,customer_id,created_at,total
O-1,C1,2026-04-08T12:00:00+02:00,50.00
O-2,C2,2026-04-08T12:00:00+02:00,50.00
"""
ANNA_ORDERED_YESTERDAY = "order_id,customer_id,created_at,total\nO-3,C1,2026-06-16T18:00,80.00\n"


def started(engine, config_path, tmp_path):
    """A win-back campaign, a drop folder holding the first export, a scheduler on a fake
    clock (started, cron paused: the tests fire ticks themselves)."""
    shutil_copy_templates(tmp_path)
    (tmp_path / "campaigns").mkdir()
    write_campaign(tmp_path / "campaigns", schedule="0 10 * * *")
    settings = with_sources(config_path, SOURCES, "data: {max_age: 26h}\n")
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "1-customers.csv").write_text(CUSTOMERS)
    (drop / "2-orders.csv").write_text(OLD_ORDERS)
    clock = FakeClock(datetime(2026, 6, 16, 8, 0, tzinfo=UTC))
    scheduler = Scheduler(engine, settings, MemoryTransport, clock=clock)
    scheduler.start(paused=True)
    return settings, drop, clock, scheduler


def recipients(engine) -> dict[int, str]:
    with engine.connect() as conn:
        rows = conn.execute(select(tables.Customer.__table__.c.external_id,
                                   tables.Delivery.__table__.c.status).join(
            tables.Delivery.__table__,
            tables.Delivery.__table__.c.customer_id == tables.Customer.__table__.c.id)).all()
    return dict(rows)


def test_orders_arriving_between_ticks_stop_a_winback_stale_data_would_send(
        engine, config_path, tmp_path):
    settings, drop, clock, scheduler = started(engine, config_path, tmp_path)
    try:
        assert scheduler.sync_sources()[0].applied == 4         # the first export arrives
        # Next morning, before the 10:00 tick, Anna's new order lands in the drop folder.
        clock.now = datetime(2026, 6, 17, 8, 0, tzinfo=UTC)
        (drop / "3-orders.csv").write_text(ANNA_ORDERED_YESTERDAY)
        # On the data as it stood (the last import), both would get the win-back coupon:
        winback = validate.load(settings, ["winback"])
        stale_plan = runner.run(engine, settings, winback, clock.now, None, dry_run=True)
        assert stale_plan.campaigns["winback"].planned == 2
        report = scheduler.fire("winback")
    finally:
        scheduler.stop()
    assert report.campaigns["winback"].sent == 1
    assert recipients(engine) == {"C2": "sent"}              # Anna ordered: no win-back


def test_past_max_age_nothing_is_sent_and_status_says_why(engine, config_path, tmp_path,
                                                          caplog):
    settings, drop, clock, scheduler = started(engine, config_path, tmp_path)
    try:
        scheduler.sync_sources()
        shutil.rmtree(drop)                                     # the export job breaks
        clock.now = datetime(2026, 6, 17, 11, 0, tzinfo=UTC)    # 27 hours later
        assert scheduler.fire("winback") is None
    finally:
        scheduler.stop()
    assert recipients(engine) == {}
    assert "not run: shop data is stale" in caplog.text
    picture = status.collect(engine, settings, clock.now)
    assert picture["stale"].startswith('shop data is stale: the newest data came from source '
                                       '"drop" at 2026-06-16 10:00 CEST, 27 h before')
    assert "does not exist" in picture["stale"]                 # its last error
    (source,) = picture["sources"]
    assert source["lag"] == "27 h" and source["rows_total"] == 4

    # retain run refuses, naming the source and its last sync; --allow-stale runs anyway.
    from engine.cli import app
    cli = CliRunner()
    args = ["--config", str(config_path), "run", "--as-of", "2026-06-17T13:00"]
    refused = cli.invoke(app, args)
    assert refused.exit_code == 1
    assert 'source "drop" at 2026-06-16 10:00 CEST' in refused.output
    assert "--allow-stale" in refused.output
    # --as-of an earlier moment sees the data as fresh.
    earlier = cli.invoke(app, ["--config", str(config_path), "run", "--dry-run", "--json",
                               "--as-of", "2026-06-16T13:00"])
    assert earlier.exit_code == 0, earlier.output
    why = cli.invoke(app, ["--config", str(config_path), "why", "C2", "--json",
                           "--as-of", "2026-06-17T13:00"])
    answer = json.loads(why.stdout)["campaigns"][0]
    assert answer["why"] == "stale_data" and "would receive" in answer["detail"]
