"""What a flow's email knows beyond the common context: its order, shipment, review, checkout or
vip occasion, from the event the plan stored in the delivery's payload (``payload["flow"]``).

Owns the keys each flow kind adds (contract.py lists them: ``FLOW_KEYS``), every amount made a
``Money`` and every product line named from the catalogue. Must not query, write or send:
compose.py reads the products and hands them in.
"""

from __future__ import annotations

from typing import Any

from engine.config import Store


def skus(payload: dict) -> list[str]:
    """The skus a flow's email shows (the order's, the review's, the checkout's)."""
    return list((payload.get("flow") or {}).get("skus", ()))


def context(kind: str, payload: dict, products: dict[str, dict], store: Store,
            person: Any = None) -> dict[str, Any]:
    """The keys ``kind`` adds to the template context; {} for the four older kinds."""
    flow = payload.get("flow") or {}
    if kind == "post_purchase":
        order = flow.get("order") or {}
        return {"step": flow.get("step"),
                "order": {"number": order.get("number"), "placed_on": order.get("placed_on"),
                          "total": store.money(order.get("total_cents") or 0)},
                "shipment": flow.get("shipment")}
    if kind == "review_followup":
        review = dict(flow.get("review") or {})
        review["product_name"] = products.get(review.get("sku"), {}).get("name") \
            or review.get("sku")
        return {"review": review,
                "signed_by": {"name": person.name} if person is not None else None}
    if kind == "abandoned_checkout":
        checkout = flow.get("checkout") or {}
        items = [{"sku": sku, "name": products.get(sku, {}).get("name") or sku,
                  "quantity": quantity, "price": store.money(cents)}
                 for sku, quantity, cents in checkout.get("items", ())]
        return {"step": flow.get("step"),
                "checkout": {"url": checkout.get("url") or store.url,
                             "total": store.money(checkout.get("total_cents") or 0),
                             "started_on": checkout.get("started_on"), "items": items}}
    if kind == "vip":
        return {"vip": dict(flow.get("vip") or {})}
    return {}
