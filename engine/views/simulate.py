"""``retain simulate``: replay the schedule over a period, against today's data, writing nothing.

Owns the replay: every cron tick of every enabled campaign between two dates, in time order, each
planned by the same ``runner.run`` code a real tick uses, with the simulated tick as ``now``. It
runs on a private copy of the database (SQLite's backup API into a temporary file), so earlier
simulated ticks consume occasions, cooldowns and the frequency cap exactly as real ones would,
and the real database is only read. Nothing is rendered or sent: each planned delivery counts
as delivered. Must not write to the configured database.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from engine import db
from engine.campaigns import models as cm
from engine.config import Settings
from engine.delivery import runner
from engine.errors import ConfigError
from engine.service import schedule
from engine.tables import Delivery, DeliveryStatus

DELIVERIES = Delivery.__table__


def ticks(chosen: list[cm.Campaign], zone, start: datetime, end: datetime
          ) -> list[tuple[datetime, cm.Campaign]]:
    """Every (tick, campaign) in [start, end), in time order, then by priority."""
    found = []
    for campaign in chosen:
        if not campaign.enabled or not campaign.schedule:
            continue
        moment = schedule.next_fire(campaign, zone, start - timedelta(microseconds=1))
        while moment is not None and moment < end:
            found.append((moment, campaign))
            moment = schedule.next_fire(campaign, zone, moment)
    return sorted(found, key=lambda t: (t[0], -t[1].priority))


def replay(engine: Engine, settings: Settings, chosen: list[cm.Campaign], start: datetime,
           end: datetime, sample: int = 10) -> dict[str, Any]:
    """Per day and campaign: how many would receive, who (a sample), held out, capped."""
    if end <= start:
        raise ConfigError("simulate needs --to after --from")
    schedule_ = ticks(chosen, settings.store.zone, start, end)
    days: dict[str, dict[str, dict]] = defaultdict(dict)
    with _private_copy(engine) as copy:
        for tick, campaign in schedule_:
            report = runner.run(copy, settings, [campaign], tick, transport=None)
            entry = report.campaigns[campaign.id]
            planned = _planned_now(copy, report.run_id, campaign.id, tick, sample)
            _count_as_delivered(copy, campaign.id, tick)
            day = tick.astimezone(settings.store.zone).date().isoformat()
            days[day][campaign.id] = {
                "id": campaign.id, "tick": tick.astimezone(settings.store.zone).isoformat(),
                "recipients": entry.planned, "held_out": entry.held_out,
                "suppressed": entry.suppressed, "deferred": entry.deferred,
                "capped": entry.capped, "skipped": entry.skipped, "sample": planned}
    return {"from": start.isoformat(), "to": end.isoformat(), "ticks": len(schedule_),
            "days": [{"date": day, "campaigns": list(by_campaign.values())}
                     for day, by_campaign in sorted(days.items())]}


def _planned_now(engine: Engine, run_id: str, campaign_id: str, tick: datetime,
                 limit: int) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(DELIVERIES.c.customer_id, DELIVERIES.c.occasion).where(
            DELIVERIES.c.campaign_id == campaign_id, DELIVERIES.c.planned_at == tick,
            DELIVERIES.c.status == DeliveryStatus.planned.value)
            .order_by(DELIVERIES.c.customer_id).limit(limit)).all()
    return [{"customer": r.customer_id, "occasion": r.occasion} for r in rows]


def _count_as_delivered(engine: Engine, campaign_id: str, tick: datetime) -> None:
    """In the copy, this tick's mail went out: later ticks see it as sent."""
    with engine.begin() as conn:
        conn.execute(DELIVERIES.update().where(
            DELIVERIES.c.campaign_id == campaign_id,
            DELIVERIES.c.status == DeliveryStatus.planned.value)
            .values(status=DeliveryStatus.sent.value, sent_at=tick))


class _private_copy:
    """A temporary SQLite copy of the database, deleted afterwards."""

    def __init__(self, engine: Engine):
        if engine.dialect.name != "sqlite" or not engine.url.database:
            raise ConfigError("retain simulate replays on a private copy of a SQLite database; "
                              "on PostgreSQL, run it against a SQLite export or a staging copy")
        self.source = engine.url.database
        self.folder = tempfile.TemporaryDirectory(prefix="retain-simulate-")

    def __enter__(self) -> Engine:
        target = Path(self.folder.name) / "copy.db"
        with sqlite3.connect(self.source) as src, sqlite3.connect(target) as dst:
            src.backup(dst)  # a consistent snapshot even while the scheduler writes
        self.engine = db.connect(f"sqlite:///{target}")
        return self.engine

    def __exit__(self, *exc_info: object) -> None:
        self.engine.dispose()
        db.connect.cache_clear()
        self.folder.cleanup()
