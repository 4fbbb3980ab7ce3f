"""The flow kinds: each step at its moment, once per occasion; late data skipped with a reason;
transactional mail without consent or cap but never to a bad address; vip early access from one
declaration and a yearly anniversary. Clocks are simulated, across days and a DST change."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from engine import config
from engine.campaigns import models as cm
from engine.campaigns import planner
from engine.consent import suppressions
from engine.delivery import ledger
from engine.errors import Invalid
from engine.tables import DeliveryStatus, Skip
from engine.views import explain
from tests.conftest import on_each_backend
from tests.shopdata import NOW, Shop

S = DeliveryStatus


engine = on_each_backend("flow")


@pytest.fixture
def shop(engine):
    return Shop(engine)


def load(tmp_path, text: str) -> cm.Campaign:
    path = tmp_path / "campaign.yaml"
    path.write_text(textwrap.dedent(text))
    return cm.load_file(path)


def plan(engine, settings, campaign, now) -> dict[int, planner.Candidate]:
    return {c.customer_id: c for batch in planner.plan(engine, settings, campaign, now)
            for c in batch}


def record(engine, settings, campaign, now) -> dict:
    return ledger.record_plan(engine, planner.plan(engine, settings, campaign, now), now)


def planned(engine, settings, campaign, now) -> dict[int, str]:
    """customer → occasion of what a run at ``now`` would plan."""
    return {k: c.occasion for k, c in plan(engine, settings, campaign, now).items()
            if c.status == S.planned}


POST_PURCHASE = """
    id: post_purchase
    kind: post_purchase
    subject: Your order is on its way
    max_late: 2d
    steps:
      - {on: shipped, template: post_purchase.html}
      - {on: delivered, after: 5d, template: review_request.html, subject: How is it going}
"""


def test_the_shipping_notice_goes_at_the_first_tick_after_the_fulfillment_once(
        engine, settings, shop, tmp_path):
    flow = load(tmp_path, POST_PURCHASE)
    ann = shop.customer(consent=False)  # transactional: no marketing consent needed
    order = shop.order(ann, days_ago=2, items={"MAT": 4500})
    shipped = NOW - timedelta(minutes=5)
    shop.fulfillment(order, shipped_at=shipped, carrier="DHL")

    assert planned(engine, settings, flow, shipped - timedelta(minutes=10)) == {}
    found = plan(engine, settings, flow, NOW)[ann]
    assert found.status == S.planned and found.occasion == f"order:{order}:shipped"
    assert found.payload["flow"]["shipment"]["carrier"] == "DHL"
    assert found.payload["flow"]["shipment"]["tracking_url"].startswith("https://track.example/")
    record(engine, settings, flow, NOW)
    # The next tick: this step is in the ledger; the delivered step is not due.
    later = plan(engine, settings, flow, NOW + timedelta(minutes=15))[ann]
    assert later.skip == Skip.already_received


def test_the_review_request_goes_five_days_after_delivery_across_a_dst_change(
        engine, settings, shop, tmp_path):
    flow = load(tmp_path, POST_PURCHASE)
    ann = shop.customer()
    # Delivered on Friday 27 March 2026, 10:00 UTC; Paris moves to summer time on the 29th.
    delivered = datetime(2026, 3, 27, 10, 0, tzinfo=UTC)
    order = shop.order(ann, at=delivered - timedelta(days=3), items={"MAT": 4500})
    shop.fulfillment(order, shipped_at=delivered - timedelta(days=2), delivered_at=delivered)
    record(engine, settings, flow, delivered - timedelta(days=1))  # the shipping notice
    due = delivered + timedelta(days=5)
    assert planned(engine, settings, flow, due - timedelta(minutes=1)) == {}
    assert planned(engine, settings, flow, due) == {ann: f"order:{order}:delivered+5d"}
    record(engine, settings, flow, due)
    for day in range(1, 4):  # the following days: nothing more for this order
        assert planned(engine, settings, flow, due + timedelta(days=day)) == {}


def test_a_step_whose_data_came_too_late_is_skipped_and_why_says_so(
        engine, settings, shop, tmp_path):
    flow = load(tmp_path, POST_PURCHASE)
    ann = shop.customer()
    order = shop.order(ann, days_ago=6)
    # The shop synced a week late: the parcel shipped 3 days ago (max_late is 2 days).
    shop.fulfillment(order, shipped_at=NOW - timedelta(days=3))
    found = plan(engine, settings, flow, NOW)[ann]
    assert found.skip == Skip.too_late and found.status is None
    assert record(engine, settings, flow, NOW) == {}
    _, [answer] = explain.explain(engine, settings, [flow], str(ann), NOW)
    assert answer.why == explain.Why.too_late
    assert f"order:{order}:shipped" in answer.detail and "2d" in answer.detail


def test_transactional_mail_skips_consent_and_cap_but_not_a_bounced_address(
        engine, settings, shop, tmp_path, config_path):
    text = config_path.read_text() + "\nlimits:\n  max_emails_per_customer: {count: 1, days: 7}\n"
    config_path.write_text(text)
    settings = config.load(config_path, environ={})
    flow = load(tmp_path, POST_PURCHASE)
    unsubscribed = shop.customer(email="gone@example.com")
    bounced = shop.customer(email="bad@example.com")
    busy = shop.customer()
    for who in (unsubscribed, bounced, busy):
        order = shop.order(who, days_ago=1)
        shop.fulfillment(order, shipped_at=NOW - timedelta(hours=1))
    with engine.begin() as conn:
        suppressions.add(conn, "gone@example.com", "unsubscribed", "test", NOW)
        suppressions.add(conn, "bad@example.com", "bounced", "test", NOW)
    found = plan(engine, settings, flow, NOW)
    assert found[unsubscribed].status == S.planned
    assert found[bounced].status == S.suppressed
    assert found[busy].status == S.planned
    assert found[busy].transactional


def test_validate_refuses_an_offer_on_transactional_mail(tmp_path):
    with pytest.raises(Invalid, match="transactional mail never carries an offer"):
        load(tmp_path, """
            id: sorry
            kind: review_followup
            purpose: transactional
            template: review_followup.html
            subject: Sorry
            when: {rating: {lte: 2}}
            coupon: {percent_off: 10}
        """)


APOLOGY = """
    id: review_apology
    kind: review_followup
    template: review_followup.html
    subject: Sorry
    when: {rating: {lte: 2}}
    sender: {name: Claire Dubois, reply_to: claire@shop.example}
    coupon: {percent_off: 15, prefix: SORRY}
"""


def test_a_bad_review_gets_one_apology_with_a_coupon_per_review(engine, settings, shop,
                                                                 tmp_path):
    flow = load(tmp_path, APOLOGY)
    ann, bob = shop.customer(), shop.customer()
    shop.order(ann, days_ago=20, items={"MAT": 4500})
    first = shop.review(ann, "MAT", 1, at=NOW - timedelta(hours=2), body="Torn on arrival.")
    shop.review(bob, "MAT", 5, at=NOW - timedelta(hours=2))  # a good one: not this campaign
    found = plan(engine, settings, flow, NOW)
    assert set(k for k, c in found.items() if c.status == S.planned) == {ann}
    assert found[ann].occasion == f"review:{first}" and found[ann].offer.percent_off == 15
    assert found[ann].payload["flow"]["review"]["excerpt"] == "Torn on arrival."
    record(engine, settings, flow, NOW)
    assert planned(engine, settings, flow, NOW + timedelta(days=1)) == {}
    second = shop.review(ann, "MAT", 2, at=NOW + timedelta(days=2))
    assert planned(engine, settings, flow, NOW + timedelta(days=2, hours=1)) == {
        ann: f"review:{second}"}


ABANDONED = """
    id: abandoned
    kind: abandoned_checkout
    template: abandoned_checkout.html
    subject: Your basket
    steps:
      - after: 1h
      - after: 24h
        coupon: {percent_off: 10, prefix: BASKET}
"""


def test_abandoned_checkout_steps_at_one_hour_and_a_day_once_each(engine, settings, shop,
                                                                    tmp_path):
    flow = load(tmp_path, ABANDONED)
    ann = shop.customer()
    started = NOW - timedelta(hours=23, minutes=30)
    checkout = shop.checkout(ann, at=started)
    assert planned(engine, settings, flow, started + timedelta(minutes=59)) == {}
    at_one_hour = started + timedelta(hours=1)
    found = plan(engine, settings, flow, at_one_hour)[ann]
    assert found.occasion == f"checkout:{checkout}:1h" and found.offer is None
    assert found.checkout_id == checkout
    record(engine, settings, flow, at_one_hour)
    assert planned(engine, settings, flow, started + timedelta(hours=5)) == {}
    at_a_day = started + timedelta(hours=24)
    found = plan(engine, settings, flow, at_a_day)[ann]
    assert found.occasion == f"checkout:{checkout}:24h" and found.offer.percent_off == 10
    record(engine, settings, flow, at_a_day)
    assert planned(engine, settings, flow, started + timedelta(hours=30)) == {}


def test_a_completed_checkout_is_not_planned(engine, settings, shop, tmp_path):
    flow = load(tmp_path, ABANDONED)
    ann = shop.customer()
    checkout = shop.checkout(ann, at=NOW - timedelta(hours=2))
    shop.complete_checkout(checkout, at=NOW - timedelta(hours=1, minutes=30))
    assert planned(engine, settings, flow, NOW) == {}


def test_flow_steps_must_grow_and_name_existing_events(tmp_path):
    with pytest.raises(Invalid, match="later and later"):
        load(tmp_path, ABANDONED.replace("after: 24h", "after: 30m"))
    with pytest.raises(Invalid, match="not a duration"):
        load(tmp_path, ABANDONED.replace("after: 24h", "after: tomorrow"))
    with pytest.raises(Invalid, match="steps"):
        load(tmp_path, POST_PURCHASE.replace("on: shipped", "on: packed"))


VIP = """
    id: vip
    kind: vip
    template: vip.html
    subject: Before anyone else
    anniversary_subject: Thank you
    segment: {tag: vip}
    early_access: {campaign: new-arrivals, days: 3}
"""
NEW_ARRIVALS = """
    id: new-arrivals
    kind: new_product
    template: new_product.html
    subject: New
    match: all
    cooldown_days: 0
"""


def folder(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "vip.yaml").write_text(textwrap.dedent(VIP))
    (tmp_path / "c" / "new.yaml").write_text(textwrap.dedent(NEW_ARRIVALS))
    found = {c.id: c for c in cm.load_folder(tmp_path / "c")}
    return found["vip"], found["new-arrivals"]


def test_vip_early_access_comes_days_before_everyone_else_from_one_declaration(
        engine, settings, shop, tmp_path):
    vip, news = folder(tmp_path)
    star = shop.customer(tags="vip")
    plain = shop.customer()
    for who in (star, plain):
        shop.order(who, days_ago=400, items={"OLD": 1000})
    shop.product("NEW", created_days_ago=1)
    # Day 1: the vip gets it at once; everyone else waits for day 3.
    assert planned(engine, settings, vip, NOW) == {star: "early:NEW"}
    assert planned(engine, settings, news, NOW) == {}
    record(engine, settings, vip, NOW)
    in_two_days = NOW + timedelta(days=2)
    assert planned(engine, settings, news, in_two_days) == {plain: "products:NEW"}
    # The vip is not told twice: the product was announced to them already.
    assert planned(engine, settings, vip, in_two_days) == {}


def test_a_vip_gets_an_anniversary_note_once_a_year(engine, settings, shop, tmp_path):
    vip, _ = folder(tmp_path)
    star = shop.customer(tags="vip")
    first = datetime(2024, 6, 15, 8, 0, tzinfo=UTC)
    shop.order(star, at=first)
    shop.order(star, days_ago=30)
    assert planned(engine, settings, vip, NOW - timedelta(days=1)) == {}
    found = plan(engine, settings, vip, NOW)[star]
    assert found.occasion == "anniversary:2026" and found.payload["flow"]["vip"]["years"] == 2
    record(engine, settings, vip, NOW)
    for day in (1, 5, 100):
        assert planned(engine, settings, vip, NOW + timedelta(days=day)) == {}
    assert planned(engine, settings, vip, NOW + timedelta(days=365)) == {star: "anniversary:2027"}


def test_a_flow_payload_is_plain_json(engine, settings, shop, tmp_path):
    flow = load(tmp_path, POST_PURCHASE)
    ann = shop.customer()
    order = shop.order(ann, days_ago=1)
    shop.fulfillment(order, shipped_at=NOW - timedelta(hours=1))
    record(engine, settings, flow, NOW)
    with engine.connect() as conn:
        payload = conn.exec_driver_sql("SELECT payload FROM deliveries").scalar()
    assert json.loads(payload)["flow"]["order"]["total_cents"] == 1000
