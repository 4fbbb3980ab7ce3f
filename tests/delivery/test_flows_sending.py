"""The flows at the loopback mail server: an abandoned checkout completed between plan and send
sends nothing and the ledger says why; a shipping notice reaches a customer without marketing
consent, with its carrier and tracking link; an apology comes from a named person whose inbox
takes the replies."""

from __future__ import annotations

import email
import email.policy
import textwrap
from datetime import timedelta

from sqlalchemy import select

from engine.campaigns import models as cm
from engine.campaigns import planner
from engine.delivery import ledger
from engine.tables import Delivery
from tests.conftest import on_each_backend
from tests.crash_sender import send
from tests.shopdata import NOW, Shop

DELIVERIES = Delivery.__table__
engine = on_each_backend("flow sending")  # the claim's recheck is SQL: both databases


def load(tmp_path, text: str) -> cm.Campaign:
    path = tmp_path / "flow.yaml"
    path.write_text(textwrap.dedent(text))
    return cm.load_file(path)


def ledger_rows(engine) -> list[tuple[str, str, str | None]]:
    with engine.connect() as conn:
        return [(r.occasion, str(r.status.value if hasattr(r.status, "value") else r.status),
                 r.reason) for r in conn.execute(
            select(DELIVERIES.c.occasion, DELIVERIES.c.status, DELIVERIES.c.reason)
            .order_by(DELIVERIES.c.id))]


def body_of(message) -> str:
    parsed = email.message_from_bytes(message.data, policy=email.policy.default)
    return parsed.get_body(("plain",)).get_content()


def test_a_checkout_completed_after_the_plan_sends_nothing_and_the_ledger_says_why(
        engine, settings, project, server, tmp_path):
    flow = load(tmp_path, """
        id: abandoned
        kind: abandoned_checkout
        template: abandoned_checkout.html
        subject: Your basket
        steps: [{after: 1h}]
    """)
    shop = Shop(engine)
    ann, bob = shop.customer(), shop.customer()
    ann_checkout = shop.checkout(ann, at=NOW - timedelta(hours=2))
    shop.checkout(bob, at=NOW - timedelta(hours=2))
    ledger.record_plan(engine, planner.plan(engine, settings, flow, NOW), NOW)
    shop.complete_checkout(ann_checkout, at=NOW)  # Ann paid while the mail waited

    report = send(engine, settings, flow, server, plan=False)

    assert [m.rcpt_tos[0] for m in server.messages] == [f"c{bob}@example.com"]
    assert report.campaigns["abandoned"].cancelled == 1
    rows = dict((occasion, (status, reason)) for occasion, status, reason in ledger_rows(engine))
    assert rows[f"checkout:{ann_checkout}:1h"] == ("cancelled", "checkout_completed")
    assert "Complete your order" in body_of(server.messages[0])


def test_a_shipping_notice_reaches_a_customer_without_marketing_consent(
        engine, settings, project, server, tmp_path):
    flow = cm.load_file(project / "campaigns" / "post_purchase.yaml")
    shop = Shop(engine)
    ann = shop.customer(consent=False)
    order = shop.order(ann, days_ago=1, items={"MAT": 4500})
    shop.fulfillment(order, shipped_at=NOW - timedelta(minutes=10), carrier="Colissimo")

    send(engine, settings, flow, server)
    send(engine, settings, flow, server)  # the next tick: nothing again

    [message] = server.messages
    text = body_of(message)
    assert "Colissimo" in text and "https://track.example/" in text
    assert ledger_rows(engine) == [(f"order:{order}:shipped", "sent", None)]


def test_an_apology_comes_from_a_named_person_and_replies_go_to_her(
        engine, settings, project, server):
    flow = cm.load_file(project / "campaigns" / "review_apology.yaml")
    shop = Shop(engine)
    ann = shop.customer(first_name="Ann")
    shop.product("MAT", created_days_ago=100)
    shop.order(ann, days_ago=20, items={"MAT": 4500})
    shop.review(ann, "MAT", 1, at=NOW - timedelta(hours=3), body="Torn on arrival.")

    send(engine, settings, flow, server)

    [message] = server.messages
    parsed = email.message_from_bytes(message.data, policy=email.policy.default)
    assert parsed["Reply-To"] == "claire@maison-verte.example"
    assert "Claire Dubois" in parsed["From"]
    text = body_of(message)
    assert "Torn on arrival." in text and "SORRY" in text and "Product MAT" in text
