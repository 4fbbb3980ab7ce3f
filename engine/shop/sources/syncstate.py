"""Sync state per configured source: when data last arrived, the last error, the watermark.

Owns the ``sync_state`` rows (one per source name) and how a sync outcome is recorded:
``attempted`` (a pass began), ``succeeded`` (data arrived: rows applied, new watermark),
``failed`` (one line, with secrets and addresses taken out), and ``read`` for status and the
stale-data guard. "Last success" means *data arrived*: a folder pass that finds no new file or a
quiet webhook endpoint does not refresh it, so a shop whose export stopped looks stale, as it
is. Must not decide what is stale (freshness.py does) nor read the clock.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection

from engine.tables import SyncState

STATE = SyncState.__table__
_URL_CREDENTIALS = re.compile(r"(\w[\w+.-]*://)[^/\s@]+@")
_EMAIL = re.compile(r"[^\s@'\"<>(),;:]+@[^\s@'\"<>(),;:]+\.[A-Za-z]{2,}")
_MAX_ERROR = 300


def one_line(error: BaseException | str, secrets: tuple[str, ...] = ()) -> str:
    """An error as one line fit for status and logs: first line only, credentials in URLs,
    given secrets and email addresses replaced, at most 300 characters."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _EMAIL.sub("[address]", text)
    return text if len(text) <= _MAX_ERROR else text[:_MAX_ERROR - 1] + "…"


@dataclass(frozen=True)
class State:
    source: str
    kind: str
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    watermark: dict[str, Any]
    rows_applied: int
    rows_total: int


def _ensure(conn: Connection, name: str, kind: str) -> None:
    if conn.execute(select(STATE.c.source).where(STATE.c.source == name)).first() is None:
        conn.execute(STATE.insert().values(source=name, kind=kind))


def attempted(conn: Connection, name: str, kind: str, now: datetime) -> None:
    _ensure(conn, name, kind)
    conn.execute(STATE.update().where(STATE.c.source == name).values(last_attempt_at=now,
                                                                      kind=kind))


def succeeded(conn: Connection, name: str, kind: str, now: datetime, rows: int,
              watermark: dict[str, Any] | None = None, clear_error: bool = True) -> None:
    """Data arrived from ``name`` at ``now``: ``rows`` rows were inserted or updated."""
    _ensure(conn, name, kind)
    values: dict[str, Any] = {"last_success_at": now, "rows_applied": rows,
                              "rows_total": STATE.c.rows_total + rows}
    if watermark is not None:
        values["watermark"] = json.dumps(watermark, sort_keys=True)
    if clear_error:
        values.update(last_error=None, last_error_at=None)
    conn.execute(STATE.update().where(STATE.c.source == name).values(**values))


def failed(conn: Connection, name: str, kind: str, now: datetime, error: str) -> None:
    """Record ``error`` (already one clean line, see ``one_line``) as the source's last."""
    _ensure(conn, name, kind)
    conn.execute(STATE.update().where(STATE.c.source == name).values(
        last_error=error, last_error_at=now))


def watermark(conn: Connection, name: str) -> dict[str, Any]:
    value = conn.execute(select(STATE.c.watermark).where(STATE.c.source == name)).scalar()
    return json.loads(value) if value else {}


def read(engine: Engine) -> dict[str, State]:
    """Every source's state by name (sources never synced have no row)."""
    with engine.connect() as conn:
        rows = conn.execute(select(STATE).order_by(STATE.c.source)).all()
    return {row.source: State(row.source, row.kind, row.last_attempt_at, row.last_success_at,
                              row.last_error, row.last_error_at, json.loads(row.watermark or "{}"),
                              row.rows_applied, row.rows_total) for row in rows}
