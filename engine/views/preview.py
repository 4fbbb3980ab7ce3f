"""``retain preview``: the real email for a real customer, exactly as it would be sent.

Owns: planning one customer for one campaign without writing anything, saying why they would
not get it (``retain why``'s answer: outside the segment, no consent, suppressed, already
received, held out...), and rendering the message they would get all the same, with a
placeholder coupon code, through the runner's own compose.rendered: a customer whose data
cannot make the message gets the CustomerDataError a run would record (one line naming the
customer and the field), never a traceback. Must not write to the database or send.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from engine.campaigns import models as cm
from engine.campaigns import planner
from engine.config import Settings
from engine.delivery import compose
from engine.errors import RetainError
from engine.shop import metrics
from engine.views import explain

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


def build(engine: Engine, settings: Settings, campaign: cm.Campaign, customer_ref: str,
          now: datetime) -> Preview:
    customer_id = metrics.for_customer(engine, settings, customer_ref, now)["customer_id"]
    _, answers = explain.explain(engine, settings, [campaign], str(customer_id), now)
    answer = answers[0]
    warning = None if answer.why == explain.Why.would_receive else \
        f"would not get it ({answer.why.value.replace('_', ' ')}): {answer.detail}"
    candidate = planner.as_if_in_segment(engine, settings, campaign, now, customer_id)
    if candidate is None or candidate.occasion is None:
        raise RetainError(f"no email to preview for customer {customer_id} in campaign "
                          f'"{campaign.id}": {answer.detail}')
    payload = candidate.payload
    campaign = compose.for_message(campaign, payload)  # a flow step's template and subject
    with engine.connect() as conn:
        customer = compose.customer_rows(conn, [customer_id])[customer_id]
        products = compose.product_rows(conn, compose.skus_of([payload]))
    context = compose.context(settings, campaign, customer, payload,
                              PREVIEW_CODE if payload.get("offer") else None, now, products)
    rendered = compose.rendered(compose.renderer(settings), campaign, payload, context)
    msg_id = compose.message_id(settings, PREVIEW_DELIVERY_ID, campaign.id)
    eml = compose.mime(settings, rendered, customer, msg_id, campaign.id, now,
                       person=getattr(campaign, "sender", None))
    return Preview(customer_id, rendered.subject, rendered.html, rendered.text, eml, warning)


def as_dict(preview: Preview) -> dict[str, Any]:
    return {"customer": preview.customer_id, "subject": preview.subject,
            "warning": preview.warning}
