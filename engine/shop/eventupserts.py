"""Writing one chunk of event records: fulfillments, reviews and checkouts, matched then upserted.

Owns the writers of the three event kinds (``WRITERS``) and ``after_orders``, what a chunk of
orders implies for them: a Shopify orders export's ``Fulfilled at`` is the order's first
fulfillment (named ``<order>.1``, as Shopify names it), and an order that names its checkout
completes it. Each event is matched by its external id; a fulfillment needs its order in the
database, a review its customer (by id or email); a checkout's customer is optional (a guest
is known by email only). Must not read files or parse cells, nor open or commit transactions
(importer.py does, so a file imports whole or not at all).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from engine import db, tables
from engine.errors import CsvError
from engine.shop.importkeys import chunk_keys, lookup, refuse_repeats
from engine.shop.upserts import Job, _differences, _insert, _update

ORDERS, CUSTOMERS = tables.Order.__table__, tables.Customer.__table__
FULFILLMENTS, REVIEWS = tables.Fulfillment.__table__, tables.Review.__table__
CHECKOUTS = tables.Checkout.__table__


def _existing(conn: Connection, target: Any) -> dict[str, Any]:
    """The chunk's rows already in ``target``, by external id (keys left by refuse_repeats)."""
    found = conn.execute(select(target).where(target.c.external_id.in_(chunk_keys(0)))).all()
    return {row.external_id: row for row in found}


def _order_ids(conn: Connection, keys: set[str]) -> dict[str, int]:
    keys = {key for key in keys if key}
    if not keys:
        return {}
    return dict(conn.execute(select(ORDERS.c.external_id, ORDERS.c.id).where(
        ORDERS.c.external_id.in_(lookup(conn, keys)))).all())


def _customer_ids(conn: Connection, chunk: list[dict[str, Any]]) -> Callable[[dict], int | None]:
    """A function from a record to its customers.id (by the shop's id, else by email), or None."""
    ids = {r["customer_key"] for r in chunk if r.get("customer_key")}
    emails = {r["email_key"] for r in chunk if r.get("email_key")}
    by_id = dict(conn.execute(select(CUSTOMERS.c.external_id, CUSTOMERS.c.id).where(
        CUSTOMERS.c.external_id.in_(lookup(conn, ids)))).all()) if ids else {}
    by_email = dict(conn.execute(select(CUSTOMERS.c.email_key, CUSTOMERS.c.id).where(
        CUSTOMERS.c.email_key.in_(lookup(conn, emails)))).all()) if emails else {}

    def find(record: dict[str, Any]) -> int | None:
        return by_id.get(record.get("customer_key")) or by_email.get(record.get("email_key"))
    return find


def _write(conn: Connection, target: Any, chunk: list[dict[str, Any]], job: Job,
           values_of: Callable[[dict[str, Any]], dict[str, Any]],
           defaults: dict[str, Any]) -> None:
    found = _existing(conn, target)
    new, changed = [], []
    for record in chunk:
        values = values_of(record)
        old = found.get(record["external_id"])
        if old is None:
            new.append({**defaults, **values, "external_id": record["external_id"]})
        else:
            changed.append(_differences(values, old))
    _insert(conn, target, new, job)
    _update(conn, target, changed, job)


def _refuse_repeats(conn: Connection, chunk: list[dict[str, Any]], job: Job, column: str,
                    what: str) -> None:
    refuse_repeats(conn, chunk, job.name, lambda r: ((r["external_id"], 0),), (
        (column, lambda r: f"{what} '{r['external_id']}'"),))


def _write_fulfillments(conn: Connection, chunk: list[dict[str, Any]], job: Job) -> None:
    _refuse_repeats(conn, chunk, job, "fulfillment_id", "fulfillment")
    orders = _order_ids(conn, {r["order_key"] for r in chunk})
    for record in chunk:
        if record["order_key"] not in orders:
            raise CsvError(f"order '{record['order_key']}' is not in the database; import the "
                           "orders first, or fix the id", job.name, record["_row"], "order_id")
    fields = ("shipped_at", "carrier", "tracking_number", "tracking_url", "delivered_at")
    _write(conn, FULFILLMENTS, chunk, job, lambda r: {
        "order_id": orders[r["order_key"]], **{k: r[k] for k in fields if k in r}},
        {"carrier": "", "tracking_number": "", "tracking_url": "", "delivered_at": None})


def _write_reviews(conn: Connection, chunk: list[dict[str, Any]], job: Job) -> None:
    _refuse_repeats(conn, chunk, job, "review_id", "review")
    customer_of = _customer_ids(conn, chunk)
    for record in chunk:
        if customer_of(record) is None:
            column = "customer_id" if record.get("customer_key") else "email"
            raise CsvError("no customer matches this review's customer; import the customers "
                           "first, or fix the id", job.name, record["_row"], column)
    fields = ("sku", "rating", "body", "created_at")
    _write(conn, REVIEWS, chunk, job, lambda r: {
        "customer_id": customer_of(r), **{k: r[k] for k in fields if k in r}}, {"body": ""})


def _write_checkouts(conn: Connection, chunk: list[dict[str, Any]], job: Job) -> None:
    _refuse_repeats(conn, chunk, job, "checkout_id", "checkout")
    customer_of = _customer_ids(conn, chunk)
    orders = _order_ids(conn, {r.get("order_key") for r in chunk})

    def values(record: dict[str, Any]) -> dict[str, Any]:
        out = {k: record[k] for k in ("created_at", "total_cents", "currency", "url",
                                      "completed_at") if k in record}
        out["customer_id"] = customer_of(record)
        out["email_key"] = record.get("email_key")
        if record.get("items") is not None:
            out["items"] = json.dumps([list(item) for item in record["items"]])
        if record.get("order_key") in orders:
            out["order_id"] = orders[record["order_key"]]
            out.setdefault("completed_at", record.get("completed_at") or record["created_at"])
        return out
    _write(conn, CHECKOUTS, chunk, job, values, {"items": "[]", "url": "", "order_id": None,
                                                 "completed_at": None})


def after_orders(conn: Connection, chunk: list[dict[str, Any]], job: Job) -> None:
    """What orders imply for events: the export's first fulfillment; completed checkouts."""
    shipped = [r for r in chunk if r.get("fulfilled_at") is not None]
    completing = [r for r in chunk if r.get("checkout_key")]
    if not (shipped or completing):
        return
    orders = _order_ids(conn, {r["external_id"] for r in shipped + completing})
    if shipped:
        names = [f"{r['external_id']}.1" for r in shipped]
        known = dict(conn.execute(select(FULFILLMENTS.c.external_id, FULFILLMENTS.c.id).where(
            FULFILLMENTS.c.external_id.in_(lookup(conn, names)))).all())
        rows = [{"external_id": name, "order_id": orders[r["external_id"]],
                 "shipped_at": r["fulfilled_at"], "carrier": "", "tracking_number": "",
                 "tracking_url": "", "delivered_at": None}
                for name, r in zip(names, shipped, strict=True) if name not in known]
        if rows:
            conn.execute(*db.insert_many(conn, FULFILLMENTS, rows))
    for record in completing:
        conn.execute(CHECKOUTS.update().where(
            CHECKOUTS.c.external_id == record["checkout_key"],
            CHECKOUTS.c.order_id.is_(None)).values(
            order_id=orders[record["external_id"]], completed_at=record["created_at"]))


WRITERS = {"fulfillments": _write_fulfillments, "reviews": _write_reviews,
           "checkouts": _write_checkouts}
