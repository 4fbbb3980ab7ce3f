"""What a row of an import file means: generic and Shopify CSV → plain records.

Owns: the column maps of each format and kind (``COLUMNS``), telling a Shopify export from a
generic file and checking its header (``choose_format``), and turning the rows of a file into
records (``records``): customers, product variants, and orders with their line items on
consecutive rows. Unknown columns are ignored so full exports import as they are. Records are
plain dicts holding only the columns the file has, so an update never blanks a column the file
does not carry. Shopify rows without an email (phone-only customers, point-of-sale orders) are
skipped and counted in ``CsvFile.skipped``: nobody can be emailed about them. Must not read bytes
or parse cells by hand (csvfile.py does) nor touch the database (importer.py matches and writes).
"""

from __future__ import annotations

import difflib
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, tzinfo
from functools import cached_property
from typing import Any, NoReturn

from engine.errors import CsvError
from engine.shop import csvevents
from engine.shop.csvfile import (
    CsvFile,
    Row,
    currency,
    email,
    moment_in,
    quantity,
    status_from,
    tags,
    timezone_name,
    yes_no,
)
from engine.tables import OrderStatus

# Per format and kind: (required columns, optional columns), spelled as the format spells them.
# Generic orders need customer_id or email; choose_format() checks that pair. The optional
# columns are the documented rest: any other column is ignored.
COLUMNS = {
    ("generic", "customers"): (
        ("customer_id", "email"),
        ("first_name", "last_name", "accepts_marketing", "created_at", "country", "timezone",
         "tags")),
    ("generic", "products"): (
        ("sku", "name", "price"),
        ("category", "compare_at_price", "created_at", "url", "image_url")),
    ("generic", "orders"): (
        ("order_id", "created_at", "total"),
        ("customer_id", "email", "status", "discount_code", "currency", "sku", "quantity",
         "unit_price")),
    ("shopify", "customers"): (
        ("Email",),
        ("Customer ID", "First Name", "Last Name", "Accepts Email Marketing", "Accepts Marketing",
         "Default Address Country Code", "Country Code", "Tags")),
    ("shopify", "products"): (
        ("Handle", "Title", "Variant Price"),
        ("Variant SKU", "Variant Compare At Price", "Type", "Product Category", "Image Src",
         "Variant Image", "Option1 Value", "Option2 Value", "Option3 Value")),
    ("shopify", "orders"): (
        ("Name", "Email", "Financial Status", "Created at", "Total"),
        ("Cancelled at", "Refunded Amount", "Discount Code", "Currency", "Lineitem quantity",
         "Lineitem price", "Lineitem sku", "Fulfilled at")),
    **csvevents.COLUMNS,  # fulfillments, reviews, checkouts
}
# The columns of names, made one line without control characters when written (upserts.NAMES):
# a NUL in them is cleaned, not refused (csvfile.CsvFile.cleaned).
NAME_COLUMNS = {
    ("generic", "customers"): ("first_name", "last_name"), ("generic", "products"): ("name",),
    ("shopify", "customers"): ("First Name", "Last Name"),
    ("shopify", "products"): ("Title", "Option1 Value", "Option2 Value", "Option3 Value"),
}
# A header with any of these columns was written by Shopify's admin export of that kind.
SHOPIFY_MARKERS = {
    "customers": ("Accepts Email Marketing", "Total Spent", "Total Orders", "Tax Exempt"),
    "products": ("Handle", "Variant Price", "Variant SKU"),
    "orders": ("Financial Status", "Lineitem quantity", "Lineitem sku"),
    **csvevents.SHOPIFY_MARKERS,
}
GENERIC_STATUSES = {
    **dict.fromkeys(("paid", "complete", "completed", "processing", "fulfilled", "shipped",
                     "delivered", "closed"), OrderStatus.paid),
    "refunded": OrderStatus.refunded,
    **dict.fromkeys(("cancelled", "canceled", "voided", "void"), OrderStatus.cancelled),
}
# Shopify "Financial Status": an order awaiting or holding payment still counts as bought.
SHOPIFY_STATUSES = {
    **dict.fromkeys(("paid", "partially_paid", "authorized", "pending", "partially_refunded"),
                    OrderStatus.paid),
    "refunded": OrderStatus.refunded,
    **dict.fromkeys(("voided", "expired"), OrderStatus.cancelled),
}
generic_status = status_from(GENERIC_STATUSES)
shopify_status = status_from(SHOPIFY_STATUSES)


@dataclass(frozen=True)
class Context:
    """Store facts a row may fall back on."""
    zone: tzinfo
    currency: str
    store_url: str

    @cached_property
    def moment(self) -> Callable[[str], datetime]:
        return moment_in(self.zone)


def choose_format(source: CsvFile, kind: str, fmt: str) -> str:
    """Settle auto-detection and check the header has every required column."""
    if fmt == "auto":
        fmt = "shopify" if any(map(source.has, SHOPIFY_MARKERS[kind])) else "generic"
    if (fmt, kind) not in COLUMNS:
        raise CsvError(f"Shopify has no export of {kind}; write the generic columns and import "
                       "with --format generic", source.name, 1)
    required, _ = COLUMNS[(fmt, kind)]
    missing = [column for column in required if not source.has(column)]
    if fmt == "generic" and kind in ("orders", *csvevents.NEEDS_CUSTOMER) and not (
            source.has("customer_id") or source.has("email")):
        missing.append("customer_id' or 'email")
    if missing:
        _refuse_header(source, kind, fmt, missing[0])
    source.format = fmt
    source.cleaned = frozenset(column.lower() for column in NAME_COLUMNS.get((fmt, kind), ()))
    return fmt


def _refuse_header(source: CsvFile, kind: str, fmt: str, column: str) -> NoReturn:
    close = difflib.get_close_matches(column.lower(), list(source.index), n=1, cutoff=0.8)
    hint = f" (is '{source.spelling(close[0])}' meant to be it?)" if close else ""
    for other, markers in SHOPIFY_MARKERS.items():
        if other != kind and any(map(source.has, markers)):
            hint += f"; this looks like a Shopify {other} export: import it as {other}"
    raise CsvError(f"required column '{column}' is missing from the {fmt} {kind} header"
                   f"{hint}. Columns found: {', '.join(source.header)}", source.name, 1)


def records(source: CsvFile, kind: str, context: Context) -> Iterator[dict[str, Any]]:
    """The file's records of ``kind`` in file order; each carries its first row as ``_row``."""
    readers = {"customers": _customers, "products": _products, "orders": _orders}
    if kind in csvevents.KINDS:
        return csvevents.records(source, kind, context)
    return readers[kind](source, context)


def _customers(source: CsvFile, context: Context) -> Iterator[dict[str, Any]]:
    shopify = source.format == "shopify"
    email_column = "Email" if shopify else "email"
    names = {"first_name": "First Name", "last_name": "Last Name"} if shopify else {
        "first_name": "first_name", "last_name": "last_name"}
    accepts = "accepts_marketing"
    if shopify:
        accepts = "Accepts Email Marketing" if source.has("Accepts Email Marketing") else \
            "Accepts Marketing"
    country = "country"
    if shopify:
        country = "Default Address Country Code" if source.has("Default Address Country Code") \
            else "Country Code"
    when = context.moment
    present = {column: source.has(column) for column in (
        *names.values(), accepts, country, "timezone", "tags")}
    present["timezone"] = present["timezone"] and not shopify
    for row in source.rows():
        address = row.text(email_column)
        if shopify and not address:
            source.skipped += 1  # a customer known by phone only cannot get email
            continue
        record: dict[str, Any] = {"_row": row.number}
        record["email"] = row.value(email_column, email, need="every customer needs an email")
        record["email_key"] = record["email"].lower()
        external_id = row.text("Customer ID" if shopify else "customer_id")
        if not (external_id or shopify):
            row.fail("customer_id", "is empty; every customer needs the shop's id for them")
        record["external_id"] = external_id or None
        for field, column in names.items():
            if present[column]:
                record[field] = row.text(column)
        if present[accepts]:
            record["accepts_marketing"] = row.value(accepts, yes_no, default=False)
        if present[country]:
            record["country"] = row.text(country) or None
        if present["timezone"]:
            record["timezone"] = row.value("timezone", timezone_name)
        if present["tags"]:
            record["tags"] = tags(row.text("tags"))
        record["created_at"] = None if shopify else row.value("created_at", when)
        yield record


def _products(source: CsvFile, context: Context) -> Iterator[dict[str, Any]]:
    if source.format == "shopify":
        yield from _shopify_products(source, context)
        return
    when = context.moment
    optional_text = [c for c in ("category", "url", "image_url") if source.has(c)]
    for row in source.rows():
        record: dict[str, Any] = {
            "_row": row.number,
            "sku": row.value("sku", str, need="every product needs its SKU"),
            "name": row.value("name", str, need="every product needs a name"),
            "price_cents": row.amount("price", need="every product needs a price"),
            "created_at": row.value("created_at", when),
        }
        if source.has("compare_at_price"):
            record["compare_at_price_cents"] = row.amount("compare_at_price")
        for column in optional_text:
            record[column] = row.text(column)
        yield record


def _shopify_products(source: CsvFile, context: Context) -> Iterator[dict[str, Any]]:
    """One record per variant. Product fields sit on the first row of a handle only; rows with
    neither SKU nor price hold extra images."""
    handle, product = "", {}
    for row in source.rows():
        if row.text("Handle") != handle:
            handle = row.value("Handle", str, need="every row names its product's handle")
            category = row.text("Type") or row.text("Product Category").split(">")[-1].strip()
            product = {
                "title": row.value("Title", str, need=f'the first row of product "{handle}" '
                                   "needs its title; keep a product's rows together"),
                "category": category,
                "url": f"{context.store_url.rstrip('/')}/products/{handle}",
                "image_url": row.text("Image Src"),
            }
        sku, price = row.text("Variant SKU"), row.text("Variant Price")
        if not sku and not price:
            continue  # an image row of the product above
        options = [row.text(f"Option{n} Value") for n in (1, 2, 3)]
        options = [option for option in options if option and option != "Default Title"]
        name = product["title"] + (" - " + " / ".join(options) if options else "")
        yield {
            "_row": row.number,
            # Variants without a SKU still need a stable key: the handle plus their options.
            "sku": sku or "/".join([handle, *options]),
            "name": name,
            "category": product["category"],
            "price_cents": row.amount("Variant Price", need="every variant needs a price"),
            "compare_at_price_cents": row.amount("Variant Compare At Price"),
            "url": product["url"],
            "image_url": row.text("Variant Image") or product["image_url"],
            "created_at": None,
        }


def _orders(source: CsvFile, context: Context) -> Iterator[dict[str, Any]]:
    """One record per order; an order's line items are on consecutive rows (the order repeated,
    or in Shopify's export, its order-level fields on the first row only)."""
    shopify = source.format == "shopify"
    id_column = "Name" if shopify else "order_id"
    # Generic order-level columns: present in a generic header by choose_format's checks.
    level = [c for c in ("customer_id", "email", "created_at", "total", "status", "currency",
                         "discount_code") if source.has(c) and not shopify]
    # Shopify leaves later rows' order fields empty and is not compared (len is a cheap stand-in).
    order_level = operator.itemgetter(*[source.positions[c] for c in level]) if level else len
    order: dict[str, Any] | None = None
    first: Any = None
    first_raw: Any = None
    for row in source.rows():
        external_id = row.text(id_column)
        if not external_id:
            row.fail(id_column, "is empty; every row needs its order's id")
        if order is not None and external_id == order["external_id"]:
            if not order["customer_key"]:
                source.skipped += 1
            # A repeated order must agree with its first row (empty cells may be left out).
            if not shopify and order_level(row.cells) != first_raw:
                for column in level:
                    if row.text(column) not in ("", first.text(column)):
                        row.fail(column, f"differs from row {order['_row']}, where order "
                                 f"'{external_id}' starts; the rows of an order must agree")
            _add_item(order, row, shopify)
            continue
        if order is not None and order["customer_key"]:
            yield order
        order = (_shopify_order if shopify else _generic_order)(row, external_id, context)
        first = row
        first_raw = order_level(row.cells)
        if not order["customer_key"]:
            source.skipped += 1  # a Shopify order without an email (e.g. point of sale)
        _add_item(order, row, shopify)
    if order is not None and order["customer_key"]:
        yield order


def _generic_order(row: Row, external_id: str, context: Context) -> dict[str, Any]:
    source = row.source
    if source.has("customer_id"):
        customer_key = row.value("customer_id", str, need="every order needs its customer's id")
    else:
        customer_key = row.value("email", email, need="every order needs its customer").lower()
    created_at = row.value("created_at", context.moment, need="every order needs a date")
    return {
        "_row": row.number, "external_id": external_id, "customer_key": customer_key,
        "created_at": created_at, "local_date": created_at.astimezone(context.zone).date(),
        "status": row.value("status", generic_status, default=OrderStatus.paid),
        "total_cents": row.amount("total", need="every order needs its total"),
        "currency": row.value("currency", currency, default=context.currency),
        "discount_code": row.text("discount_code") or None,
        "items": [] if source.has("sku") else None,
    }


def _shopify_order(row: Row, external_id: str, context: Context) -> dict[str, Any]:
    customer_key = row.value("Email", email, default="").lower()
    created_at = row.value("Created at", context.moment,
                           need="the first row of an order carries its date")
    financial = row.text("Financial Status").lower()
    status = row.value("Financial Status", shopify_status,
                       need="the first row of an order carries its financial status")
    total = row.amount("Total", need="the first row of an order carries its total")
    if financial == "partially_refunded":
        refunded = row.amount("Refunded Amount", need="a partially refunded order needs "
                             "the refunded amount")
        if refunded > total:
            row.fail("Refunded Amount", "is more than the order's total")
        total -= refunded
    if row.text("Cancelled at"):
        status = OrderStatus.cancelled
    extra = {"fulfilled_at": row.value("Fulfilled at", context.moment)} \
        if row.source.has("Fulfilled at") else {}
    return {**extra,
        "_row": row.number, "external_id": external_id, "customer_key": customer_key,
        "email": row.text("Email"), "created_at": created_at,
        "local_date": created_at.astimezone(context.zone).date(), "status": status,
        "total_cents": total, "currency": row.value("Currency", currency,
                                                    default=context.currency),
        "discount_code": row.text("Discount Code") or None,
        "items": [] if row.source.has("Lineitem quantity") else None,
    }


ITEM_COLUMNS = {True: ("Lineitem sku", "Lineitem quantity", "Lineitem price"),
                False: ("sku", "quantity", "unit_price")}


def _add_item(order: dict[str, Any], row: Row, shopify: bool) -> None:
    if order["items"] is None:
        return
    sku_column, count, price = ITEM_COLUMNS[shopify]
    sku = row.text(sku_column)
    if not sku and not shopify:
        return  # a generic row without a SKU is an order without items
    # Shopify line items of products without a SKU are kept with an empty one: they count
    # towards the order but match no product.
    order["items"].append((sku, row.value(count, quantity, default=1),
                           row.amount(price, default=0)))
