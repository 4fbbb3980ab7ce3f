"""Offers: coupon codes, gifts, bundles and the new products a campaign announces.

Owns: what a customer is offered and what it is worth — unguessable coupon codes, the face value
counted against a campaign's budget, the new or newly reduced products of a period, bundle
pricing, and frequently-bought-together pairs mined from orders in SQL. Returns values; must not
send or render, and writes nothing (the ledger stores issued offers).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, func, or_, select

from engine.campaigns.models import Bundle, Coupon, Gift, Mine
from engine.config import Store
from engine.money import cents
from engine.shop.counted import counted as counted_order
from engine.tables import Order, OrderItem, Product

# No 0/O, 1/I/L, 2/Z, 5/S, U/V pairs: codes are read aloud and typed from phones.
CODE_ALPHABET = "346789ABCDEFGHJKMNPQRTWXY"
CODE_LENGTH = 18  # 25**18 ≈ 2**83: at least 80 bits from `secrets`
ORDERS = Order.__table__
ITEMS = OrderItem.__table__
PRODUCTS = Product.__table__


_CODE_SPACE = len(CODE_ALPHABET) ** CODE_LENGTH


def new_code(prefix: str = "") -> str:
    """A unique-enough, unguessable coupon code like ``BACK-7KQ4XT-9MWA3C-...``."""
    # One unbiased draw from the whole code space, written in the code alphabet: the same
    # codes as a choice per character, at a twentieth of the cost.
    number = secrets.randbelow(_CODE_SPACE)
    digits = []
    for _ in range(CODE_LENGTH):
        number, digit = divmod(number, len(CODE_ALPHABET))
        digits.append(CODE_ALPHABET[digit])
    raw = "".join(digits)
    groups = "-".join(raw[i:i + 6] for i in range(0, CODE_LENGTH, 6))
    return f"{prefix}-{groups}" if prefix else groups


@dataclass(frozen=True)
class OfferSpec:
    """An offer before it is issued: what the ledger will record and the email will show."""
    kind: str                       # coupon | gift | bundle
    face_value_cents: int           # counted against the campaign's budget
    percent_off: int | None = None
    amount_off_cents: int | None = None
    min_spend_cents: int = 0
    valid_days: int = 30
    prefix: str = ""
    gift_sku: str | None = None
    gift_name: str | None = None
    gift_card_cents: int | None = None
    bundle_id: str | None = None
    bundle_name: str | None = None
    bundle_skus: tuple[str, ...] = ()
    bundle_price_cents: int | None = None
    regular_price_cents: int | None = None
    period: str | None = None

    def expires_at(self, now: datetime) -> datetime:
        return now + timedelta(days=self.valid_days)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in (None, (), "")}


def coupon_offer(coupon: Coupon, avg_order_value_cents: int) -> OfferSpec:
    """A percent coupon is valued at that percent of the customer's average order."""
    if coupon.amount_off is not None:
        value = cents(coupon.amount_off)
    else:
        value = (avg_order_value_cents * (coupon.percent_off or 0)) // 100
    return OfferSpec(kind="coupon", face_value_cents=value, percent_off=coupon.percent_off,
                     amount_off_cents=cents(coupon.amount_off) if coupon.amount_off else None,
                     min_spend_cents=cents(coupon.min_spend), valid_days=coupon.valid_days,
                     prefix=coupon.prefix)


def gift_offer(gift: Gift, period: str, catalogue: dict[str, dict], avg_cents: int,
               threshold_cents: int, store: Store) -> OfferSpec:
    """The gift of a spend-threshold campaign; ``min_spend`` records the threshold crossed.
    Its name is a title, without an article ("€15.00 gift card", "Ceramic soap dish", "10% off
    your next order"), so a template can show it on a line of its own; amounts are written as
    the store writes money."""
    if gift.coupon is not None:
        spec = coupon_offer(gift.coupon, avg_cents)
        name = (f"{spec.percent_off}% off your next order" if spec.percent_off else
                f"{store.money(spec.amount_off_cents or 0)} off your next order")
        return OfferSpec(**{**spec.__dict__, "kind": "gift", "period": period,
                            "gift_name": name})
    if gift.gift_card is not None:
        value = cents(gift.gift_card)
        return OfferSpec(kind="gift", face_value_cents=value, gift_card_cents=value,
                         gift_name=f"{store.money(value)} gift card",
                         min_spend_cents=threshold_cents, valid_days=gift.valid_days,
                         period=period, prefix="GIFT")
    product = catalogue.get(gift.product or "", {})
    return OfferSpec(kind="gift", face_value_cents=product.get("price_cents", 0),
                     gift_sku=gift.product, gift_name=product.get("name", gift.product),
                     min_spend_cents=threshold_cents, valid_days=gift.valid_days,
                     period=period, prefix="GIFT")


@dataclass(frozen=True)
class BundleDeal:
    """A bundle with its prices resolved from the catalogue. An offer must save the customer
    at least ``min_saving_percent`` of the offered items' price and ``min_saving_cents`` (at
    least a cent)."""
    id: str
    name: str
    skus: tuple[str, ...]
    prices: dict[str, int] = field(hash=False)
    bundle_price_cents: int = 0
    min_saving_percent: int = 0
    min_saving_cents: int = 0

    def offer_for(self, owned: set[str], valid_days: int = 30) -> OfferSpec | None:
        """The rest of the bundle, priced at the bundle's discount; None when the customer owns
        none of it (nothing to complete) or all of it (nothing to add)."""
        rest = tuple(s for s in self.skus if s not in owned)
        if not rest or len(rest) == len(self.skus):
            return None
        full = sum(self.prices[s] for s in self.skus)
        regular = sum(self.prices[s] for s in rest)
        price = regular * self.bundle_price_cents // full if full else regular
        if price >= 1000 and price < regular:  # a price a shop would write: €52, not €52.86
            price -= price % 100
        return OfferSpec(kind="bundle", face_value_cents=regular - price, bundle_id=self.id,
                         bundle_name=self.name, bundle_skus=rest, bundle_price_cents=price,
                         regular_price_cents=regular, valid_days=valid_days, prefix="SET")

    def saves_enough(self, offer: OfferSpec) -> bool:
        saving, regular = offer.face_value_cents, offer.regular_price_cents or 0
        return saving > 0 and saving >= self.min_saving_cents and \
            saving * 100 >= self.min_saving_percent * regular

    def too_small(self, offer: OfferSpec, store: Store) -> str:
        """Why ``offer`` is not made, in the marketer's words."""
        regular = offer.regular_price_cents or 0
        share = 100 * offer.face_value_cents / regular if regular else 0
        if not self.min_saving_percent and not self.min_saving_cents:
            return (f'the rest of "{self.name}" would cost them no less than its usual price; '
                    "give the bundle a lower price")
        return (f'the rest of "{self.name}" would save them {store.money(offer.face_value_cents)}'
                f" ({share:.0f}% of its price); a mined pair's offer needs at least "
                f"{self.min_saving_percent}% and {store.money(self.min_saving_cents)} "
                "(mine.min_saving_percent, mine.min_saving)")


def bundle_name(names: list[str]) -> str:
    """A bundle named from its products: "Yoga mat & Yoga strap", "A, B & C"."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " & " + names[-1]


def resolve_bundles(engine: Engine, configured: tuple[Bundle, ...], mine: Mine | None,
                    now: datetime) -> list[BundleDeal]:
    """Configured bundles (skus missing from the catalogue are dropped) and mined pairs, each
    named by the campaign or from its products' names."""
    products = catalogue(engine)
    prices = {sku: row["price_cents"] for sku, row in products.items()}

    def named(skus: tuple[str, ...]) -> str:
        return bundle_name([products[s]["name"] for s in skus])

    deals: list[BundleDeal] = []
    for bundle in configured:
        if not all(s in prices for s in bundle.skus):
            continue
        full = sum(prices[s] for s in bundle.skus)
        price = cents(bundle.price) if bundle.price is not None else \
            full * (100 - (bundle.discount_percent or 0)) // 100
        deals.append(BundleDeal(bundle.id, bundle.name or named(bundle.skus), bundle.skus,
                                {s: prices[s] for s in bundle.skus}, min(price, full)))
    if mine is not None:
        taken = {frozenset(b.skus) for b in configured}
        for a, b in mined_pairs(engine, mine, now):
            if frozenset((a, b)) in taken or a not in prices or b not in prices:
                continue
            full = prices[a] + prices[b]
            deals.append(BundleDeal(f"pair-{a}-{b}".lower(), named((a, b)), (a, b),
                                    {a: prices[a], b: prices[b]},
                                    full * (100 - mine.discount_percent) // 100,
                                    mine.min_saving_percent, cents(mine.min_saving)))
    return deals


def catalogue_warnings(engine: Engine, campaign) -> list[str]:
    """Skus a campaign names that the catalogue does not have (a typo sends nothing)."""
    named: list[tuple[str, str]] = []
    for bundle in getattr(campaign, "bundles", ()):
        named += [(f"bundle {bundle.id}", sku) for sku in bundle.skus]
    gift = getattr(campaign, "gift", None)
    if gift is not None and gift.product:
        named.append(("gift", gift.product))
    if not named:
        return []
    known = set(catalogue(engine, {sku for _, sku in named}))
    return [f'{where}: sku "{sku}" is not in the product catalogue, so it is never offered'
            for where, sku in named if sku not in known]


def mined_pairs(engine: Engine, mine: Mine, now: datetime) -> list[tuple[str, str]]:
    """Pairs of skus bought in the same counted order, by support (share of orders)."""
    a, b = ITEMS.alias("a"), ITEMS.alias("b")
    counted = counted_order(now)
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(ORDERS).where(counted)).scalar()
        if not total:
            return []
        # A self-join of order items on the same order, counting each unordered pair once
        # (a.sku < b.sku) and each order once per pair (DISTINCT order id).
        together = func.count(func.distinct(a.c.order_id))
        rows = conn.execute(
            select(a.c.sku, b.c.sku, together.label("n"))
            .select_from(a.join(b, and_(a.c.order_id == b.c.order_id, a.c.sku < b.c.sku))
                         .join(ORDERS, ORDERS.c.id == a.c.order_id))
            .where(counted)
            .group_by(a.c.sku, b.c.sku)
            .having(together >= max(2, int(mine.min_support * total)))
            .order_by(together.desc(), a.c.sku, b.c.sku)
            .limit(mine.top)
        ).all()
    return [(row[0], row[1]) for row in rows]


def catalogue(engine: Engine, skus: set[str] | None = None) -> dict[str, dict]:
    """Products as plain dicts keyed by sku (all of them, or only ``skus``)."""
    query = select(PRODUCTS)
    if skus is not None:
        query = query.where(PRODUCTS.c.sku.in_(sorted(skus)))
    with engine.connect() as conn:
        return {row.sku: dict(row._mapping) for row in conn.execute(query)}


def new_products(engine: Engine, now: datetime, lookback_days: int, include_price_drops: bool,
                 categories: tuple[str, ...] = ()) -> list[dict]:
    """Products created, or reduced below compare-at price, within the lookback; newest first."""
    since = now - timedelta(days=lookback_days)
    is_new = and_(PRODUCTS.c.created_at >= since, PRODUCTS.c.created_at <= now)
    if include_price_drops:
        reduced = and_(PRODUCTS.c.price_reduced_at >= since, PRODUCTS.c.price_reduced_at <= now,
                       PRODUCTS.c.compare_at_price_cents > PRODUCTS.c.price_cents)
        is_new = or_(is_new, reduced)
    query = select(PRODUCTS).where(is_new)
    if categories:
        query = query.where(PRODUCTS.c.category.in_(categories))
    newest = func.coalesce(PRODUCTS.c.price_reduced_at, PRODUCTS.c.created_at)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(newest.desc(), PRODUCTS.c.sku)).all()
    return [dict(row._mapping) for row in rows]
