"""What a row of an event file means: fulfillments, product reviews and checkouts → records.

Owns the column maps of the three kinds of shop events the post-purchase flows need (generic
columns for each; Shopify's abandoned-checkouts export for checkouts) and turning rows into
records: a fulfillment (order, shipped_at, carrier, tracking number and URL, delivered_at), a
review (customer, SKU, rating 1–5, text, created_at), a checkout (customer or email, line items
on consecutive rows as in an orders file, total, created_at, completed order if any). Records
hold only the columns the file has, so an update never blanks a column the file lacks.
csvformats.py registers these kinds beside customers, products and orders. Must not read bytes
or parse cells by hand (csvfile.py does) nor touch the database (eventupserts.py writes).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from engine.shop.csvfile import BadCell, CsvFile, Row, currency, email, quantity

if TYPE_CHECKING:
    from engine.shop.csvformats import Context

KINDS = ("fulfillments", "reviews", "checkouts")
COLUMNS = {
    ("generic", "fulfillments"): (
        ("order_id", "shipped_at"),
        ("fulfillment_id", "carrier", "tracking_number", "tracking_url", "delivered_at")),
    ("generic", "reviews"): (
        ("review_id", "sku", "rating", "created_at"),
        ("customer_id", "email", "text")),
    ("generic", "checkouts"): (
        ("checkout_id", "created_at", "total"),
        ("customer_id", "email", "currency", "completed_at", "order_id", "url", "sku",
         "quantity", "unit_price")),
    ("shopify", "checkouts"): (
        ("Id", "Created at", "Total"),
        ("Email", "Currency", "Completed at", "Abandoned Checkout URL", "Lineitem quantity",
         "Lineitem sku", "Lineitem price")),
}
# A header with any of these was written by Shopify's admin export of that kind.
SHOPIFY_MARKERS = {"fulfillments": (), "reviews": (),
                   "checkouts": ("Abandoned Checkout URL",)}
# Kinds whose generic files name their customer by customer_id or email: one is required.
NEEDS_CUSTOMER = ("reviews", "checkouts")


def rating(text: str) -> int:
    if text not in ("1", "2", "3", "4", "5"):
        raise BadCell(f'"{text}" is not a rating; write a whole number from 1 to 5')
    return int(text)


def records(source: CsvFile, kind: str, context: Context) -> Iterator[dict[str, Any]]:
    readers = {"fulfillments": _fulfillments, "reviews": _reviews, "checkouts": _checkouts}
    return readers[kind](source, context)


def _customer(row: Row, record: dict[str, Any], need: str | None) -> None:
    """customer_key (the shop's id) and email_key of a generic row; one of them is needed."""
    source = row.source
    record["customer_key"] = row.text("customer_id") or None if source.has("customer_id") \
        else None
    address = row.value("email", email) if source.has("email") else None
    record["email_key"] = address.lower() if address else None
    if need and record["customer_key"] is None and record["email_key"] is None:
        row.fail("customer_id" if source.has("customer_id") else "email", f"is empty; {need}")


def _fulfillments(source: CsvFile, context: Context) -> Iterator[dict[str, Any]]:
    when = context.moment
    optional = [c for c in ("carrier", "tracking_number", "tracking_url") if source.has(c)]
    for row in source.rows():
        order = row.value("order_id", str, need="every fulfillment names its order")
        record: dict[str, Any] = {
            "_row": row.number, "order_key": order,
            # Without an id, an order has one fulfillment: the order's own id names it.
            "external_id": row.text("fulfillment_id") or order,
            "shipped_at": row.value("shipped_at", when, need="every fulfillment has a date"),
        }
        for column in optional:
            record[column] = row.text(column)
        if source.has("delivered_at"):
            record["delivered_at"] = row.value("delivered_at", when)
        yield record


def _reviews(source: CsvFile, context: Context) -> Iterator[dict[str, Any]]:
    when = context.moment
    for row in source.rows():
        record: dict[str, Any] = {
            "_row": row.number,
            "external_id": row.value("review_id", str, need="every review needs its id"),
            "sku": row.value("sku", str, need="every review names its product's SKU"),
            "rating": row.value("rating", rating, need="every review has a rating from 1 to 5"),
            "created_at": row.value("created_at", when, need="every review has a date"),
        }
        _customer(row, record, "every review names its customer by customer_id or email")
        if source.has("text"):
            record["body"] = row.text("text")
        yield record


SHOPIFY_CHECKOUT = {"id": "Id", "created_at": "Created at", "total": "Total",
                    "currency": "Currency", "completed_at": "Completed at",
                    "url": "Abandoned Checkout URL", "sku": "Lineitem sku",
                    "quantity": "Lineitem quantity", "unit_price": "Lineitem price"}
GENERIC_CHECKOUT = {**{k: k for k in SHOPIFY_CHECKOUT}, "id": "checkout_id"}


def _checkouts(source: CsvFile, context: Context) -> Iterator[dict[str, Any]]:
    """One record per checkout; its line items on consecutive rows, the checkout repeated (or,
    in Shopify's export, its checkout-level fields on the first row only)."""
    shopify = source.format == "shopify"
    names = SHOPIFY_CHECKOUT if shopify else GENERIC_CHECKOUT
    has_items = source.has(names["sku"])
    checkout: dict[str, Any] | None = None
    for row in source.rows():
        external_id = row.value(names["id"], str, need="every row names its checkout")
        if checkout is not None and external_id == checkout["external_id"]:
            _add_item(checkout, row, names)
            continue
        if checkout is not None and (checkout["customer_key"] or checkout["email_key"]):
            yield checkout
        checkout = {"_row": row.number, "external_id": external_id,
                    "created_at": row.value(names["created_at"], context.moment,
                                            need="the first row of a checkout carries its date"),
                    "total_cents": row.amount(names["total"],
                                              need="the first row of a checkout carries its total"),
                    "currency": row.value(names["currency"], currency, default=context.currency),
                    "items": [] if has_items else None}
        if shopify:
            address = row.value("Email", email, default="")
            checkout["customer_key"], checkout["email_key"] = None, address.lower() or None
            if not address:
                source.skipped += 1  # nobody can be emailed about it
        else:
            _customer(row, checkout, "every checkout names its customer by customer_id or email")
            if source.has("order_id"):
                checkout["order_key"] = row.text("order_id") or None
        if source.has(names["completed_at"]):
            checkout["completed_at"] = row.value(names["completed_at"], context.moment)
        if source.has(names["url"]):
            checkout["url"] = row.text(names["url"])
        _add_item(checkout, row, names)
    if checkout is not None and (checkout["customer_key"] or checkout["email_key"]):
        yield checkout


def _add_item(checkout: dict[str, Any], row: Row, names: dict[str, str]) -> None:
    if checkout["items"] is None:
        return
    sku = row.text(names["sku"])
    if sku or row.text(names["quantity"]):
        checkout["items"].append((sku, row.value(names["quantity"], quantity, default=1),
                                  row.amount(names["unit_price"], default=0)))
