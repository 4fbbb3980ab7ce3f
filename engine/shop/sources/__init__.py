"""Sources: the shop's data arriving by itself, kept in sync without anyone running an import.

Owns the configured ``sources:`` (config.yaml) and one sync pass over them (``sync``): a drop
folder of CSV files (folder.py), Shopify webhooks (shopify.py: received by ``retain serve``; a
pass re-applies deliveries that could not be applied), the shop's own SQL database
(sqlsource.py), and what each sync leaves behind (syncstate.py). One failing source does not
stop the others; its error is recorded as one line. Must not send or render, nor read the
clock: ``now`` is the moment of the pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from engine.config import Settings
from engine.errors import NotFound, RetainError, did_you_mean
from engine.shop.sources import syncstate
from engine.shop.sources.types import Forget, SyncResult

__all__ = ["sync", "SyncResult", "Forget", "secrets_of"]


def secrets_of(source) -> tuple[str, ...]:
    """The source's secrets, to be kept out of any error line."""
    found = []
    for field in ("secret", "url"):
        value = getattr(source, field, None)
        if value is not None:
            found.append(value.get_secret_value())
    return tuple(found)


def chosen(settings: Settings, names: Iterable[str] | None = None) -> list:
    names = list(names or [])
    known = {source.name: source for source in settings.sources}
    for name in names:
        if name not in known:
            raise NotFound(f'no source is named "{name}" in config.yaml'
                           f"{did_you_mean(name, known) if known else ' (it has no sources:)'}")
    return [known[n] for n in names] if names else list(settings.sources)


def sync(engine: Engine, settings: Settings, now: datetime, names: Iterable[str] | None = None,
         *, forget: Forget, sleep: Callable[[float], None] = time.sleep) -> list[SyncResult]:
    """One pass over the named sources (default: all), in config order."""
    from engine.shop.sources import folder, shopify, sqlsource

    passes = {"folder": lambda s: folder.sync(engine, settings, s, now, sleep),
              "shopify_webhooks": lambda s: shopify.sync(engine, settings, s, now, forget),
              "sql": lambda s: sqlsource.sync(engine, settings, s, now, forget)}
    results = []
    for source in chosen(settings, names):
        with engine.begin() as conn:
            syncstate.attempted(conn, source.name, source.kind, now)
        try:
            result = passes[source.kind](source)
        except (RetainError, SQLAlchemyError, OSError, UnicodeError) as exc:
            result = SyncResult(source.name, source.kind,
                                error=syncstate.one_line(exc, secrets_of(source)))
        record(engine, result, now)
        results.append(result)
    return results


def record(engine: Engine, result: SyncResult, now: datetime) -> None:
    """Leave the pass's outcome in the source's sync state."""
    with engine.begin() as conn:
        if result.arrived:
            syncstate.succeeded(conn, result.source, result.kind, now, result.applied,
                                result.watermark, clear_error=result.error is None)
        if result.error:
            syncstate.failed(conn, result.source, result.kind, now, result.error)
