"""The synthetic shop's events: fulfillments of recent orders, reviews (some bad) and abandoned
checkouts, so that every flow (post_purchase, review_followup, abandoned_checkout) has work in
``make demo`` and in a ``retain simulate`` of the weeks after it.

Owns drawing those rows from its own ``random.Random`` (seeded from the shop's seed, so adding
events changes none of the shop's other rows) and ``now``: a recent paid order shipped 6 to 40
hours after it was placed and arrived 1 to 4 days later (only what happened by ``now``); about
one delivered order in five got a review 2 to 10 days after it arrived, one in six of those bad;
about one customer in forty left a checkout in the last 36 hours, one in three of which became
an order within the hour. Must not touch the database, read the clock or compute metrics.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta

from engine import tables

RECENT = timedelta(days=40)        # orders older than this were shipped long ago: no events
REVIEW_SHARE = 0.2
RATINGS = ((1, 8), (2, 8), (3, 14), (4, 30), (5, 40))  # rating, weight
CHECKOUT_SHARE = 1 / 40
COMPLETED_SHARE = 1 / 3
BAD_REVIEWS = ("Arrived damaged and nobody answered my message.",
               "Smaller than the photos suggest; disappointed.",
               "The colour is nothing like the picture.")
GOOD_REVIEWS = ("Lovely quality, exactly as described.", "Fast delivery and well packed.",
                "Works perfectly, I use it every day.", "Fine.")
CARRIERS = (("Colissimo", "https://www.laposte.fr/outils/suivre-vos-envois?code={}"),
            ("DHL", "https://www.dhl.com/fr-en/home/tracking.html?tracking-id={}"),
            ("UPS", "https://www.ups.com/track?tracknum={}"))


class ShopEvents:
    """Draws events for the orders and customers handed in, in the order they come."""

    def __init__(self, now: datetime, seed: int, store_url: str, catalogue: list[dict]):
        self.rng = random.Random(f"events-{seed}")  # its own: the shop's rows stay the same
        self.now, self.store_url = now, store_url.rstrip("/")
        self.catalogue = catalogue
        self.made = 0

    def for_orders(self, orders: list[tuple[int, int, dict, list[dict]]]
                   ) -> tuple[list[dict], list[dict]]:
        """(fulfillment rows, review rows) for (order id, customer id, order row, item rows)."""
        fulfillments, reviews = [], []
        for order_id, customer_id, order, items in orders:
            placed = order["created_at"]
            if order["status"] != tables.OrderStatus.paid or placed < self.now - RECENT:
                continue
            shipped = placed + timedelta(hours=self.rng.randint(6, 40))
            if shipped > self.now:
                continue
            self.made += 1
            carrier, link = self.rng.choice(CARRIERS)
            number = f"{carrier[:2].upper()}{self.rng.randrange(10**9, 10**10)}"
            delivered = shipped + timedelta(days=self.rng.randint(1, 4),
                                            hours=self.rng.randint(0, 8))
            arrived = delivered if delivered <= self.now else None
            fulfillments.append({
                "external_id": f"demo-f-{self.made:07d}", "order_id": order_id,
                "shipped_at": shipped, "carrier": carrier, "tracking_number": number,
                "tracking_url": link.format(number), "delivered_at": arrived})
            review = self._review(customer_id, items, arrived)
            if review is not None:
                reviews.append(review)
        return fulfillments, reviews

    def _review(self, customer_id: int, items: list[dict], arrived: datetime | None
                ) -> dict | None:
        if arrived is None or not items or self.rng.random() >= REVIEW_SHARE:
            return None
        written = arrived + timedelta(days=self.rng.randint(2, 10), hours=self.rng.randint(0, 9))
        if written > self.now:
            return None
        rating = self.rng.choices([r for r, _ in RATINGS], [w for _, w in RATINGS])[0]
        body = self.rng.choice(BAD_REVIEWS if rating <= 2 else GOOD_REVIEWS)
        self.made += 1
        return {"external_id": f"demo-r-{self.made:07d}", "customer_id": customer_id,
                "sku": self.rng.choice(items)["sku"], "rating": rating, "body": body,
                "created_at": written}

    def checkouts(self, customers: list[tuple[int, dict]]) -> list[dict]:
        """Checkouts left in the last 36 hours by some of (customer id, customer row)."""
        rows = []
        for customer_id, customer in customers:
            if self.rng.random() >= CHECKOUT_SHARE:
                continue
            started = self.now - timedelta(minutes=self.rng.randint(20, 36 * 60))
            lines = self.rng.sample(self.catalogue, self.rng.choice((1, 1, 2)))
            items = [[p["sku"], 1, p["price_cents"]] for p in lines]
            completed = None
            if self.rng.random() < COMPLETED_SHARE:
                completed = started + timedelta(minutes=self.rng.randint(5, 50))
                completed = completed if completed <= self.now else None
            self.made += 1
            key = f"demo-k-{self.made:07d}"
            rows.append({"external_id": key, "customer_id": customer_id,
                         "email_key": customer["email_key"], "items": json.dumps(items),
                         "total_cents": sum(p["price_cents"] for p in lines),
                         "url": f"{self.store_url}/checkouts/{key}", "created_at": started,
                         "completed_at": completed})
        return rows
