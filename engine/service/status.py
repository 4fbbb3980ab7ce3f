"""``retain status``: what the scheduler is doing, read from the database and campaign files.

Owns the read-only picture of the service: who leads (and until when), each campaign's next
run (its cron read in the store's zone), when it last fired, which campaigns are paused and
why, the last run's summary, each source's sync state (last success, last error, watermark,
rows, lag) and whether the stale-data guard holds campaigns back. Times are aware datetimes:
JSON writes them in UTC, the command line in the store's zone. Must not write.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

from engine.campaigns import validate
from engine.config import Settings
from engine.service import leader, schedule
from engine.shop import freshness
from engine.shop.sources import shopify, syncstate
from engine.tables import Run

RUNS = Run.__table__


def _when(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC) if moment else None


def collect(engine: Engine, settings: Settings, now: datetime) -> dict[str, Any]:
    holder = leader.current(engine)
    states, paused = schedule.states(engine), schedule.paused(engine)
    rows = []
    for campaign in validate.check(settings):
        state = states.get(campaign.id, {})
        rows.append({
            "id": campaign.id, "enabled": campaign.enabled, "schedule": campaign.schedule,
            "next_run": _when(schedule.next_fire(campaign, settings.store.zone, now))
            if campaign.enabled else None,
            "last_fire_at": _when(state.get("last_fire_at")),
            "paused": paused.get(campaign.id)})
    with engine.connect() as conn:
        last = conn.execute(select(RUNS).where(RUNS.c.finished_at.is_not(None))
                            .order_by(RUNS.c.finished_at.desc()).limit(1)).first()
    last_run = None
    if last is not None:
        summary = json.loads(last.summary or "{}")
        totals: dict[str, int] = {}
        for c in summary.get("campaigns", []):
            for key in ("planned", "sent", "failed", "bounced", "unknown", "held_out"):
                totals[key] = totals.get(key, 0) + c.get(key, 0)
        last_run = {"id": last.id, "campaigns": last.campaigns,
                    "finished_at": _when(last.finished_at), "summary": totals,
                    "paused": last.paused_reason}
    live = holder is not None and holder.expires_at > now
    stale = freshness.check(engine, settings, now)
    return {"leader": {"holder": holder.holder, "expires_at": _when(holder.expires_at)}
            if live else None, "campaigns": rows, "last_run": last_run,
            "sources": sources(engine, settings, now),
            "stale": stale.sentence(settings.store.zone) if stale else None}


def sources(engine: Engine, settings: Settings, now: datetime) -> list[dict[str, Any]]:
    """Each configured source's sync state; lag is the time since data last arrived."""
    states = syncstate.read(engine)
    rows = []
    for source in settings.sources:
        state = states.get(source.name)
        success = state.last_success_at if state else None
        rows.append({
            "name": source.name, "kind": source.kind,
            "last_success": _when(success),
            "last_attempt": _when(state.last_attempt_at) if state else None,
            "last_error": state.last_error if state else None,
            "last_error_at": _when(state.last_error_at) if state else None,
            "watermark": state.watermark if state else {},
            "rows_applied": state.rows_applied if state else 0,
            "rows_total": state.rows_total if state else 0,
            "lag_seconds": int((now - success).total_seconds()) if success else None,
            "lag": freshness.span(now - success) if success else None})
        if source.kind == "shopify_webhooks":  # customers/data_request: owed their data
            rows[-1]["data_requests"] = shopify.data_requests(engine, source.name)
    return rows
