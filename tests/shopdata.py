"""Small hand-made shops for tests: customers, products and orders written with SQL inserts.

NOW is 2026-06-15 12:00 UTC (14:00 in Europe/Paris, the test store's zone).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import count
from zoneinfo import ZoneInfo

from sqlalchemy import insert

from engine import db, tables

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")
TODAY = date(2026, 6, 15)


class Shop:
    """Writes rows into a real database; every method returns the new row's id."""

    def __init__(self, engine):
        self.engine = engine
        self._n = count(1)

    def customer(self, *, email: str | None = None, consent: bool = True, first_name="Ann",
                 tags: str = "", **extra) -> int:
        n = next(self._n)
        email = email or f"c{n}@example.com"
        values = dict(external_id=f"ext-{n}", email=email, email_key=email.lower(),
                      first_name=first_name, last_name="Lee", accepts_marketing=consent,
                      consent_at=NOW - timedelta(days=500) if consent else None,
                      created_at=NOW - timedelta(days=500), tags=tags, **extra)
        with self.engine.begin() as conn:
            new_id = conn.execute(insert(tables.Customer.__table__).values(**values)
                                  ).inserted_primary_key[0]
            db.bump_data_version(conn)
        return new_id

    def product(self, sku: str, *, category: str = "yoga", price: int = 2000,
                compare_at: int | None = None, created_days_ago: int = 400,
                reduced_days_ago: int | None = None, name: str | None = None) -> int:
        values = dict(sku=sku, name=name or f"Product {sku}", category=category,
                      price_cents=price,
                      compare_at_price_cents=compare_at, url=f"https://shop.example/{sku}",
                      image_url=f"https://shop.example/{sku}.jpg",
                      created_at=NOW - timedelta(days=created_days_ago),
                      price_reduced_at=(NOW - timedelta(days=reduced_days_ago))
                      if reduced_days_ago is not None else None)
        with self.engine.begin() as conn:
            return conn.execute(insert(tables.Product.__table__).values(**values)
                                ).inserted_primary_key[0]

    def order(self, customer_id: int, *, days_ago: int = 10, items: dict[str, int] | None = None,
              total: int | None = None, status: str = "paid", at: datetime | None = None) -> int:
        """An order at noon Paris time ``days_ago`` local days before TODAY (or at ``at``)."""
        created = at or datetime.combine(TODAY - timedelta(days=days_ago),
                                         datetime.min.time(), tzinfo=PARIS).replace(hour=12)
        items = items or {}
        amount = total if total is not None else sum(items.values()) or 1000
        with self.engine.begin() as conn:
            order_id = conn.execute(insert(tables.Order.__table__).values(
                external_id=f"o{next(self._n)}", customer_id=customer_id, created_at=created,
                local_date=created.astimezone(PARIS).date(), status=status,
                total_cents=amount)).inserted_primary_key[0]
            for sku, price in items.items():
                conn.execute(insert(tables.OrderItem.__table__).values(
                    order_id=order_id, sku=sku, quantity=1, unit_price_cents=price))
            db.bump_data_version(conn)
        return order_id

    def buyers(self, n: int, *, days_ago: int, total: int = 1000) -> list[int]:
        """``n`` consenting customers with one order each, in one transaction."""
        ids = []
        with self.engine.begin() as conn:
            for _ in range(n):
                k = next(self._n)
                email = f"c{k}@example.com"
                cid = conn.execute(insert(tables.Customer.__table__).values(
                    external_id=f"ext-{k}", email=email, email_key=email, first_name="Ann",
                    accepts_marketing=True, created_at=NOW - timedelta(days=500))
                ).inserted_primary_key[0]
                created = datetime.combine(TODAY - timedelta(days=days_ago),
                                           datetime.min.time(), tzinfo=PARIS).replace(hour=12)
                conn.execute(insert(tables.Order.__table__).values(
                    external_id=f"o{k}", customer_id=cid, created_at=created,
                    local_date=created.date(), status="paid", total_cents=total))
                ids.append(cid)
            db.bump_data_version(conn)
        return ids

    # --- the shop's events: fulfillments, reviews, checkouts --------------------------------

    def _insert(self, table, **values) -> int:
        with self.engine.begin() as conn:
            new_id = conn.execute(insert(table.__table__).values(**values)).inserted_primary_key[0]
            db.bump_data_version(conn)
        return new_id

    def fulfillment(self, order_id: int, *, shipped_at: datetime,
                    delivered_at: datetime | None = None, carrier: str = "Colissimo") -> int:
        n = next(self._n)
        return self._insert(tables.Fulfillment, external_id=f"f{n}", order_id=order_id,
                            shipped_at=shipped_at, carrier=carrier, tracking_number=f"TRK{n}",
                            tracking_url=f"https://track.example/TRK{n}",
                            delivered_at=delivered_at)

    def review(self, customer_id: int, sku: str, rating: int, *, at: datetime,
               body: str = "It was fine.") -> int:
        return self._insert(tables.Review, external_id=f"r{next(self._n)}",
                            customer_id=customer_id, sku=sku, rating=rating, body=body,
                            created_at=at)

    def checkout(self, customer_id: int, *, at: datetime, items: str = '[["MAT", 1, 4500]]',
                 total: int = 4500) -> int:
        return self._insert(tables.Checkout, external_id=f"k{next(self._n)}",
                            customer_id=customer_id, items=items, total_cents=total,
                            url="https://shop.example/checkouts/k", created_at=at)

    def complete_checkout(self, checkout_id: int, *, at: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(tables.Checkout.__table__.update()
                         .where(tables.Checkout.__table__.c.id == checkout_id)
                         .values(completed_at=at))
            db.bump_data_version(conn)
