"""What a row of an import file means: generic and Shopify CSV → plain records.

Owns: opening a file (UTF-8 with or without BOM, comma, semicolon or tab), matching header names
(case-insensitive; unknown columns are ignored so full exports import as they are), telling a
Shopify export from a generic file, and turning each cell into the value a table stores. A bad
cell raises CsvError naming the file, the row (the header is row 1, as in a spreadsheet) and the
column. Records are plain dicts holding only the columns the file has, so an update never blanks
a column the file does not carry. Must not touch the database: importer.py matches and writes.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import itertools
import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, tzinfo
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import CsvError
from .tables import OrderStatus

T = TypeVar("T")

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
         "Lineitem price", "Lineitem sku")),
}
# A header with any of these columns was written by Shopify's admin export of that kind.
SHOPIFY_MARKERS = {
    "customers": ("Accepts Email Marketing", "Total Spent", "Total Orders", "Tax Exempt"),
    "products": ("Handle", "Variant Price", "Variant SKU"),
    "orders": ("Financial Status", "Lineitem quantity", "Lineitem sku"),
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
YES = frozenset({"yes", "y", "true", "1", "subscribed"})
NO = frozenset({"no", "n", "false", "0", "unsubscribed", "not_subscribed", ""})


@dataclass(frozen=True)
class Context:
    """Store facts a row may fall back on."""
    zone: tzinfo
    currency: str
    store_url: str

    @cached_property
    def moment(self) -> Callable[[str], datetime]:
        return moment_in(self.zone)


class BadCell(ValueError):
    """A cell that cannot be read; the message says what is wrong and how to write it."""


class CsvFile:
    """One import file, read as a stream of rows; only one chunk of rows is ever in memory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = str(path)
        self.rows_read = 0   # data rows handed out so far (the header not counted)
        self.skipped = 0     # rows the format says carry nothing to import (counted, reported)
        self.format = "generic"
        try:
            self._binary = open(self.path, "rb")  # noqa: SIM115 - closed by __exit__
            self.size = self.path.stat().st_size
        except OSError as exc:
            raise CsvError(f"cannot read the file ({exc.strerror}); check the path",
                           self.name) from None
        self.header: list[str] = []
        lines = self._text_lines()
        first = next(lines, "")
        # The header decides the delimiter: spreadsheets in comma-decimal locales write ';'.
        delimiter = max((",", ";", "\t"), key=first.count)
        self._reader = csv.reader(itertools.chain([first], lines), delimiter=delimiter)
        # Shopify's product descriptions can outgrow csv's 128 KiB default for one cell.
        csv.field_size_limit(max(csv.field_size_limit(), 16 * 1024 * 1024))
        header = [cell.strip() for cell in self._next_cells() or []]
        if not any(header):
            raise CsvError("the file is empty; its first row must name the columns", self.name)
        self.header = header
        self.index: dict[str, int] = {}
        for position, cell in enumerate(self.header):
            if cell.lower() in self.index:
                raise CsvError(f"column '{cell}' appears twice in the header; rename one",
                               self.name, 1)
            self.index[cell.lower()] = position
        # Column name as the code spells it → position, or -1; filled on first use (hot path).
        self.positions = _Positions(self.index)

    def __enter__(self) -> CsvFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._binary.close()

    def bytes_read(self) -> int:
        return self._binary.tell()

    def has(self, column: str) -> bool:
        return self.positions[column] >= 0

    def spelling(self, column: str) -> str:
        """The column's name as this file writes it."""
        position = self.index.get(column.lower())
        return column if position is None else self.header[position]

    def choose_format(self, kind: str, fmt: str) -> str:
        """Settle auto-detection and check the header has every required column."""
        if fmt == "auto":
            fmt = "shopify" if any(map(self.has, SHOPIFY_MARKERS[kind])) else "generic"
        required, _ = COLUMNS[(fmt, kind)]
        missing = [column for column in required if not self.has(column)]
        if fmt == "generic" and kind == "orders" and not (self.has("customer_id")
                                                          or self.has("email")):
            missing.append("customer_id' or 'email")
        if missing:
            self._refuse_header(kind, fmt, missing[0])
        self.format = fmt
        return fmt

    def _refuse_header(self, kind: str, fmt: str, column: str) -> NoReturn:
        close = difflib.get_close_matches(column.lower(), list(self.index), n=1, cutoff=0.8)
        hint = f" (is '{self.spelling(close[0])}' meant to be it?)" if close else ""
        for other, markers in SHOPIFY_MARKERS.items():
            if other != kind and any(map(self.has, markers)):
                hint += f"; this looks like a Shopify {other} export: import it as {other}"
        raise CsvError(f"required column '{column}' is missing from the {fmt} {kind} header"
                       f"{hint}. Columns found: {', '.join(self.header)}", self.name, 1)

    def _next_cells(self) -> list[str] | None:
        try:
            return next(self._reader, None)
        except csv.Error as exc:
            raise CsvError(f"cannot be read as CSV ({exc}); check the quotes around values",
                           self.name, self._row_being_read()) from None

    def _row_being_read(self) -> int:
        return self.rows_read + 2 if self.header else 1

    def rows(self) -> Iterator[Row]:
        width = len(self.header)
        while (cells := self._next_cells()) is not None:
            if not any(cells):
                continue  # a blank line (spreadsheets leave them at the end) holds no record
            self.rows_read += 1
            if len(cells) < width:  # some writers drop trailing empty cells
                cells.extend([""] * (width - len(cells)))
            elif len(cells) > width and any(cell.strip() for cell in cells[width:]):
                raise CsvError(f"has {len(cells)} cells but the header names {width} columns; "
                               "quote values that contain the delimiter", self.name,
                               self.rows_read + 1)
            yield Row(self, self.rows_read + 1, cells)

    def _text_lines(self) -> Iterator[str]:
        # Decoding line by line (not via a text wrapper) so a bad byte is reported at its row.
        for number, raw in enumerate(self._binary, 1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CsvError(
                    f"the file is not UTF-8 text (byte 0x{raw[exc.start]:02x} cannot be read); "
                    "save it as 'CSV UTF-8' from your spreadsheet and import it again",
                    self.name, self._row_being_read()) from None


class Row:
    """One data row; reads cells by column name and reports bad ones with row and column."""

    __slots__ = ("source", "number", "cells")

    def __init__(self, source: CsvFile, number: int, cells: list[str]):
        self.source, self.number, self.cells = source, number, cells

    def text(self, column: str) -> str:
        """The cell, stripped; "" when the file has no such column."""
        position = self.source.positions[column]
        if position < 0:
            return ""
        value = self.cells[position].strip()
        # Shopify prefixes ids, zips and phones with ' so spreadsheets keep them as text.
        if value[:1] == "'" and self.source.format == "shopify" and value[1:2] in _DIGIT_OR_PLUS:
            return value[1:]
        return value

    def fail(self, column: str, message: str) -> NoReturn:
        raise CsvError(message, self.source.name, self.number, self.source.spelling(column))

    def value(self, column: str, parse: Callable[[str], T], default: Any = None,
              need: str | None = None) -> T:
        """Parse the cell; an empty cell gives ``default``, or fails when ``need`` says why."""
        position = self.source.positions[column]  # rows() pads every row to the header's width
        text = self.cells[position].strip() if position >= 0 else ""
        if text[:1] == "'" and self.source.format == "shopify":
            text = self.text(column)
        if not text:
            if need:
                self.fail(column, f"is empty; {need}")
            return default
        try:
            return parse(text)
        except BadCell as exc:
            self.fail(column, str(exc))


class _Positions(dict):
    def __init__(self, index: dict[str, int]):
        super().__init__()
        self.index = index

    def __missing__(self, column: str) -> int:
        self[column] = self.index.get(column.lower(), -1)
        return self[column]


_DIGIT_OR_PLUS = frozenset("0123456789+")
_AMOUNT = re.compile(r"(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{1,2}))?")
_SPACED_OFFSET = re.compile(r" ([+-]\d\d:?\d\d)$")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@lru_cache(maxsize=8192)  # a shop has a few thousand price points, repeated on every order
def cents(text: str) -> int:
    """'1234.50' or '1,234.50' → 123450. A decimal comma is refused: '1,234' could be either."""
    whole, dot, fraction = text.partition(".")
    if whole.isdigit() and whole.isascii() and (
            not dot or len(fraction) <= 2 and fraction.isdigit() and fraction.isascii()):
        # The common spelling, read without a regex: this runs a million times an import.
        return int(whole) * 100 + (int(fraction) * (10 if len(fraction) == 1 else 1) if dot else 0)
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise BadCell(f'"{text}" is not an amount; write it like 1234.50')
    whole, fraction = match.groups()
    if fraction is None and "," in whole:
        raise BadCell(f'"{text}" is ambiguous (a thousands or a decimal comma?); '
                      "write it like 1234.00")
    return int(whole.replace(",", "")) * 100 + int((fraction or "0").ljust(2, "0"))


@lru_cache(maxsize=1024)
def quantity(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise BadCell(f'"{text}" is not a quantity; write a whole number like 2')
    return int(text)


def moment_in(zone: tzinfo) -> Callable[[str], datetime]:
    """A parser of ISO dates and datetimes; no offset means the store's local time."""
    def moment(text: str) -> datetime:
        if " +" in text or " -" in text:  # Shopify writes "2025-10-07 09:50:26 +0200"
            text = _SPACED_OFFSET.sub(r"\1", text)
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise BadCell(f'"{text}" is not a date; write 2025-10-07, 2025-10-07 09:50 or '
                          "2025-10-07T09:50:26+02:00") from None
        return value if value.tzinfo else value.replace(tzinfo=zone)
    return moment


def yes_no(text: str) -> bool:
    word = text.lower()
    if word in YES or word in NO:
        return word in YES
    raise BadCell(f'"{text}" is not yes or no; write yes, no, true or false')


def email(text: str) -> str:
    if _EMAIL.fullmatch(text) is None:
        # The value is not repeated: error output may end up in logs, addresses must not.
        raise BadCell("is not an email address (it needs one @, a domain, and no spaces)")
    return text


def tags(text: str) -> str:
    words = (word.strip().lower() for word in text.split(","))
    return ",".join(dict.fromkeys(word for word in words if word))


@lru_cache(maxsize=64)
def currency(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{3}", text):
        raise BadCell(f'"{text}" is not a currency code; write three letters like EUR')
    return text.upper()


@lru_cache(maxsize=256)
def timezone_name(text: str) -> str:
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadCell(f'"{text}" is not a time zone; write a name like Europe/Paris') from None
    return text


def status_from(table: dict[str, OrderStatus]) -> Callable[[str], OrderStatus]:
    def status(text: str) -> OrderStatus:
        found = table.get(text.lower())
        if found is None:
            raise BadCell(f'"{text}" is not an order status; write one of '
                          f"{', '.join(sorted(table))}")
        return found
    return status


generic_status = status_from(GENERIC_STATUSES)
shopify_status = status_from(SHOPIFY_STATUSES)


def records(source: CsvFile, kind: str, context: Context) -> Iterator[dict[str, Any]]:
    """The file's records of ``kind`` in file order; each carries its first row as ``_row``."""
    readers = {"customers": _customers, "products": _products, "orders": _orders}
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
            "price_cents": row.value("price", cents, need="every product needs a price"),
            "created_at": row.value("created_at", when),
        }
        if source.has("compare_at_price"):
            record["compare_at_price_cents"] = row.value("compare_at_price", cents)
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
            "price_cents": row.value("Variant Price", cents, need="every variant needs a price"),
            "compare_at_price_cents": row.value("Variant Compare At Price", cents),
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
        "total_cents": row.value("total", cents, need="every order needs its total"),
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
    total = row.value("Total", cents, need="the first row of an order carries its total")
    if financial == "partially_refunded":
        refunded = row.value("Refunded Amount", cents, need="a partially refunded order needs "
                             "the refunded amount")
        if refunded > total:
            row.fail("Refunded Amount", "is more than the order's total")
        total -= refunded
    if row.text("Cancelled at"):
        status = OrderStatus.cancelled
    return {
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
                           row.value(price, cents, default=0)))
