"""Shopify webhook payloads → the same records a CSV import writes.

Owns reading Shopify's documented JSON (the REST Admin API resources its webhooks send): an
order (``orders/create``, ``orders/updated``, ``orders/cancelled``) with its customer, line
items and fulfillments; a customer; a fulfillment; a checkout; a refund's amount. Each function
returns plain records shaped as csvformats.py and csvevents.py shape them, so the importer's
writers apply webhooks exactly as they apply files, with the same cell parsers (money as
strings like "199.00" in cents, dates with offsets). Must not touch the database.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from engine.errors import CsvError
from engine.money import AmountError
from engine.money import parse as cents
from engine.shop.csvfile import BadCell, currency, email, moment_in, tags
from engine.shop.csvformats import shopify_status
from engine.tables import OrderStatus


class Payload:
    """One delivery's JSON object, read with the CSV cell parsers; a bad field is a CsvError
    naming the delivery and the field (``row 1`` being the delivery's one object)."""

    def __init__(self, data: Any, name: str, zone: tzinfo):
        if not isinstance(data, dict):
            raise CsvError("the body is not a JSON object", name, 1)
        self.data, self.name, self.moment = data, name, moment_in(zone)

    def get(self, *path: str, within: dict | None = None) -> Any:
        node: Any = self.data if within is None else within
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        return node

    def parse(self, value: Any, parser, field: str, need: str | None = None) -> Any:
        if value is None or value == "":
            if need:
                raise CsvError(f"is missing; {need}", self.name, 1, field)
            return None
        try:
            return parser(str(value))
        except (BadCell, AmountError) as exc:
            raise CsvError(str(exc), self.name, 1, field) from None

    def when(self, value: Any, field: str, need: str | None = None) -> datetime | None:
        return self.parse(value, self.moment, field, need)


def address(p: Payload, value: Any, field: str) -> str | None:
    return p.parse(value, email, field)


def customer(p: Payload, node: dict | None = None) -> dict[str, Any] | None:
    """A customers record from a customer object (a customers/* body, or an order's customer);
    None when it has no email: nobody can be emailed about them."""
    node = p.data if node is None else node
    found = address(p, node.get("email"), "email")
    if not found:
        return None
    record: dict[str, Any] = {
        "_row": 1, "external_id": str(node["id"]) if node.get("id") else None,
        "email": found, "email_key": found.lower(),
        "first_name": node.get("first_name") or "", "last_name": node.get("last_name") or "",
        "created_at": p.when(node.get("created_at"), "created_at")}
    consent = node.get("email_marketing_consent")
    if isinstance(consent, dict) and consent.get("state"):
        record["accepts_marketing"] = consent["state"] == "subscribed"
    elif isinstance(node.get("accepts_marketing"), bool):
        record["accepts_marketing"] = node["accepts_marketing"]
    country = p.get("default_address", "country_code", within=node)
    if country:
        record["country"] = country
    if isinstance(node.get("tags"), str):
        record["tags"] = tags(node["tags"])
    return record


def order(p: Payload, zone: tzinfo, default_currency: str) -> dict[str, Any] | None:
    """An orders record (Shopify flavour: the customer by email); None without an email."""
    data = p.data
    found = address(p, data.get("email") or p.get("customer", "email"), "email")
    if not found:
        return None
    name = data.get("name") or (str(data["id"]) if data.get("id") else None)
    if not name:
        raise CsvError("is missing; every order has a name like #1001", p.name, 1, "name")
    created_at = p.when(data.get("created_at"), "created_at", "every order has a date")
    status = p.parse(data.get("financial_status") or "paid", shopify_status, "financial_status")
    total = p.parse(data.get("current_total_price"), cents, "current_total_price")
    if total is None:  # older API versions: the total less what was refunded
        total = p.parse(data.get("total_price"), cents, "total_price", "every order has a total")
        total = max(0, total - sum(refund_amount(p, r) for r in data.get("refunds") or []))
    if data.get("cancelled_at"):
        status = OrderStatus.cancelled
    codes = [c.get("code") for c in data.get("discount_codes") or [] if isinstance(c, dict)]
    items = [(item.get("sku") or "", int(item.get("quantity") or 1),
              p.parse(item.get("price"), cents, "line_items.price") or 0)
             for item in data.get("line_items") or [] if isinstance(item, dict)]
    return {"_row": 1, "external_id": name, "customer_key": found.lower(), "email": found,
            "created_at": created_at, "local_date": created_at.astimezone(zone).date(),
            "status": status, "total_cents": total,
            "currency": p.parse(data.get("currency"), currency, "currency") or default_currency,
            "discount_code": codes[0] if codes else None, "items": items,
            "checkout_key": str(data["checkout_id"]) if data.get("checkout_id") else None}


def refund_amount(p: Payload, refund: dict[str, Any]) -> int:
    """What a refund gave back: its successful refund transactions (else its line items)."""
    paid = [t for t in refund.get("transactions") or []
            if isinstance(t, dict) and t.get("kind") == "refund" and t.get("status") == "success"]
    if paid:
        return sum(p.parse(t.get("amount"), cents, "transactions.amount") or 0 for t in paid)
    return sum(p.parse(item.get("subtotal"), cents, "refund_line_items.subtotal") or 0
               for item in refund.get("refund_line_items") or [] if isinstance(item, dict))


def fulfillment(p: Payload, order_key: str | None, node: dict | None = None
                ) -> dict[str, Any] | None:
    """A fulfillments record; None when it was cancelled or its order is not known."""
    node = p.data if node is None else node
    if node.get("status") in ("cancelled", "error", "failure") or not order_key:
        return None
    numbers = node.get("tracking_numbers") or []
    urls = node.get("tracking_urls") or []
    delivered = node.get("shipment_status") == "delivered"
    return {"_row": 1, "external_id": node.get("name") or str(node.get("id")),
            "order_key": order_key,
            "shipped_at": p.when(node.get("created_at"), "created_at", "a fulfillment has a date"),
            "carrier": node.get("tracking_company") or "",
            "tracking_number": node.get("tracking_number") or (numbers[0] if numbers else ""),
            "tracking_url": node.get("tracking_url") or (urls[0] if urls else ""),
            "delivered_at": p.when(node.get("updated_at"), "updated_at") if delivered else None}


def order_of_fulfillment(node: dict[str, Any]) -> str | None:
    """A fulfillment's name is its order's name, a dot, and a sequence number: #1001.1."""
    name = node.get("name") or ""
    return name.rsplit(".", 1)[0] if "." in name else None


def checkout(p: Payload, default_currency: str) -> dict[str, Any] | None:
    data = p.data
    found = address(p, data.get("email") or p.get("customer", "email"), "email")
    customer_id = p.get("customer", "id")
    if not found and not customer_id:
        return None
    return {"_row": 1, "external_id": str(data.get("id") or data.get("token")),
            "customer_key": str(customer_id) if customer_id else None,
            "email_key": found.lower() if found else None,
            "created_at": p.when(data.get("created_at"), "created_at", "a checkout has a date"),
            "completed_at": p.when(data.get("completed_at"), "completed_at"),
            "total_cents": p.parse(data.get("total_price"), cents, "total_price") or 0,
            "currency": p.parse(data.get("currency"), currency, "currency") or default_currency,
            "url": data.get("abandoned_checkout_url") or "",
            "items": [(item.get("sku") or "", int(item.get("quantity") or 1),
                       p.parse(item.get("price"), cents, "line_items.price") or 0)
                      for item in data.get("line_items") or [] if isinstance(item, dict)]}
