"""The stale-data guard: the one rule for "the shop's data is too old to act on".

Owns the rule, used by ``retain run``, the scheduler, ``retain status`` and ``retain why``:
with ``sources:`` configured, the data is fresh when the newest arrival from any source is at
most ``data.max_age`` before ``now`` (the run's moment, so ``--as-of`` a later day sees the data
as it will be then); otherwise it is stale, and the sentence says which source brought data
last, when, and its last error. A shop without sources imports by hand and is never judged
stale (today's behaviour). Must not read the clock, write, send or render.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from sqlalchemy import Engine

from engine.config import Settings
from engine.errors import StaleData
from engine.shop.sources import syncstate


def span(delta: timedelta) -> str:
    """A duration as people say it: 45 min, 27 h, 3 d 4 h."""
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 72:
        return f"{hours} h"
    return f"{hours // 24} d {hours % 24} h" if hours % 24 else f"{hours // 24} d"


@dataclass(frozen=True)
class Staleness:
    """Why the data is stale: the freshest source (if any synced), when, and its last error."""
    now: datetime
    max_age: timedelta
    source: str | None = None
    last_success: datetime | None = None
    last_error: str | None = None
    never: tuple[str, ...] = ()

    def sentence(self, zone: tzinfo) -> str:
        limit = f"data.max_age ({span(self.max_age)})"
        if self.source is None:
            head = (f"shop data is stale: no source has brought data yet "
                    f"({', '.join(self.never)}); run `retain sync` and check `retain status`")
        else:
            when = self.last_success.astimezone(zone)
            head = (f'shop data is stale: the newest data came from source "{self.source}" at '
                    f"{when:%Y-%m-%d %H:%M %Z}, {span(self.now - self.last_success)} before "
                    f"{self.now.astimezone(zone):%Y-%m-%d %H:%M %Z}, more than {limit}")
            if self.last_error:
                head += f"; its last error: {self.last_error}"
        return head + "; campaigns wait until a source syncs"

    def as_dict(self) -> dict[str, object]:
        return {"source": self.source, "last_success": self.last_success.isoformat()
                if self.last_success else None, "max_age_seconds": self.max_age.total_seconds(),
                "last_error": self.last_error}


def check(engine: Engine, settings: Settings, now: datetime) -> Staleness | None:
    """None when the data may be acted on at ``now``; else why not."""
    if not settings.sources:
        return None
    states = syncstate.read(engine)
    synced = [states[s.name] for s in settings.sources
              if s.name in states and states[s.name].last_success_at is not None]
    max_age = settings.data.max_age
    if not synced:
        return Staleness(now, max_age, never=tuple(s.name for s in settings.sources))
    newest = max(synced, key=lambda state: state.last_success_at)
    if now - newest.last_success_at <= max_age:
        return None
    return Staleness(now, max_age, newest.source, newest.last_success_at, newest.last_error)


def require_fresh(engine: Engine, settings: Settings, now: datetime) -> None:
    """Raise StaleData (one sentence, with the way out) when the data is stale at ``now``."""
    stale = check(engine, settings, now)
    if stale is not None:
        raise StaleData(stale.sentence(settings.store.zone) +
                        "; pass --allow-stale to run anyway")
