"""Attribution and the report's figures per campaign: coupon beats window, window boundaries,
refunded and cancelled orders, redemption after expiry, a held-out customer who orders, two
campaigns touching one customer. SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from engine.shop import redemptions
from engine.views import results
from tests.conftest import on_each_backend
from tests.shopdata import NOW, Shop
from tests.views.ledgerdata import Ledger

SENT = NOW - timedelta(days=20)
DAY = timedelta(days=1)


engine = on_each_backend("attribution")


@pytest.fixture
def shop(engine):
    return Shop(engine)


@pytest.fixture
def ledger(engine):
    return Ledger(engine)


def report(engine, settings, *campaigns, as_of=NOW):
    return {c["id"]: c for c in results.build(engine, settings, as_of, list(campaigns) or None)
            .as_dict()["campaigns"]}


def use_code(engine, order_id: int, code: str) -> None:
    """The order carried ``code`` (as an import would write it), and redemptions are refreshed."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE orders SET discount_code = :c WHERE id = :o"),
                     {"c": code, "o": order_id})
        redemptions.refresh(conn)


def test_window_boundaries(engine, settings, shop, ledger):
    """start <= order < start + 5 days: the first instant counts, the last does not."""
    at_start, inside, at_end = shop.customer(), shop.customer(), shop.customer()
    for customer in (at_start, inside, at_end):
        ledger.delivery(customer, at=SENT)
    shop.order(at_start, at=SENT, total=1000)
    shop.order(inside, at=SENT + 5 * DAY - timedelta(seconds=1), total=2000)
    shop.order(at_end, at=SENT + 5 * DAY, total=4000)
    before = shop.customer()
    ledger.delivery(before, at=SENT)
    shop.order(before, at=SENT - timedelta(seconds=1), total=8000)
    winback = report(engine, settings)["winback"]
    assert winback["attributed_orders"] == 2
    assert winback["attributed_revenue"] == "30.00"
    assert winback["conversion"]["mailed"] == 0.5


def test_window_days_comes_from_config(engine, settings, shop, ledger):
    customer = shop.customer()
    ledger.delivery(customer, at=SENT)
    shop.order(customer, at=SENT + 6 * DAY)
    assert report(engine, settings)["winback"]["attributed_orders"] == 0
    wider = settings.model_copy(update={"reporting": settings.reporting.model_copy(
        update={"window_days": 7})})
    assert report(engine, wider)["winback"]["attributed_orders"] == 1


def test_coupon_beats_window(engine, settings, shop, ledger):
    """The order redeems winback's coupon, though a newsletter went out after it."""
    customer = shop.customer()
    ledger.mailed(customer, "BACK-AAA", at=SENT)
    ledger.delivery(customer, "newsletter", at=SENT + DAY, occasion="news:1")
    order = shop.order(customer, at=SENT + 2 * DAY, total=5000)
    use_code(engine, order, "back-aaa")
    found = report(engine, settings)
    assert found["winback"]["attributed_by_coupon"] == 1
    assert found["winback"]["attributed_revenue"] == "50.00"
    assert found["winback"]["discount_cost"] == "12.50"  # 20 % off: €50 paid of €62.50
    assert found["newsletter"]["attributed_orders"] == 0


def test_a_coupon_redeemed_late_is_attributed_and_reported_apart(engine, settings, shop,
                                                                  ledger):
    customer = shop.customer()
    ledger.mailed(customer, "BACK-LATE", at=SENT, valid_days=3)
    use_code(engine, shop.order(customer, at=SENT + 10 * DAY, total=3000), "BACK-LATE")
    winback = report(engine, settings)["winback"]
    assert winback["coupons_redeemed"] == 1
    assert winback["coupons_redeemed_after_expiry"] == 1
    assert winback["coupons_expired"] == 0
    assert winback["attributed_by_coupon"] == 1  # outside the window, but the code says so


def test_refunded_and_cancelled_orders_are_not_attributed(engine, settings, shop, ledger):
    refunded, cancelled = shop.customer(), shop.customer()
    ledger.mailed(refunded, "BACK-REF", at=SENT)
    ledger.delivery(cancelled, at=SENT)
    use_code(engine, shop.order(refunded, at=SENT + DAY, status="refunded"), "BACK-REF")
    shop.order(cancelled, at=SENT + DAY, status="cancelled")
    winback = report(engine, settings)["winback"]
    assert winback["attributed_orders"] == 0 and winback["coupons_redeemed"] == 0
    assert winback["conversion"]["mailed"] == 0


def test_a_held_out_customer_who_orders_counts_for_the_holdout(engine, settings, shop, ledger):
    mailed, held = shop.customer(), shop.customer()
    ledger.delivery(mailed, at=SENT)
    ledger.delivery(held, at=SENT, status="held_out")
    shop.order(held, at=SENT + DAY, total=4000)
    winback = report(engine, settings)["winback"]
    assert winback["attributed_orders"] == 0
    assert winback["holdout_orders"] == 1
    assert winback["conversion"]["holdout"] == 1.0
    assert winback["revenue_per_recipient"]["holdout"] == "40.00"
    assert winback["sent"] == 1 and winback["held_out"] == 1


def test_two_campaigns_touching_one_customer_the_most_recent_wins(engine, settings, shop,
                                                                  ledger):
    customer = shop.customer()
    ledger.delivery(customer, "winback", at=SENT)
    ledger.delivery(customer, "bundle", at=SENT + DAY, occasion="yoga-set:1")
    shop.order(customer, at=SENT + 2 * DAY, total=3000)
    shop.order(customer, at=SENT + 3 * DAY, total=1000)  # not the first: nobody's
    found = report(engine, settings)
    assert found["bundle"]["attributed_orders"] == 1
    assert found["bundle"]["attributed_revenue"] == "30.00"
    assert found["winback"]["attributed_orders"] == 0
    # Each group's conversion still watches its own window: both saw an order.
    assert found["winback"]["conversion"]["mailed"] == found["bundle"]["conversion"]["mailed"] == 1


def test_as_of_sees_what_was_known_then(engine, settings, shop, ledger):
    customer = shop.customer()
    ledger.mailed(customer, "BACK-ASOF", at=SENT)
    use_code(engine, shop.order(customer, at=SENT + 2 * DAY), "BACK-ASOF")
    then = report(engine, settings, as_of=SENT + DAY)["winback"]
    assert then["coupons_redeemed"] == 0 and then["attributed_orders"] == 0


def test_steps_of_a_winback_and_the_verdict_without_a_holdout(engine, settings, shop, ledger):
    for tier in ("drowsy", "drowsy", "sleeping"):
        ledger.delivery(shop.customer(), at=SENT, occasion=f"{tier}:2026-01-0{len(tier) % 9}")
    winback = report(engine, settings, "winback")["winback"]
    assert [s["id"] for s in winback["steps"]] == ["drowsy", "sleeping"]
    assert [s["sent"] for s in winback["steps"]] == [2, 1]
    assert winback["verdict"] == "no holdout: lift cannot be measured"
    assert winback["conversion"]["ci95"] is None
