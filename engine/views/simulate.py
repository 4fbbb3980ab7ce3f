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
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from engine import db
from engine.campaigns import models as cm
from engine.campaigns.counts import Counts
from engine.config import Settings
from engine.delivery import runner
from engine.errors import ConfigError
from engine.service import schedule
from engine.tables import Delivery, DeliveryStatus
from engine.transport import Transport

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


@dataclass(frozen=True)
class SimulatedTick:
    """One campaign's tick in the replay: when (store time), what its plan counted, and a
    sample of who would receive it."""
    campaign_id: str
    at: datetime
    counts: Counts
    sample: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.campaign_id, "tick": self.at.isoformat(), **self.counts.plan_dict(),
                "sample": self.sample}


@dataclass(frozen=True)
class Simulation:
    start: datetime
    end: datetime
    ticks: list[SimulatedTick]

    def days(self) -> list[tuple[str, list[SimulatedTick]]]:
        """Per day (store time), each campaign's tick; of a campaign that ticks more than once
        a day (a flow every 15 minutes), its last, with the mail of all that day's ticks."""
        by_day: dict[str, dict[str, SimulatedTick]] = defaultdict(dict)
        for tick in self.ticks:
            day = by_day[tick.at.date().isoformat()]
            earlier = day.get(tick.campaign_id)
            day[tick.campaign_id] = tick if earlier is None else _with_earlier(tick, earlier)
        return [(day, list(found.values())) for day, found in sorted(by_day.items())]

    def as_dict(self) -> dict[str, Any]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(),
                "ticks": len(self.ticks),
                "days": [{"date": day, "campaigns": [t.as_dict() for t in found]}
                         for day, found in self.days()]}


def _with_earlier(tick: SimulatedTick, earlier: SimulatedTick) -> SimulatedTick:
    """``tick`` also counting the mail an earlier tick of the same day planned."""
    counts = replace(tick.counts)
    for status in ("planned", "held_out", "suppressed", "deferred", "capped"):
        setattr(counts, status, getattr(tick.counts, status) + getattr(earlier.counts, status))
    return SimulatedTick(tick.campaign_id, tick.at, counts,
                         (earlier.sample + tick.sample)[:max(len(earlier.sample),
                                                             len(tick.sample))])


def replay(engine: Engine, settings: Settings, chosen: list[cm.Campaign], start: datetime,
           end: datetime, sample: int = 10, transport: Transport | None = None) -> Simulation:
    """Every tick: how many would receive, who (a sample), held out, capped.

    ``transport`` (a test's loopback server): each tick's mail is really sent through it, as
    the tick's run would, instead of only being counted as delivered."""
    if end <= start:
        raise ConfigError("simulate needs --to after --from")
    zone = settings.store.zone
    found = []
    with _private_copy(engine) as copy:
        for tick, campaign in ticks(chosen, zone, start, end):
            report = runner.run(copy, settings, [campaign], tick, transport=transport)
            planned = _planned_now(copy, report.run_id, campaign.id, tick, sample)
            if transport is None:
                _count_as_delivered(copy, campaign.id, tick)
            found.append(SimulatedTick(campaign.id, tick.astimezone(zone),
                                       report.campaigns[campaign.id], planned))
    return Simulation(start, end, found)


def _planned_now(engine: Engine, run_id: str, campaign_id: str, tick: datetime,
                 limit: int) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(DELIVERIES.c.customer_id, DELIVERIES.c.occasion).where(
            DELIVERIES.c.campaign_id == campaign_id, DELIVERIES.c.planned_at == tick,
            DELIVERIES.c.status.in_((DeliveryStatus.planned.value, DeliveryStatus.sent.value)))
            .order_by(DELIVERIES.c.customer_id).limit(limit)).all()
    return [{"customer": r.customer_id, "occasion": r.occasion} for r in rows]


def _count_as_delivered(engine: Engine, campaign_id: str, tick: datetime) -> None:
    """In the copy, this tick's mail went out: later ticks see it as sent."""
    with engine.begin() as conn:
        conn.execute(DELIVERIES.update().where(
            DELIVERIES.c.campaign_id == campaign_id,
            DELIVERIES.c.status.in_((DeliveryStatus.planned.value, DeliveryStatus.sent.value)))
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
        self.folder.cleanup()
