"""Shopify webhooks over real HTTP on 127.0.0.1: signatures checked, deliveries stored then
applied once, retries and duplicate ids harmless, late old versions ignored; the one-click
unsubscribe endpoint served by the same app."""

from __future__ import annotations

import copy
import json
import threading
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine import tables
from engine.consent import suppressions, unsubscribe
from engine.service import status, webapp
from engine.shop import sources
from engine.shop.sources import shopify, syncstate
from tests.conftest import NOW
from tests.sourcedata import with_sources

SECRET = "shpss_test_secret_0123456789"
DATA = Path(__file__).resolve().parents[1] / "data" / "shopify"


def payload(name: str) -> dict:
    return json.loads((DATA / f"{name}.json").read_text())


class Shop:
    """Posts webhooks to the served app as Shopify does."""

    def __init__(self, url: str):
        self.url, self.sent = url, 0

    def post(self, topic: str, body: dict | bytes, webhook_id: str | None = None,
             secret: str = SECRET, signature: str | None = None) -> tuple[int, str]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.sent += 1
        request = urllib.request.Request(self.url + "/webhooks/shopify", data=raw, headers={
            "Content-Type": "application/json", "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": shopify.signature(secret, raw) if signature is None
            else signature,
            "X-Shopify-Shop-Domain": "maison-verte.myshopify.com",
            "X-Shopify-Webhook-Id": webhook_id or f"wh-{self.sent}",
            "X-Shopify-API-Version": "2025-07"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()


@pytest.fixture
def served(engine, config_path):
    settings = with_sources(config_path, f"  - {{name: shopify, kind: shopify_webhooks, "
                                         f"secret: {SECRET}}}\n")
    clock = [NOW]
    server = webapp.server(settings, engine, "127.0.0.1", 0, lambda: clock[0])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield settings, Shop(f"http://127.0.0.1:{server.server_address[1]}"), clock
    server.shutdown()
    server.server_close()


def one(engine, table, **where):
    with engine.connect() as conn:
        query = select(table.__table__)
        for key, value in where.items():
            query = query.where(table.__table__.c[key] == value)
        return conn.execute(query).first()


def count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table.__table__)).scalar()


def test_a_signed_order_is_applied_and_a_forged_one_refused(engine, served):
    settings, shop, _ = served
    order = payload("orders_create")
    assert shop.post("orders/create", order, secret="not-the-secret") == (
        401, "the HMAC signature does not match\n")
    assert shop.post("orders/create", order, signature="")[0] == 401
    tampered = json.dumps(order).encode()
    good_signature = shopify.signature(SECRET, tampered)
    assert shop.post("orders/create", tampered.replace(b"398.00", b"1.00"),
                     signature=good_signature)[0] == 401
    assert count(engine, tables.Order) == 0 and count(engine, tables.WebhookReceipt) == 0

    assert shop.post("orders/create", order, "wh-order-1") == (200, "applied\n")
    row = one(engine, tables.Order, external_id="#9999")
    assert row.total_cents == 39800 and row.discount_code == "SUMMER10"
    customer = one(engine, tables.Customer, id=row.customer_id)
    assert customer.external_id == "115310627314723954" and customer.accepts_marketing
    assert customer.country == "CA"
    with engine.connect() as conn:
        items = conn.execute(select(tables.OrderItem.__table__.c.sku)).scalars().all()
    assert sorted(items) == ["IPOD2008BLACK", "IPOD2008PINK"]
    receipt = one(engine, tables.WebhookReceipt, webhook_id="wh-order-1")
    assert receipt.applied_at == NOW and receipt.body is None     # the data lives in the tables
    state = syncstate.read(engine)["shopify"]
    assert state.last_success_at == NOW and state.rows_total >= 2


def test_retries_and_duplicate_ids_never_apply_twice(engine, served):
    settings, shop, _ = served
    refund = payload("refunds_create")
    assert shop.post("orders/create", payload("orders_create"), "wh-1")[1] == "applied\n"
    assert shop.post("refunds/create", refund, "wh-2")[1] == "applied\n"
    assert one(engine, tables.Order, external_id="#9999").total_cents == 19900
    # Shopify retries the refund (same webhook id): answered, not applied again.
    assert shop.post("refunds/create", refund, "wh-2") == (200, "already received\n")
    assert one(engine, tables.Order, external_id="#9999").total_cents == 19900
    # orders/updated after the refund carries the refunded total itself: still 199.
    updated = copy.deepcopy(payload("orders_create"))
    updated.update(updated_at="2026-06-18T12:01:00-04:00", current_total_price="199.00",
                   financial_status="partially_refunded")
    assert shop.post("orders/updated", updated, "wh-3")[1] == "applied\n"
    assert one(engine, tables.Order, external_id="#9999").total_cents == 19900
    # The same refund delivered again under another id is older than the order applied.
    assert shop.post("refunds/create", refund, "wh-4")[1] == "applied\n"
    assert one(engine, tables.Order, external_id="#9999").total_cents == 19900
    # An old version arriving late (orders/create's, retried after a day) changes nothing.
    assert shop.post("orders/updated", payload("orders_create"), "wh-5")[1] == "applied\n"
    row = one(engine, tables.Order, external_id="#9999")
    assert row.total_cents == 19900 and row.status == "paid"
    # Cancelled: no longer counted.
    cancelled = copy.deepcopy(updated)
    cancelled.update(updated_at="2026-06-19T09:00:00-04:00", cancelled_at="2026-06-19T09:00:00"
                     "-04:00", financial_status="refunded", current_total_price="0.00")
    shop.post("orders/cancelled", cancelled, "wh-6")
    assert one(engine, tables.Order, external_id="#9999").status == "cancelled"
    assert count(engine, tables.Order) == 1
    assert count(engine, tables.WebhookReceipt) == 6  # wh-1 to wh-6, the retry not stored


def test_fulfillments_checkouts_and_a_fulfillment_before_its_order(engine, served):
    settings, shop, clock = served
    shipped = payload("fulfillments_create")
    status_code, text = shop.post("fulfillments/create", shipped, "wh-f")
    assert status_code == 200 and text.startswith("stored; not applied yet")
    assert "not in the database" in text
    assert "#9999" in syncstate.read(engine)["shopify"].last_error
    shop.post("checkouts/create", payload("checkouts_create"), "wh-c")
    checkout = one(engine, tables.Checkout, external_id="901414060")
    assert checkout.order_id is None and checkout.url.endswith("recover?key=a1b2")
    shop.post("orders/create", payload("orders_create"), "wh-o")
    # The order completes its checkout; the next sync applies the waiting fulfillment.
    checkout = one(engine, tables.Checkout, external_id="901414060")
    assert checkout.order_id is not None and checkout.completed_at is not None
    clock[0] = NOW + timedelta(minutes=5)
    from engine.consent import erasure
    (result,) = sources.sync(engine, settings, clock[0], forget=erasure.forget)
    assert result.error is None
    fulfillment = one(engine, tables.Fulfillment, external_id="#9999.1")
    assert fulfillment.carrier == "UPS" and fulfillment.tracking_number == "1z827wk74630"
    assert syncstate.read(engine)["shopify"].last_error is None
    delivered = dict(shipped, shipment_status="delivered", updated_at="2026-06-19T15:00:00Z")
    shop.post("fulfillments/update", delivered, "wh-f2")
    assert one(engine, tables.Fulfillment, external_id="#9999.1").delivered_at is not None


def test_redact_forgets_the_customer_and_data_requests_are_listed(engine, served):
    settings, shop, _ = served
    shop.post("orders/create", payload("orders_create"), "wh-o")
    assert shop.post("customers/redact", payload("customers_redact"), "wh-r")[0] == 200
    customer = one(engine, tables.Customer, external_id="115310627314723954")
    assert customer.email == "" and customer.first_name == "" and not customer.accepts_marketing
    assert count(engine, tables.Order) == 1                        # kept for the metrics
    with engine.connect() as conn:
        assert suppressions.is_suppressed(conn, "jon@example.com")
    request = {"shop_id": 954889, "shop_domain": "maison-verte.myshopify.com",
               "orders_requested": [820982911946154508],
               "customer": {"id": 115310627314723954, "email": "jon@example.com"},
               "data_request": {"id": 9999}}
    shop.post("customers/data_request", request, "wh-d")
    assert shopify.data_requests(engine, "shopify") == ["115310627314723954"]
    picture = status.sources(engine, settings, NOW)
    assert picture[0]["data_requests"] == ["115310627314723954"]


def test_the_same_server_still_serves_one_click_unsubscribe(engine, served, settings):
    settings_with_source, shop, _ = served
    from tests.shopdata import Shop as Rows
    customer = Rows(engine).customer(email="ann@example.com")
    token = unsubscribe.token(settings_with_source, customer)
    with urllib.request.urlopen(f"{shop.url}/unsubscribe?token={token}", timeout=10) as page:
        assert page.status == 200 and b"Unsubscribe" in page.read()
    form = f"token={token}&List-Unsubscribe=One-Click".encode()
    with urllib.request.urlopen(urllib.request.Request(
            f"{shop.url}/unsubscribe", data=form), timeout=10) as done:
        assert done.status == 200
    with engine.connect() as conn:
        assert suppressions.is_suppressed(conn, "ann@example.com")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{shop.url}/webhooks/shopify", timeout=10)
    assert refused.value.code == 405
