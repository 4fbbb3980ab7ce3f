"""The shop's SQL database (placeholder; filled in by the SQL step)."""

from __future__ import annotations

from engine.shop.sources.types import SyncResult


def sync(engine, settings, source, now, forget) -> SyncResult:
    return SyncResult(source.name, source.kind)
