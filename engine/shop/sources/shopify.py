"""Shopify webhooks (placeholder; filled in by the webhooks step)."""

from __future__ import annotations

from engine.shop.sources.types import SyncResult


def sync(engine, settings, source, now, forget) -> SyncResult:
    return SyncResult(source.name, source.kind)
