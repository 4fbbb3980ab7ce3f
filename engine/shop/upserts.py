"""Writing one chunk of import records: matched with what the database holds, then upserted.

Owns: ``Job`` (one import's settings and running counts) and ``WRITERS``, one writer a kind
that matches each record of a chunk with the database (customers by id, and in Shopify files
by email; products by SKU; orders by id) and writes only what changed, many rows a statement
(``db.insert_many``, ``db.update_many``).
Must not read files or parse cells (csvfile.py, csvformats.py), open or commit transactions
(importer.py does, so a file imports whole or not at all), nor compute metrics.

Choices, and why:
- A Shopify order whose email is unknown creates a minimal customer (no consent, created at
  the order): Shopify exports guest checkouts that the customers export may lack, and the order
  history is what retention needs. A generic order must name a customer already imported;
  otherwise the import is refused, since a typo in an id would silently invent a person.
- Consent: accepts_marketing true on a new customer records consent at the row's created_at,
  else at ``now``; a customer who newly opts in on re-import consents at ``now``. An existing
  consent keeps its original time and source ("import:<filename>").
- Re-importing an order replaces its line items, if the file has line-item columns.
- Names (a customer's first and last name, a product's name) are one line: line breaks and
  tabs become a space, NUL and other control characters go (controlchars.one_line), and the
  summary counts the values changed. A shop's export is not refused for them: one line break
  in one name would otherwise block the whole file, or, let in, that customer's every email.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.engine import Connection

from engine import db, tables
from engine.controlchars import has_controls, one_line
from engine.errors import CsvError
from engine.shop.importkeys import chunk_keys, lookup, refuse_repeats

CUSTOMERS = tables.Customer.__table__
PRODUCTS = tables.Product.__table__
ORDERS = tables.Order.__table__
ITEMS = tables.OrderItem.__table__
# The order columns a record carries as they are (customer_id is looked up from its key).
RECORD_FIELDS = ("created_at", "local_date", "status", "total_cents", "currency", "discount_code")
NAMES = {"customers": ("first_name", "last_name"), "products": ("name",)}  # made one line


@dataclass
class Job:
    """One import in progress: its settings and its running counts."""
    name: str             # the file as the user named it, for error messages
    shopify: bool
    now: datetime | None
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    customers_created: int = 0
    has_items: bool = False            # the file has line-item columns
    customers_by_email: bool = False   # orders name their customer by email, not id
    normalised: int = 0                # names that had line breaks or control characters

    @cached_property
    def consent_source(self) -> str:
        return f"import:{Path(self.name).name}"

    def one_line_names(self, chunk: list[dict[str, Any]], kind: str) -> None:
        """Names without line breaks or control characters, counted in ``normalised``."""
        for record in chunk:
            for field in NAMES[kind]:
                value = record.get(field)
                if value and has_controls(value):
                    record[field] = one_line(value)
                    self.normalised += 1

    def moment(self, record: dict[str, Any], *candidates: datetime | None) -> datetime:
        for candidate in candidates:
            if candidate is not None:
                return candidate
        raise CsvError("is empty and no import time was given; add the column or pass now",
                       self.name, record["_row"], "created_at")


def _write_customers(conn: Connection, chunk: list[dict[str, Any]], job: Job) -> None:
    id_column, email_column = ("Customer ID", "Email") if job.shopify else ("customer_id", "email")
    refuse_repeats(conn, chunk, job.name, lambda r: (
        ((r["external_id"], 0), (r["email_key"], 1)) if r["external_id"] else
        ((r["email_key"], 1),)), (
        (id_column, lambda r: f"customer id '{r['external_id']}'"),
        (email_column, lambda r: "the same email address (compared ignoring case)")))
    job.one_line_names(chunk, "customers")
    found = conn.execute(select(CUSTOMERS).where(or_(
        CUSTOMERS.c.external_id.in_(chunk_keys(0)),
        CUSTOMERS.c.email_key.in_(chunk_keys(1))))).all()
    by_id = {row.external_id: row for row in found}
    by_email = {row.email_key: row for row in found}
    new, changed = [], []
    for record in chunk:
        old = by_id.get(record["external_id"])
        if old is None and job.shopify:  # the Customer ID is stable; else the email decides
            old = by_email.get(record["email_key"])
        owner = by_email.get(record["email_key"])
        if owner is not None and owner is not old:
            raise CsvError(f"this address already belongs to customer '{owner.external_id}'; "
                           "one email address is one customer", job.name, record["_row"],
                           email_column)
        values = {k: v for k, v in record.items()
                  if k not in ("_row", "external_id", "created_at")}
        if record["external_id"]:
            values["external_id"] = record["external_id"]
        if record["created_at"] is not None:
            values["created_at"] = record["created_at"]
        if old is None:
            if "external_id" not in values:
                values["external_id"] = _email_customer_id(values["email"])
            values["created_at"] = job.moment(record, record["created_at"], job.now)
            new.append({"first_name": "", "last_name": "", "accepts_marketing": False,
                        "tags": "", **values, **_consent(record, None, job)})
        else:
            values.update(_consent(record, old, job))
            changed.append(_differences(values, old))
    _insert(conn, CUSTOMERS, new, job)
    _update(conn, CUSTOMERS, changed, job)


def _consent(record: dict[str, Any], old: Any, job: Job) -> dict[str, Any]:
    if "accepts_marketing" not in record:
        return {}
    if not record["accepts_marketing"]:
        return {"consent_at": None, "consent_source": None}
    if old is not None and old.accepts_marketing and old.consent_at is not None:
        return {"consent_at": old.consent_at, "consent_source": old.consent_source}
    # A new customer consented when they signed up; an existing one who opts in, at this import.
    when = job.moment(record, record["created_at"], job.now) if old is None else \
        job.moment(record, job.now, record["created_at"])
    return {"consent_at": when, "consent_source": job.consent_source}


def _email_customer_id(address: str) -> str:
    """A stable id for a customer known only by email, that does not spell the address."""
    return "email:" + hashlib.sha256(address.lower().encode()).hexdigest()[:24]


def _write_products(conn: Connection, chunk: list[dict[str, Any]], job: Job) -> None:
    refuse_repeats(conn, chunk, job.name, lambda r: ((r["sku"], 0),), (
        ("Variant SKU" if job.shopify else "sku", lambda r: f"SKU '{r['sku']}'"),))
    job.one_line_names(chunk, "products")
    found = conn.execute(select(PRODUCTS).where(PRODUCTS.c.sku.in_(chunk_keys(0)))).all()
    by_sku = {row.sku: row for row in found}
    new, changed = [], []
    for record in chunk:
        old = by_sku.get(record["sku"])
        values = {k: v for k, v in record.items() if k not in ("_row", "created_at")}
        if record["created_at"] is not None:
            values["created_at"] = record["created_at"]
        price = values["price_cents"]
        compare = values.get("compare_at_price_cents",
                             old.compare_at_price_cents if old is not None else None)
        reduced = compare is not None and price < compare
        if old is None:
            values["created_at"] = job.moment(record, record["created_at"], job.now)
            values["price_reduced_at"] = values["created_at"] if reduced else None
            new.append({"category": "", "url": "", "image_url": "", **values})
            continue
        was_reduced = old.compare_at_price_cents is not None and \
            old.price_cents < old.compare_at_price_cents
        if reduced and (not was_reduced or price < old.price_cents):
            # A newly reduced price is news the new_product campaign announces.
            values["price_reduced_at"] = job.moment(record, job.now)
        changed.append(_differences(values, old))
    _insert(conn, PRODUCTS, new, job)
    _update(conn, PRODUCTS, changed, job)


def _write_orders(conn: Connection, chunk: list[dict[str, Any]], job: Job) -> None:
    refuse_repeats(conn, chunk, job.name, lambda r: ((r["external_id"], 0),), (
        ("Name" if job.shopify else "order_id",
         lambda r: f"order '{r['external_id']}' (keep all rows of an order together)"),))
    customer_ids = _customer_ids(conn, chunk, job)
    found = conn.execute(select(ORDERS).where(ORDERS.c.external_id.in_(chunk_keys(0)))).all()
    by_id = {row.external_id: row for row in found}
    old_items: dict[int, list[tuple[str, int, int]]] = {}
    if job.has_items and found:
        for item in conn.execute(
                select(ITEMS.c.order_id, ITEMS.c.sku, ITEMS.c.quantity, ITEMS.c.unit_price_cents)
                .where(ITEMS.c.order_id.in_(select(ORDERS.c.id).where(
                    ORDERS.c.external_id.in_(chunk_keys(0))))).order_by(ITEMS.c.id)):
            old_items.setdefault(item.order_id, []).append(tuple(item[1:]))
    new, new_records, changed, items, replace = [], [], [], [], []
    for record in chunk:
        values = {k: record[k] for k in RECORD_FIELDS}
        values["customer_id"] = customer_ids[record["customer_key"]]
        old = by_id.get(record["external_id"])
        if old is None:
            values["external_id"] = record["external_id"]
            new.append(values)
            new_records.append(record)
            continue
        difference = _differences(values, old)
        if job.has_items and old_items.get(old.id, []) != record["items"]:
            replace.append(old.id)
            items.extend(_item_rows(old.id, record["items"]))
            difference.setdefault(db.UPDATE_KEY, old.id)
        changed.append(difference)
    if new:
        _insert(conn, ORDERS, new, job)
        if job.has_items:
            # A plain executemany and one lookup: INSERT ... RETURNING of thousands of rows is
            # several times slower on PostgreSQL (psycopg pipelines plain executemany).
            ids = dict(conn.execute(select(ORDERS.c.external_id, ORDERS.c.id).where(
                ORDERS.c.external_id.in_(chunk_keys(0)))).all())
            for record in new_records:
                items.extend(_item_rows(ids[record["external_id"]], record["items"]))
    _update(conn, ORDERS, changed, job)
    if replace:
        conn.execute(delete(ITEMS).where(ITEMS.c.order_id.in_(replace)))
    if items:
        conn.execute(*db.insert_many(conn, ITEMS, items))


def _item_rows(order_id: int, items: list[tuple[str, int, int]]) -> Iterator[dict[str, Any]]:
    for sku, quantity, unit_price_cents in items:
        yield {"order_id": order_id, "sku": sku, "quantity": quantity,
               "unit_price_cents": unit_price_cents}


def _customer_ids(conn: Connection, chunk: list[dict[str, Any]], job: Job) -> dict[str, int]:
    """Customer key (id, or lower-case email) → customers.id; Shopify's unknown emails are added."""
    by_email = job.customers_by_email
    key_column = CUSTOMERS.c.email_key if by_email else CUSTOMERS.c.external_id
    query = select(key_column, CUSTOMERS.c.id).where(key_column.in_(lookup(conn, {
        r["customer_key"] for r in chunk})))
    known = dict(conn.execute(query).all())
    missing = [r for r in chunk if r["customer_key"] not in known]
    if missing and not job.shopify:
        first = missing[0]
        what = "no customer has this email" if by_email else \
            f"customer '{first['customer_key']}' is not in the database"
        raise CsvError(f"{what}; import the customers file first, or fix the order",
                       job.name, first["_row"], "email" if by_email else "customer_id")
    if missing:
        minimal: dict[str, dict[str, Any]] = {}
        for record in missing:
            minimal.setdefault(record["customer_key"], {
                "external_id": _email_customer_id(record["customer_key"]),
                "email": record["email"], "email_key": record["customer_key"],
                "created_at": record["created_at"], "first_name": "", "last_name": "",
                "accepts_marketing": False, "tags": ""})
        conn.execute(*db.insert_many(conn, CUSTOMERS, list(minimal.values())))
        job.customers_created += len(minimal)
        known = dict(conn.execute(query).all())
    return known


def _differences(values: dict[str, Any], old: Any) -> dict[str, Any]:
    """The changed columns of ``old`` (a row) as an update (``db.update_many``'s row, which
    names ``old`` by its id); {} when none."""
    changes = {k: v for k, v in values.items() if getattr(old, k) != v}
    return {db.UPDATE_KEY: old.id, **changes} if changes else {}


def _insert(conn: Connection, target: Any, rows: list[dict[str, Any]], job: Job) -> None:
    if rows:
        conn.execute(*db.insert_many(conn, target, rows))
        job.inserted += len(rows)


def _update(conn: Connection, target: Any, changes: list[dict[str, Any]], job: Job) -> None:
    """Execute the changes grouped by the columns they set (executemany needs one shape)."""
    job.unchanged += sum(1 for change in changes if not change)
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for change in filter(None, changes):
        shapes.setdefault(tuple(sorted(change)), []).append(change)
        job.updated += 1
    for columns, rows in shapes.items():
        if len(columns) > 1:  # more than the id: a change that sets something
            conn.execute(*db.update_many(conn, target, rows))


Writer = Callable[[Connection, list[dict[str, Any]], Job], None]
WRITERS: dict[str, Writer] = {
    "customers": _write_customers, "products": _write_products, "orders": _write_orders}
