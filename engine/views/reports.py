"""Read-only views of what happened: deliveries, and (later) redemptions, revenue and lift.

Owns aggregate and listing queries over the ledger. Must not write.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from engine.errors import did_you_mean
from engine.tables import Delivery, DeliveryStatus

DELIVERIES = Delivery.__table__


def deliveries(engine: Engine, campaign: str | None = None, status: str | None = None,
               limit: int = 50) -> list[dict[str, Any]]:
    """Newest first. Customers are shown by id: addresses stay out of terminals and logs.
    Times are aware datetimes (UTC); the command line shows them in the store's zone."""
    query = select(DELIVERIES).order_by(DELIVERIES.c.id.desc()).limit(limit)
    if campaign:
        query = query.where(DELIVERIES.c.campaign_id == campaign)
    if status:
        valid = [s.value for s in DeliveryStatus]
        if status not in valid:
            from engine.errors import NotFound
            raise NotFound(f'no delivery status "{status}"' + did_you_mean(status, valid))
        query = query.where(DELIVERIES.c.status == status)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [{"id": r.id, "campaign": r.campaign_id, "customer": r.customer_id,
             "occasion": r.occasion, "status": str(r.status.value if hasattr(r.status, "value")
                                                   else r.status),
             "attempts": r.attempts, "planned_at": r.planned_at, "sent_at": r.sent_at,
             "message_id": r.message_id, "reason": r.reason} for r in rows]
