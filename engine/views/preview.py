"""``retain preview``: the real email for a real customer, exactly as it would be sent.

Owns: planning one customer for one campaign without writing anything, saying why they would
not get it (``retain why``'s answer: outside the segment, no consent, suppressed, already
received, held out...), and rendering the message they would get all the same, with a
placeholder coupon code, through the runner's own compose.rendered: a customer whose data
cannot make the message gets the CustomerDataError a run would record (one line naming the
customer and the field), never a traceback. And the test send (``--send-to``): that message
addressed to someone else, its subject marked [TEST], handed to the transport once. Must not
write to the database, nor send to the customer: a test message goes to the given address
only, its unsubscribe link names no customer, and nothing of it is in the ledger.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from engine.campaigns import models as cm
from engine.campaigns import planner
from engine.config import Settings
from engine.delivery import compose
from engine.errors import DeliveryError, RetainError
from engine.shop import metrics
from engine.transport import OutgoingMessage, SendStatus, Transport
from engine.views import explain

PREVIEW_CODE = "PREVIEW-CODE"
PREVIEW_DELIVERY_ID = 0
TEST_PREFIX = "[TEST] "
NOBODY = 0  # the customer id a test message's unsubscribe link names: no customer has it


@dataclass(frozen=True)
class Preview:
    customer_id: int
    subject: str
    html: str
    text: str
    eml: bytes
    warning: str | None
    send_to: str | None = None    # a test message's recipient
    message_id: str = ""


def build(engine: Engine, settings: Settings, campaign: cm.Campaign, customer_ref: str,
          now: datetime, send_to: str | None = None) -> Preview:
    """The email ``customer_ref`` would get; with ``send_to``, the same email as a test
    message for that address (``send`` hands it to a transport)."""
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
    msg_id = compose.message_id(settings, PREVIEW_DELIVERY_ID, campaign.id)
    if send_to is not None:
        # The customer's own address and unsubscribe link stay out of a test message.
        customer = {**customer, "id": NOBODY, "email": send_to}
        msg_id = f"<test.{uuid.uuid4().hex}.{campaign.id}@{compose.sender_domain(settings)}>"
    context = compose.context(settings, campaign, customer, payload,
                              PREVIEW_CODE if payload.get("offer") else None, now, products)
    rendered = compose.rendered(compose.renderer(settings), campaign, payload, context)
    if send_to is not None:
        rendered = replace(rendered, subject=TEST_PREFIX + rendered.subject)
    eml = compose.mime(settings, rendered, customer, msg_id, campaign.id, now,
                       person=getattr(campaign, "sender", None))
    return Preview(customer_id, rendered.subject, rendered.html, rendered.text, eml, warning,
                   send_to, msg_id)


def send(settings: Settings, preview: Preview, transport: Transport) -> str:
    """Hand a test message (``build(..., send_to=...)``) to ``transport`` once, outside the
    ledger: no retry, no suppression. Returns what the server said; DeliveryError when it did
    not take the message."""
    if preview.send_to is None:
        raise ValueError("only a test message (build with send_to) may be sent")
    outcome = transport.send(OutgoingMessage(
        mail_from=compose.return_path(settings), rcpt_to=preview.send_to, data=preview.eml,
        message_id=preview.message_id))
    said = " ".join(str(x) for x in (outcome.code, outcome.enhanced, outcome.detail) if x)
    if outcome.status is not SendStatus.sent:
        raise DeliveryError(f"the mail server did not take the test message ({outcome.status}): "
                            f"{said or 'no reply'}")
    return said or "accepted"


def as_dict(preview: Preview) -> dict[str, Any]:
    return {"customer": preview.customer_id, "subject": preview.subject,
            "warning": preview.warning}
