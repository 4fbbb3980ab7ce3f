"""When each campaign runs: cron in the store's zone, catch-up after downtime, pause and resume.

Owns: a campaign's ticks in the store's time zone (its ``schedule:`` parsed by
campaigns/cron.py, the one definition of cron, DST handling included), deciding which campaigns
are due at ``now`` given when each last fired (a tick missed while the service was down is
caught up once within the grace period, never once per missed tick), and the per-campaign state
the scheduler keeps in ``campaign_state`` (paused, last fire). Pure functions take ``now``; no
clock is read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Engine, select, update

from engine import db
from engine.campaigns import cron
from engine.campaigns import models as cm
from engine.errors import NotFound, did_you_mean
from engine.tables import CampaignState

STATE = CampaignState.__table__


def trigger(campaign: cm.Campaign, zone: ZoneInfo) -> CronTrigger | None:
    if not campaign.schedule:
        return None
    return cron.trigger(campaign.schedule, zone)


def next_fire(campaign: cm.Campaign, zone: ZoneInfo, after: datetime) -> datetime | None:
    """The first tick strictly after ``after``."""
    ticks = trigger(campaign, zone)
    return cron.next_after(ticks, after) if ticks is not None else None


def last_tick(campaign: cm.Campaign, zone: ZoneInfo, now: datetime,
              since: datetime) -> datetime | None:
    """The latest tick in (since, now], or None. Walks forward from ``since``: ticks are few."""
    ticks = trigger(campaign, zone)
    if ticks is None:
        return None
    found = None
    tick = cron.next_after(ticks, since)
    while tick is not None and tick <= now:
        found = tick
        tick = cron.next_after(ticks, tick)
    return found


@dataclass(frozen=True)
class Due:
    campaign_id: str
    tick: datetime        # the scheduled moment being honoured
    late: timedelta       # how long after the tick it runs (a catch-up if large)


def due(chosen: Iterable[cm.Campaign], zone: ZoneInfo, now: datetime,
        last_fired: dict[str, datetime | None], grace: timedelta) -> list[Due]:
    """Campaigns to run at ``now``: those with a tick since they last fired, once each.

    Several missed ticks coalesce into one run; a tick older than ``grace`` is skipped (the
    service was down too long for the email to still make sense). A campaign that never fired
    starts with its next tick, not with the past. Leave paused campaigns out of ``chosen``
    (``runnable``).
    """
    runs = []
    for campaign in chosen:
        if not campaign.enabled or not campaign.schedule:
            continue
        previous = last_fired.get(campaign.id)
        if previous is None:
            continue
        tick = last_tick(campaign, zone, now, previous)
        if tick is not None and now - tick <= grace:
            runs.append(Due(campaign.id, tick, now - tick))
    return sorted(runs, key=lambda d: d.campaign_id)


# --- state kept in the database ------------------------------------------------------------

def _upsert(engine: Engine, campaign_id: str, **values) -> None:
    with engine.begin() as conn:
        conn.execute(db.dialect_insert(conn, STATE).values(campaign_id=campaign_id, **values)
                     .on_conflict_do_update(index_elements=["campaign_id"], set_=values))


def states(engine: Engine) -> dict[str, dict]:
    with engine.connect() as conn:
        return {row.campaign_id: dict(row._mapping) for row in conn.execute(select(STATE))}


def mark_fired(engine: Engine, campaign_id: str, tick: datetime, run_id: str | None) -> None:
    _upsert(engine, campaign_id, last_fire_at=tick, last_run_id=run_id)


def start_tracking(engine: Engine, chosen: Iterable[cm.Campaign], now: datetime) -> None:
    """Campaigns seen for the first time start from ``now``: no catch-up of the past."""
    known = states(engine)
    for campaign in chosen:
        if campaign.id not in known or known[campaign.id]["last_fire_at"] is None:
            _upsert(engine, campaign.id, last_fire_at=now)


def pause(engine: Engine, campaign_id: str, reason: str, now: datetime,
          known: Iterable[str] | None = None) -> None:
    if known is not None and campaign_id not in set(known):
        raise NotFound(f'no campaign with id "{campaign_id}"' + did_you_mean(campaign_id, known))
    _upsert(engine, campaign_id, paused=True, paused_reason=reason, paused_at=now)


def resume(engine: Engine, campaign_id: str) -> bool:
    """Resume a paused campaign; False if it was not paused."""
    with engine.begin() as conn:
        return conn.execute(update(STATE).where(STATE.c.campaign_id == campaign_id,
                                                STATE.c.paused.is_(True))
                            .values(paused=False, paused_reason=None, paused_at=None)
                            ).rowcount == 1


def paused(engine: Engine) -> dict[str, str]:
    """Paused campaign ids and why."""
    return {cid: s["paused_reason"] or "" for cid, s in states(engine).items() if s["paused"]}


def runnable(engine: Engine, chosen: Iterable[cm.Campaign]
             ) -> tuple[list[cm.Campaign], dict[str, str]]:
    """The rule every run applies: ``chosen`` minus the paused campaigns, in order, and the
    paused ones among them with why (so a caller can say what it skipped)."""
    stopped = paused(engine)
    chosen = list(chosen)
    return ([c for c in chosen if c.id not in stopped],
            {c.id: stopped[c.id] for c in chosen if c.id in stopped})
