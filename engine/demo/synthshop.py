"""The synthetic shop: a realistic, deterministic catalogue, customers and three years of orders.

Owns: generating the demo shop's rows from a seed and ``now`` (same seed and same ``now`` give
identical rows), and, for a shop that lives on (bench/soak.py), one later day's repeat orders
and sign-ups; ``demo.build_shop`` and ``demo.add_day`` write them. Customers follow archetypes
chosen so that, as of ``now``, every lifecycle stage, dormancy tier and value tier is well
represented, some customers sit near a monthly spend threshold, new and newly reduced products
exist, and a few product pairs are often bought together (so every campaign kind has work).
Must not touch the database, read the clock, use the global ``random`` state, or compute
metrics (metrics.py does).
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from engine import tables
from engine.config import Settings

HISTORY_DAYS = 3 * 365

# (name, price, compare-at price, flag): "new" = created in the last 14 days, "reduced" = price
# dropped in the last 14 days. The first product of a category sells three times as often.
CATALOGUE: dict[str, tuple[tuple[str, int, int | None, str], ...]] = {
    "yoga": (("Yoga mat", 4900, 5900, ""), ("Yoga strap", 1290, None, ""),
             ("Cork yoga block", 1890, None, ""), ("Meditation cushion", 3490, 3900, "reduced"),
             ("Yoga mat bag", 2490, None, ""), ("Linen yoga towel", 2290, None, ""),
             ("Bolster pillow", 4490, None, "new"), ("Lavender eye pillow", 1590, None, "")),
    "tea": (("Cast-iron teapot", 4590, None, ""), ("Stainless tea infuser", 990, None, ""),
            ("Sencha green tea 100 g", 890, None, ""), ("Earl Grey 100 g", 790, None, ""),
            ("Rooibos vanilla 100 g", 750, None, ""), ("Jasmine pearls 50 g", 1290, None, ""),
            ("Matcha whisk", 1490, None, ""), ("Ceremonial matcha 30 g", 2490, None, "new")),
    "coffee": (("Pour-over dripper", 2490, None, ""), ("Paper filters (100)", 590, None, ""),
               ("Ethiopia Yirgacheffe 250 g", 1290, None, ""), ("Colombia Huila 250 g", 1150,
               None, ""), ("Hand grinder", 5900, 6900, ""), ("Gooseneck kettle", 5990, 6900,
               "reduced"), ("Espresso cups, set of 2", 1990, None, ""),
               ("Coffee canister", 2790, None, "new")),
    "kitchen": (("Olive wood cutting board", 3490, None, ""), ("Linen tea towels, set of 3",
                2190, None, ""), ("Stoneware bowl", 1690, None, ""), ("Beeswax food wraps", 1890,
                None, ""), ("Glass storage jars, set of 3", 2990, None, ""), ("Chef's knife",
                7490, 8900, "reduced"), ("Knife sharpening stone", 3290, None, "new"),
                ("Enamel colander", 2790, None, "")),
    "candles": (("Fig leaf candle", 2890, None, ""), ("Cedar and smoke candle", 2890, None, ""),
                ("Linen mist candle", 2490, None, ""), ("Travel candle trio", 3290, None, "new"),
                ("Brass candle snuffer", 1690, None, ""), ("Wick trimmer", 1490, None, ""),
                ("Matches in a glass jar", 890, None, "")),
    "plants": (("Monstera in ceramic pot", 3490, 3990, "reduced"), ("Snake plant", 2990, None,
               ""), ("Terracotta pot 18 cm", 1490, None, ""), ("Organic potting mix 5 L", 990,
               None, ""), ("Brass plant mister", 2290, None, ""), ("Pothos hanging basket",
               2490, None, ""), ("Herb garden kit", 2790, None, "new")),
    "bath": (("Olive oil soap bar", 690, None, ""), ("Ceramic soap dish", 1290, None, ""),
             ("Lavender bath salts", 1890, None, ""), ("Konjac sponge", 890, None, ""),
             ("Waffle bath towel", 2990, 3490, "reduced"), ("Body oil 100 ml", 2690, None, "new"),
             ("Bath brush", 1990, None, "")),
    "stationery": (("Linen notebook A5", 1690, None, ""), ("Dot grid journal", 1890, None, ""),
                   ("Brass pen", 3490, None, ""), ("Ink refills, pack of 5", 590, None, ""),
                   ("Weekly planner", 2290, None, ""), ("Seed paper cards, set of 6", 1290, None,
                   ""), ("Washi tape trio", 890, None, "new")),
}
# Frequently bought together: when the first is in a basket, the second joins it this often.
BOUGHT_TOGETHER = {"Yoga mat": ("Yoga strap", 0.6), "Pour-over dripper": ("Paper filters (100)",
                   0.55), "Olive oil soap bar": ("Ceramic soap dish", 0.45),
                   "Cast-iron teapot": ("Stainless tea infuser", 0.45)}

# Archetypes and their exact share of customers. Why these: prospect → lifecycle prospect;
# one-time buyers spread over three years → exploration in every dormancy tier; repeat and loyal
# buyers ordering within 60 days → formation and stable, active; lapsed repeat buyers → decline,
# drowsy to sleeping; threshold spenders give a monthly "spend X, get a gift" campaign its work.
ARCHETYPES = (("prospect", 0.12), ("one_time", 0.30), ("repeat", 0.13), ("loyal", 0.12),
              ("lapsed", 0.25), ("near_threshold", 0.05), ("over_threshold", 0.03))
NEAR_THRESHOLD = (12000, 14900)   # spent 120–149 this month: a nudge towards 150
OVER_THRESHOLD = (15000, 26000)   # spent 150 or more this month: earned the gift
LAPSED_BANDS = ((60, 119, 0.3), (120, 239, 0.3), (240, 600, 0.4))  # days since the last order
SEASON = (0.8, 0.75, 0.85, 0.9, 0.95, 0.9, 0.85, 0.8, 0.95, 1.05, 1.7, 2.0)  # Jan..Dec weight
# After the build (orders_for_day): the daily share of regulars who order again and of lapsed
# buyers who come back, and of the shop's size that signs up.
RETURN_SHARE = (1 / 80, 1 / 300)
SIGNUP_SHARE = 1 / 1500
HOURS = tuple(range(7, 24))
HOUR_WEIGHTS = (1, 2, 3, 3, 3, 4, 4, 3, 3, 3, 4, 5, 6, 6, 5, 3, 2)

FIRST_NAMES = ("Anna", "Léa", "Chloé", "Zoé", "Camille", "Manon", "Inès", "Emma", "Sofia",
               "Hannah", "Marta", "Giulia", "Olivia", "Amélie", "Noor", "Lucas", "Hugo", "Louis",
               "Jules", "Mathis", "Noah", "Liam", "Felix", "Jonas", "Marco", "Pablo", "Tom",
               "Arthur", "Émile", "Samir")
LAST_NAMES = ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Petit", "Durand", "Leroy",
              "Moreau", "Simon", "Laurent", "Lefèvre", "Michel", "Garcia", "Fournier", "Müller",
              "Schmidt", "Rossi", "Bianchi", "García", "López", "Janssens", "De Vries", "Smith",
              "Brown", "Novak", "Ferreira", "Nguyen", "Haddad", "Berger")
DOMAINS = ("example.com", "example.org", "example.net")  # reserved (RFC 2606): never delivered
# Country, weight, IANA zones that fit it.
COUNTRIES = (("FR", 45, ("Europe/Paris",)), ("BE", 8, ("Europe/Brussels",)),
             ("DE", 10, ("Europe/Berlin",)), ("NL", 5, ("Europe/Amsterdam",)),
             ("ES", 6, ("Europe/Madrid",)), ("IT", 6, ("Europe/Rome",)),
             ("GB", 8, ("Europe/London",)), ("CH", 4, ("Europe/Zurich",)),
             ("US", 6, ("America/New_York", "America/Chicago", "America/Los_Angeles")),
             ("CA", 2, ("America/Toronto", "America/Vancouver")))
CONSENT_SOURCES = (("checkout", 5), ("account_signup", 2), ("newsletter_form", 2), ("popup", 1))


@dataclass(frozen=True)
class DayOrders:
    """One day after the shop was built: repeat orders and the people who signed up."""
    returning: list[tuple[int, dict, list[dict]]]   # customer id, order row, item rows
    signups: list[tuple[dict, list[tuple[dict, list[dict]]]]]  # customer row, its orders


@dataclass(eq=False)  # compared and hashed by identity: one object per product
class _Product:
    sku: str
    name: str
    category: str
    price: int
    compare_at: int | None
    created_at: datetime
    reduced_at: datetime | None
    weight: int

    def unit_price(self, at: datetime) -> int:
        # Before its recent reduction the product sold at its compare-at price.
        if self.reduced_at and self.compare_at and at < self.reduced_at:
            return self.compare_at
        return self.price


@dataclass
class _Order:
    created_at: datetime
    items: list[tuple[_Product, int, int]] = field(default_factory=list)  # product, qty, unit
    status: str = tables.OrderStatus.paid
    discount_code: str | None = None

    @property
    def total(self) -> int:
        return sum(quantity * unit for _, quantity, unit in self.items)


class SyntheticShop:
    """Draws every row from one ``random.Random``, in a fixed order, so a seed is a shop.

    Call ``product_rows()`` once, then ``customer(index)`` for index 0, 1, 2, ... in turn.
    """

    def __init__(self, settings: Settings, now: datetime, seed: int = 7):
        if now.tzinfo is None:
            raise ValueError("now must be an aware datetime")
        self.rng = random.Random(seed)  # never the global one: a seed must be a shop
        self.now, self.zone = now.astimezone(UTC), settings.store.zone
        self.currency, self.store_url = settings.store.currency, settings.store.url.rstrip("/")
        self.today = now.astimezone(self.zone).date()
        self.month_age = self.today.day - 1  # days since the first of the current month
        self.products = list(self._catalogue())
        self.by_category: dict[str, list[_Product]] = {}
        for product in self.products:
            self.by_category.setdefault(product.category, []).append(product)
        by_name = {p.name: p for p in self.products}
        self.companions = {by_name[a]: (by_name[b], share)
                           for a, (b, share) in BOUGHT_TOGETHER.items()}
        self.archetypes: list[str] = []
        self.orders_made = 0

    def _catalogue(self) -> Iterator[_Product]:
        for category, items in CATALOGUE.items():
            for number, (name, price, compare_at, flag) in enumerate(items, start=1):
                if flag == "new":
                    created = self._moment(self.rng.randint(1, 13))
                else:
                    created = self._moment(self.rng.randint(HISTORY_DAYS + 30, HISTORY_DAYS + 400))
                reduced = None
                if flag == "reduced":
                    reduced = self._moment(self.rng.randint(1, 13))
                elif compare_at:
                    reduced = self._moment(self.rng.randint(90, 400))
                yield _Product(f"{category[:4].upper()}-{number:03d}", name, category, price,
                               compare_at, created, reduced, 3 if number == 1 else 1)

    def product_rows(self) -> list[dict]:
        """The catalogue as rows of ``products``."""
        rows = []
        for product in self.products:
            slug = "-".join("".join(c if c.isalnum() else " " for c in product.name).lower()
                            .split())
            rows.append({
                "sku": product.sku, "name": product.name, "category": product.category,
                "price_cents": product.price, "compare_at_price_cents": product.compare_at,
                "url": f"{self.store_url}/products/{slug}",
                "image_url": f"{self.store_url}/images/{slug}.jpg",
                "created_at": product.created_at, "price_reduced_at": product.reduced_at})
        return rows

    def customer(self, index: int) -> tuple[dict, list[tuple[dict, list[dict]]]]:
        """One customer row and their orders, each an order row (no customer_id yet) and its
        item rows (no order_id yet), oldest first."""
        row, orders = self._customer(index)
        plans = []
        for order in orders:
            self.orders_made += 1
            plans.append(self._rows(order, f"demo-o-{self.orders_made:07d}"))
        return row, plans

    def orders_for_day(self, regulars: Sequence[int], lapsed: Sequence[int],
                       first_index: int) -> DayOrders:
        """The orders and sign-ups of the day that ``now`` ends (store time).

        ``regulars`` are the ids of customers who ordered in the last 90 days, ``lapsed`` those
        of older buyers: a regular orders again about once in 80 days, a lapsed buyer comes
        back about once in 300 (which ends a dormancy episode), both more in busy months. New
        customers (about one a day per 1,500 buyers) sign up as ``first_index``,
        ``first_index + 1``, ...; two in three order on the day they sign up. Build one
        ``SyntheticShop`` per day, its ``now`` the day's last moment and its seed derived from
        the day, so a day is always drawn the same.
        """
        rng, season = self.rng, SEASON[self.today.month - 1] / (sum(SEASON) / 12)
        tag = self.today.strftime("%Y%m%d")
        returning, signups, made = [], [], 0

        def how_many(share: float, size: int) -> int:  # about share * size, give or take
            expected = share * season * size
            return min(size, max(0, round(rng.gauss(expected, expected ** 0.5))))

        back = [sorted(rng.sample(list(ids), how_many(share, len(ids))))
                for ids, share in zip((regulars, lapsed), RETURN_SHARE, strict=True)]
        for customer_id in back[0] + back[1]:
            made += 1
            favourites = rng.sample(sorted(self.by_category), rng.choice((1, 1, 2)))
            order = self._order(0, favourites, wholesale=False, first=False)
            returning.append((customer_id, *self._rows(order, f"demo-o-{tag}-{made:05d}")))
        joining = how_many(SIGNUP_SHARE, len(regulars) + len(lapsed))
        # Numbered in the order they sign up: written in windows of the day, ids keep that order.
        moments = sorted(self._moment(0) for _ in range(joining))
        for index, created in enumerate(moments, start=first_index):
            orders = []
            at = created + timedelta(minutes=rng.randint(3, 180))
            if rng.random() < 2 / 3 and at <= self.now:
                favourites = rng.sample(sorted(self.by_category), rng.choice((1, 1, 2)))
                orders.append(self._order(0, favourites, wholesale=False, first=True, at=at))
            row = self._person(index, "one_time" if orders else "prospect", created,
                               bool(orders), wholesale=False)
            plans = []
            for order in orders:
                made += 1
                plans.append(self._rows(order, f"demo-o-{tag}-{made:05d}"))
            signups.append((row, plans))
        return DayOrders(returning, signups)

    def _rows(self, order: _Order, external_id: str) -> tuple[dict, list[dict]]:
        """An order row (no customer_id yet) and its item rows (no order_id yet)."""
        return ({"external_id": external_id, "created_at": order.created_at,
                 "local_date": order.created_at.astimezone(self.zone).date(),
                 "status": order.status, "total_cents": order.total, "currency": self.currency,
                 "discount_code": order.discount_code},
                [{"sku": product.sku, "quantity": quantity, "unit_price_cents": unit}
                 for product, quantity, unit in order.items])

    def _archetype(self) -> str:
        # Exact shares, dealt in shuffled decks of 100 so any prefix of customers is balanced.
        if not self.archetypes:
            deck = [name for name, share in ARCHETYPES for _ in range(round(share * 100))]
            self.rng.shuffle(deck)
            self.archetypes = deck
        return self.archetypes.pop()

    def _customer(self, index: int) -> tuple[dict, list[_Order]]:
        rng = self.rng
        kind = self._archetype()
        favourites = rng.sample(sorted(self.by_category), rng.choice((1, 1, 2)))
        wholesale = kind != "prospect" and rng.random() < 0.02
        orders = [self._order(days, favourites, wholesale, first=i == 0)
                  for i, days in enumerate(self._order_days(kind))]
        if kind in ("near_threshold", "over_threshold"):
            low, high = NEAR_THRESHOLD if kind == "near_threshold" else OVER_THRESHOLD
            orders += self._orders_worth(low, high, favourites)
        if orders:
            created = orders[0].created_at - timedelta(minutes=rng.randint(5, 60 * 24 * 45))
        else:
            created = self._moment(self._days_ago(0, HISTORY_DAYS, skew=1.2))
        row = self._person(index, kind, created, bool(orders), wholesale)
        return row, orders

    def _person(self, index: int, kind: str, created: datetime, ordered: bool,
                wholesale: bool) -> dict:
        """The customer row: name, address, zone, consent and tags."""
        rng = self.rng
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        local = unicodedata.normalize("NFKD", f"{first}.{last}").encode("ascii", "ignore")
        email = f"{local.decode().lower().replace(' ', '')}.{index + 1}@{rng.choice(DOMAINS)}"
        country, _, zones = rng.choices(COUNTRIES, [w for _, w, _ in COUNTRIES])[0]
        accepts = rng.random() < 0.85
        sources = [s for s in CONSENT_SOURCES if ordered or s[0] != "checkout"]
        tags = {"vip"} if kind in ("loyal", "over_threshold") and rng.random() < 0.5 else set()
        if wholesale:
            tags.add("wholesale")
        if accepts and rng.random() < 0.4:
            tags.add("newsletter")
        row = {"external_id": f"demo-c-{index + 1:06d}", "email": email, "email_key": email,
               "first_name": first, "last_name": last, "accepts_marketing": accepts,
               "consent_at": created if accepts else None,
               "consent_source": rng.choices(sources, [w for _, w in sources])[0][0]
               if accepts else None,
               "country": country, "timezone": rng.choice(zones), "tags": ",".join(sorted(tags)),
               "created_at": created}
        return row

    def _order_days(self, kind: str) -> list[int]:
        """Days before today of a customer's regular orders, oldest first."""
        rng, days = self.rng, self._days_ago
        if kind == "prospect":
            return []
        if kind == "one_time":
            return [days(0, HISTORY_DAYS, skew=1.3)]
        if kind == "repeat":
            last, count = days(0, 59), rng.choice((2, 2, 3))
            first = days(last + 14, min(HISTORY_DAYS, last + 540))
        elif kind == "loyal":
            last, count = days(0, 45), rng.randint(4, 12)
            first = days(last + 180, HISTORY_DAYS)
        elif kind == "lapsed":
            low, high, _ = rng.choices(LAPSED_BANDS, [w for _, _, w in LAPSED_BANDS])[0]
            last, count = days(low, high), rng.choice((2, 2, 2, 3, 3, 4, 5, 6, 8))
            first = days(last + 30, HISTORY_DAYS)
        else:  # threshold spenders: a history before this month, then this month's orders
            last, count = days(self.month_age + 1, self.month_age + 200), rng.randint(1, 5)
            first = days(last, HISTORY_DAYS)
            if count == 1:
                return [last]
        middle = sorted((days(last, first) for _ in range(count - 2)), reverse=True)
        return [first, *middle, last]

    def _days_ago(self, low: int, high: int, skew: float = 1.0) -> int:
        """A day in [low, high] days ago, drawn more often in busy months (Nov, Dec)."""
        high = max(low, high)
        for _ in range(20):
            # skew > 1 favours recent days: the shop grows over its three years.
            days = min(high, low + int((high - low + 1) * self.rng.random() ** skew))
            month = (self.today - timedelta(days=days)).month
            if self.rng.random() * max(SEASON) < SEASON[month - 1]:
                break
        return days

    def _moment(self, days_ago: int) -> datetime:
        """A shopping hour on the day ``days_ago`` before today (store time), never after now."""
        day: date = self.today - timedelta(days=days_ago)
        hour = self.rng.choices(HOURS, HOUR_WEIGHTS)[0]
        clock = time(hour, self.rng.randrange(60), self.rng.randrange(60))
        moment = datetime.combine(day, clock, tzinfo=self.zone).astimezone(UTC)
        if moment > self.now:  # today, later than now: move it into the part of today gone by
            midnight = datetime.combine(self.today, time(0), tzinfo=self.zone).astimezone(UTC)
            moment = midnight + (self.now - midnight) * self.rng.random()
        return moment

    def _order(self, days_ago: int, favourites: list[str], wholesale: bool,
               first: bool, at: datetime | None = None) -> _Order:
        rng = self.rng
        order = _Order(at or self._moment(days_ago))
        wanted = rng.choices((1, 2, 3, 4), (45, 30, 15, 10))[0]
        while len(order.items) < wanted:
            product = self._pick(order, favourites, limit=None)
            quantity = rng.randint(3, 12) if wholesale else rng.choices((1, 2, 3), (88, 10, 2))[0]
            self._add(order, product, quantity)
            companion, share = self.companions.get(product, (None, 0.0))
            if companion and len(order.items) < 4 and rng.random() < share:
                self._add(order, companion, quantity)
        roll = rng.random()
        if roll < 0.03:
            order.status = tables.OrderStatus.refunded
        elif roll < 0.05:
            order.status = tables.OrderStatus.cancelled
        if rng.random() < 0.05:
            order.discount_code, percent = self._discount(order.created_at, first)
            order.items = [(p, q, unit * (100 - percent) // 100) for p, q, unit in order.items]
        return order

    def _discount(self, at: datetime, first: bool) -> tuple[str, int]:
        month = at.astimezone(self.zone).month
        if month == 11:
            return "BLACKFRIDAY20", 20
        if first:
            return "WELCOME10", 10
        return ("SPRING15", 15) if month in (3, 4, 5) else ("THANKYOU10", 10)

    def _orders_worth(self, low: int, high: int, favourites: list[str]) -> list[_Order]:
        """Paid orders this month whose totals add up to between ``low`` and ``high`` cents."""
        orders: list[_Order] = []
        spent = 0
        while spent < low:
            if not orders or len(orders[-1].items) == 4:
                orders.append(_Order(self._moment(self.rng.randint(0, self.month_age))))
            order = orders[-1]
            # The cheapest product costs less than high - low, so something always fits.
            product = self._pick(order, favourites, limit=high - spent)
            self._add(order, product, 1)
            spent += product.unit_price(order.created_at)
        orders.sort(key=lambda o: o.created_at)
        return orders

    def _pick(self, order: _Order, favourites: list[str], limit: int | None) -> _Product:
        """A product on sale at the order's time, from a favourite category three times in four."""
        at = order.created_at
        in_basket = {p for p, _, _ in order.items}
        pool = [p for p in self.products if p.created_at <= at and p not in in_basket
                and (limit is None or p.unit_price(at) <= limit)]
        liked = [p for p in pool if p.category in favourites]
        if liked and self.rng.random() < 0.75:
            pool = liked
        return self.rng.choices(pool, [p.weight for p in pool])[0]

    def _add(self, order: _Order, product: _Product, quantity: int) -> None:
        if all(p is not product for p, _, _ in order.items):
            order.items.append((product, quantity, product.unit_price(order.created_at)))
