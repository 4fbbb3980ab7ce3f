"""``retain preview``: the real email for a real customer, exactly as it would be sent.

Owns: planning one customer for one campaign without writing anything, saying why they would
not get it (outside the segment, no consent, suppressed, already received, held out...), and
rendering the message they would get all the same, with a placeholder coupon code. Must not
write to the database or send.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from . import campaigns as cm
from . import compose, metrics, planner, render
from .config import Settings
from .errors import RetainError
from .tables import DeliveryStatus

PREVIEW_CODE = "PREVIEW-CODE"
PREVIEW_DELIVERY_ID = 0


@dataclass(frozen=True)
class Preview:
    customer_id: int
    subject: str
    html: str
    text: str
    eml: bytes
    warning: str | None


def _why_not(candidate: planner.Candidate | None, in_segment: bool, campaign: cm.Campaign
             ) -> str | None:
    if not in_segment:
        return ("not in the audience: the segment is " +
                (campaign.segment.explain() if campaign.segment is not None else "everyone"))
    if candidate is None:
        return None
    if candidate.skip:
        return f"would not get it: {candidate.skip.value.replace('_', ' ')}"
    if candidate.status == DeliveryStatus.held_out:
        return "would not get it: in the campaign's holdout (control) group"
    if candidate.status == DeliveryStatus.suppressed:
        return "would not get it: the address is suppressed (unsubscribed or bounced)"
    return None


def build(engine: Engine, settings: Settings, campaign: cm.Campaign, customer_ref: str,
          now: datetime) -> Preview:
    customer_id = metrics.for_customer(engine, settings, customer_ref, now)["customer_id"]
    in_segment = _one(engine, settings, campaign, customer_id, now, True) is not None
    candidate = _one(engine, settings, campaign, customer_id, now, False)
    warning = _why_not(candidate, in_segment, campaign)
    if candidate is None or candidate.occasion is None:
        reason = warning or "nothing to offer"
        if candidate is not None and candidate.skip == planner.Skip.nothing_to_offer:
            reason = f"{campaign.kind} has nothing to offer this customer at this date"
        raise RetainError(f"no email to preview for customer {customer_id} in campaign "
                          f'"{campaign.id}": {reason}')
    payload = candidate.payload
    if candidate.offer is None and campaign.offer_kind != "none" and not payload.get("nudge"):
        raise RetainError(f"no offer for customer {customer_id}: {warning or 'over budget'}")
    with engine.connect() as conn:
        customer = compose.customer_rows(conn, [customer_id])[customer_id]
        products = compose.product_rows(conn, compose.skus_of([payload]))
    context = compose.context(settings, campaign, customer, payload,
                              PREVIEW_CODE if payload.get("offer") else None, now, products)
    renderer = render.Renderer(settings.folder("templates"), compose.store_context(settings))
    rendered = renderer.render(campaign.template, compose.subject_for(campaign, payload), context)
    msg_id = compose.message_id(settings, PREVIEW_DELIVERY_ID, campaign.id)
    eml = compose.mime(settings, rendered, customer, msg_id, campaign.id, now)
    return Preview(customer_id, rendered.subject, rendered.html, rendered.text, eml, warning)


def _one(engine: Engine, settings: Settings, campaign: cm.Campaign, customer_id: int,
         now: datetime, use_segment: bool) -> planner.Candidate | None:
    for batch in planner.plan(engine, settings, campaign, now, only_customer=customer_id,
                              use_segment=use_segment):
        for candidate in batch:
            return candidate
    return None


def as_dict(preview: Preview) -> dict[str, Any]:
    return {"customer": preview.customer_id, "subject": preview.subject,
            "warning": preview.warning}
