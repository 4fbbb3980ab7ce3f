"""Runs: which process is planning and sending, whether it is still alive, what it did.

Owns the ``runs`` table: a run registers itself (host, pid), beats while it sends, and records
its summary and any pause when it finishes. ``alive`` is what ``ledger.recover`` asks before it
marks a run's in-flight deliveries ``unknown``: a run is dead when its process is gone from this
host, or when it has stopped beating (after a restart another process may carry its pid).
Must not touch deliveries.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import Engine, update

from engine.tables import Run

RUNS = Run.__table__
HEARTBEAT = timedelta(minutes=1)  # how often a sending run says it is alive (recover: 10 min)


def heartbeat(engine: Engine, run_id: str, now: datetime) -> None:
    """A run says it is alive, so ``recover`` elsewhere leaves its rows alone."""
    with engine.begin() as conn:
        conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(heartbeat_at=now))


def start_run(engine: Engine, campaign_ids: Iterable[str], now: datetime,
              connections: int | None = None) -> str:
    """Register a run (or, with the ``connections`` it asks for, a `retain worker`)."""
    run_id = uuid.uuid4().hex
    with engine.begin() as conn:
        conn.execute(RUNS.insert().values(id=run_id, pid=os.getpid(), host=socket.gethostname(),
                                          started_at=now, heartbeat_at=now,
                                          campaigns=",".join(campaign_ids),
                                          connections=connections))
    return run_id


def finish_run(engine: Engine, run_id: str, now: datetime, summary: dict,
               paused_reason: str | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(
            finished_at=now, heartbeat_at=now, summary=json.dumps(summary),
            paused_reason=paused_reason))


def alive(row, now: datetime, stale_after: timedelta) -> bool:
    if row.finished_at is not None:
        return False
    if row.host == socket.gethostname():
        try:
            os.kill(row.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # someone else's process: it exists
    # Also on this host: after a restart another process may carry a dead run's pid. A sending
    # run beats at least every HEARTBEAT; a run that does not is gone.
    return row.heartbeat_at > now - stale_after
