"""Fulfillments, reviews and checkouts from CSV: generic columns, Shopify's exports, and the
same all-or-nothing refusals (row and column) as the other kinds."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from engine import tables
from engine.errors import CsvError
from engine.shop import importer
from tests.conftest import NOW
from tests.sourcedata import CUSTOMERS, orders_csv


def rows(engine, table):
    with engine.connect() as conn:
        return conn.execute(select(table.__table__)).all()


@pytest.fixture
def shop(engine, settings, tmp_path):
    (tmp_path / "c.csv").write_text(CUSTOMERS)
    (tmp_path / "o.csv").write_text(orders_csv(("O-1", "C1", "2026-06-10T10:00", "40.00")))
    importer.import_file(engine, settings, "customers", tmp_path / "c.csv", now=NOW)
    importer.import_file(engine, settings, "orders", tmp_path / "o.csv", now=NOW)
    return tmp_path


def test_fulfillments_name_their_order_and_update_when_delivered(engine, settings, shop):
    path = shop / "fulfillments.csv"
    path.write_text("order_id,shipped_at,carrier,tracking_number,tracking_url\n"
                    "O-1,2026-06-11T09:00,Colissimo,6A123,https://track.example/6A123\n")
    assert importer.import_file(engine, settings, "fulfillments", path).inserted == 1
    path.write_text("order_id,shipped_at,delivered_at\nO-1,2026-06-11T09:00,2026-06-13T15:00\n")
    assert importer.import_file(engine, settings, "fulfillments", path).updated == 1
    (row,) = rows(engine, tables.Fulfillment)
    assert row.external_id == "O-1" and row.carrier == "Colissimo"    # kept: not in the file
    assert row.delivered_at.isoformat() == "2026-06-13T13:00:00+00:00"
    path.write_text("order_id,shipped_at\nO-404,2026-06-11\n")
    with pytest.raises(CsvError, match=r"row 2: column 'order_id': order 'O-404' is not in"):
        importer.import_file(engine, settings, "fulfillments", path)


def test_reviews_need_a_rating_from_one_to_five(engine, settings, shop):
    path = shop / "reviews.csv"
    path.write_text("review_id,email,sku,rating,text,created_at\n"
                    "R1,ANNA@example.com,LS-S,5,Lovely,2026-06-12\n"
                    "R2,bob@example.com,LS-S,6,Too good,2026-06-12\n")
    with pytest.raises(CsvError, match=r"row 3: column 'rating': \"6\" is not a rating"):
        importer.import_file(engine, settings, "reviews", path)
    assert rows(engine, tables.Review) == []
    path.write_text(path.read_text().replace(",6,", ",2,"))
    assert importer.import_file(engine, settings, "reviews", path).inserted == 2
    assert sorted(r.rating for r in rows(engine, tables.Review)) == [2, 5]


def test_checkouts_with_items_guests_and_the_order_they_became(engine, settings, shop):
    path = shop / "checkouts.csv"
    path.write_text("checkout_id,email,created_at,total,order_id,sku,quantity,unit_price\n"
                    "K1,anna@example.com,2026-06-10T09:00,40.00,O-1,LS-S,1,40.00\n"
                    "K2,guest@example.com,2026-06-12T20:00,67.00,,LS-S,1,49.00\n"
                    "K2,guest@example.com,2026-06-12T20:00,67.00,,CANDLE-1,1,18.00\n")
    assert importer.import_file(engine, settings, "checkouts", path).inserted == 2
    by_id = {r.external_id: r for r in rows(engine, tables.Checkout)}
    assert by_id["K1"].order_id is not None and by_id["K1"].completed_at is not None
    assert by_id["K2"].customer_id is None and by_id["K2"].email_key == "guest@example.com"
    assert json.loads(by_id["K2"].items) == [["LS-S", 1, 4900], ["CANDLE-1", 1, 1800]]


def test_shopify_exports_give_fulfillments_and_abandoned_checkouts(engine, settings, tmp_path):
    export = tmp_path / "orders_export.csv"
    export.write_text("Name,Email,Financial Status,Fulfilled at,Created at,Total\n"
                      "#1001,anna@example.com,paid,2026-06-11 10:00:00 +0200,"
                      "2026-06-10 09:00:00 +0200,59.80\n")
    importer.import_file(engine, settings, "orders", export, now=NOW)
    importer.import_file(engine, settings, "orders", export, now=NOW)  # twice: still one
    (shipment,) = rows(engine, tables.Fulfillment)
    assert shipment.external_id == "#1001.1" and shipment.shipped_at.hour == 8
    checkouts = tmp_path / "checkouts_export.csv"
    checkouts.write_text("Id,Email,Created at,Total,Currency,Abandoned Checkout URL,"
                         "Lineitem quantity,Lineitem sku,Lineitem price\n"
                         "'3011,anna@example.com,2026-06-12 21:00:00 +0200,49.00,EUR,"
                         "https://shop.example/recover/abc,1,LS-S,49.00\n")
    assert importer.import_file(engine, settings, "checkouts", checkouts).inserted == 1
    (checkout,) = rows(engine, tables.Checkout)
    assert checkout.external_id == "3011" and checkout.url.endswith("/recover/abc")
    assert checkout.customer_id is not None
