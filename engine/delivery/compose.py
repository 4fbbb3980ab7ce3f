"""What one email knows, and the finished message: from a planned delivery to bytes for SMTP.

Owns: turning a planned delivery (customer id, payload of products/offer/nudge, coupon code) into
the dict the templates see — customer, metrics, products, offer, nudge, store, campaign, the
unsubscribe URL and the "why you get this" sentence — and the headers that go with it; then, a
page at a time (``fetch`` reads a page in three queries, ``Composer`` renders it with
render.Renderer and builds the MIME bytes with mime.py), the messages ready for the transport.
renderworkers.py runs the same Composer in worker processes for big runs.
Must not: write to the database, send, or read the clock (``now`` is a parameter).

One customer's data never stops anybody else's mail. What the shop's data puts in a template
(names, country, product names) is made one line without control characters as it is read
(controlchars.one_line). Data a message still cannot carry (an address no header can hold, a
value the template fails on: triage.py tells those from a broken template) comes back from
``Composer`` as an ``Unsendable`` for that delivery alone, which the runner records ``failed``
for good; a template broken for everyone raises its TemplateError and stops the run before
anything is claimed.

Every amount of money in the context is a ``money.Money`` in the store's currency and locale, so
a template prints it formatted ("€12.50") without a filter; dates are ISO strings or ``date``
objects (the ``date`` filter formats them). The demo shop's products have no real pictures: mail
from a database that holds it attaches drawn ones inline (``with_pictures``); a real shop's mail
keeps its catalogue's image URLs.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection

from engine import db
from engine.campaigns import models as cm
from engine.config import Links, Settings, Store
from engine.consent import unsubscribe
from engine.controlchars import one_line
from engine.delivery import flowcontext
from engine.delivery.triage import rendered_for
from engine.errors import ConfigError, CustomerDataError
from engine.mail import contract, pictures, render
from engine.money import Money
from engine.tables import Coupon, Customer, CustomerMetrics, Delivery, Product
from engine.transport import OutgoingMessage

CUSTOMERS, METRICS, PRODUCTS = Customer.__table__, CustomerMetrics.__table__, Product.__table__
DELIVERIES, COUPONS = Delivery.__table__, Coupon.__table__
ONE_LINE_CUSTOMER = ("first_name", "last_name", "country")  # shown by templates

WHY = {
    "new_product": "You get this because you have bought {category_phrase} from {store} and "
                   "agreed to hear about new products.",
    "winback": "You get this because you are a customer of {store} and agreed to hear from us.",
    "spend_threshold": "You get this because of your orders at {store} this period and because "
                       "you agreed to hear from us.",
    "bundle": "You get this because you bought part of this set from {store} and agreed to "
              "hear from us.",
    "post_purchase": "You get this because you ordered from {store}.",
    "review_followup": "You get this because you reviewed a product you bought from {store}.",
    "abandoned_checkout": "You get this because you started a checkout at {store} and agreed "
                          "to hear from us.",
    "vip": "You get this because you are one of {store}'s most valued customers and agreed to "
           "hear from us.",
}


def store_context(settings: Settings) -> dict[str, Any]:
    s = settings.store
    return {"name": s.name, "url": s.url, "postal_address": s.postal_address,
            "currency": s.currency, "locale": s.locale}


def renderer(settings: Settings, cache: render.RendererCache | None = None) -> render.Renderer:
    """The Renderer of the campaign templates: from ``cache`` when the caller keeps one."""
    utm = settings.links.utm
    return (cache or render.RendererCache()).get(
        settings.folder("templates"), store_context(settings),
        utm.model_dump() if utm is not None else None)


def customer_rows(conn: Connection, ids: list[int]) -> dict[int, dict]:
    """Customers with their metrics, keyed by id, for a batch of deliveries."""
    query = (select(CUSTOMERS.c.id, CUSTOMERS.c.email, CUSTOMERS.c.first_name,
                    CUSTOMERS.c.last_name, CUSTOMERS.c.country, CUSTOMERS.c.timezone,
                    METRICS.c.orders, METRICS.c.spent_cents, METRICS.c.recency_days,
                    METRICS.c.dormancy, METRICS.c.value_tier, METRICS.c.lifecycle,
                    METRICS.c.last_order_at)
             .select_from(CUSTOMERS.outerjoin(METRICS, METRICS.c.customer_id == CUSTOMERS.c.id))
             .where(db.among(conn, CUSTOMERS.c.id, ids)))
    return {row.id: _one_line(dict(row._mapping), ONE_LINE_CUSTOMER)
            for row in conn.execute(query)}


def product_rows(conn: Connection, skus: set[str]) -> dict[str, dict]:
    if not skus:
        return {}
    query = select(PRODUCTS).where(PRODUCTS.c.sku.in_(sorted(skus)))
    return {row.sku: _one_line(dict(row._mapping), ("name", "category", "url", "image_url"))
            for row in conn.execute(query)}


def _one_line(row: dict, columns: tuple[str, ...]) -> dict:
    for column in columns:
        if row[column]:
            row[column] = one_line(row[column])
    return row


def _money(store: Store, cents: int | None) -> Money | None:
    return None if cents is None else store.money(cents)


def _product(row: dict, store: Store) -> dict[str, Any]:
    """A product as templates see it; without a page of its own it links to the shop."""
    compare_at = row["compare_at_price_cents"]
    return {"sku": row["sku"], "name": row["name"], "category": row["category"],
            "price": store.money(row["price_cents"]), "compare_at_price": _money(store, compare_at),
            "reduced": compare_at is not None and compare_at > row["price_cents"],
            "url": row["url"] or store.url, "image_url": row["image_url"]}


def offer_url(offer: dict, links: Links) -> str | None:
    """Where the offer's button leads: a bundle's items in the shop's cart when config.yaml
    gives the cart link's pattern; None is the template's choice (a product, the shop)."""
    if offer["kind"] == "bundle":
        return links.cart(list(offer.get("bundle_skus", ())))
    return None


def offer_context(offer: dict | None, code: str | None, now: datetime,
                  products: dict[str, dict], store: Store,
                  links: Links | None = None) -> dict[str, Any] | None:
    """The ``offer`` the templates see, with exactly the keys of contract.OFFER_KEYS."""
    if not offer:
        return None
    gift_sku = offer.get("gift_sku")
    gift_name = offer.get("gift_name") or (products.get(gift_sku, {}).get("name")
                                           if gift_sku else None)
    return contract.empty_offer(
        offer["kind"], code=code, percent_off=offer.get("percent_off"),
        amount_off=_money(store, offer.get("amount_off_cents")),
        min_spend=store.money(offer.get("min_spend_cents", 0)),
        expires_on=(now + timedelta(days=offer.get("valid_days", 30))).date().isoformat(),
        gift_name=gift_name, bundle_name=offer.get("bundle_name"),
        bundle_price=_money(store, offer.get("bundle_price_cents")),
        bundle_skus=list(offer.get("bundle_skus", ())),
        url=offer_url(offer, links) if links is not None else None)


def nudge_context(nudge: dict | None, store: Store) -> dict[str, Any] | None:
    if not nudge:
        return None
    return {"missing_amount": store.money(nudge["missing_cents"]),
            "threshold": store.money(nudge["threshold_cents"]),
            "spent": store.money(nudge["spent_cents"]),
            "gift_name": nudge.get("gift_name"), "period_ends_on": nudge.get("period_ends_on")}


def context(settings: Settings, campaign: cm.Campaign, customer: dict, payload: dict,
            code: str | None, now: datetime, products: dict[str, dict]) -> dict[str, Any]:
    """The template context for one delivery. ``products`` holds at least the payload's skus."""
    store = settings.store
    shown = [_product(products[s], store)
             for s in payload.get("products") or flowcontext.skus(payload) if s in products]
    categories = sorted({p["category"] for p in shown if p["category"]})
    phrase = (" and ".join(categories[:2]) + " products") if categories else "products"
    why = WHY[campaign.kind].format(store=settings.store.name,
                                    category_phrase=phrase)
    offer = offer_context(payload.get("offer"), code, now, products, store, settings.links)
    return {
        "customer": {"id": customer["id"],
                     "first_name": (customer["first_name"] or "").strip() or "there",
                     "last_name": customer["last_name"], "email": customer["email"],
                     "country": customer["country"]},
        "metrics": {"orders": customer["orders"] or 0,
                    "spent": store.money(customer["spent_cents"] or 0),
                    "recency_days": customer["recency_days"],
                    "dormancy": str(customer["dormancy"] or "none"),
                    "value_tier": customer["value_tier"] and str(customer["value_tier"]),
                    "lifecycle": str(customer["lifecycle"] or "prospect")},
        "store": store_context(settings),
        "campaign": {"id": campaign.id, "kind": campaign.kind},
        "products": shown,
        "offer": offer,
        "nudge": nudge_context(payload.get("nudge"), store),
        "unsubscribe_url": unsubscribe.url(settings, customer["id"]),
        "why": why,
        "preview_text": None,  # the campaign's preheader, else the first paragraph (Renderer)
        **flowcontext.context(campaign.kind, payload, products, store,
                              getattr(campaign, "sender", None)),
    }


def rendered(renderer: render.Renderer, campaign: cm.Campaign, payload: dict,
             email_context: dict[str, Any], samples_render: dict[tuple, bool] | None = None
             ) -> render.RenderedEmail:
    """The email of one delivery (its subject, the campaign's template and preheader), the
    way every path makes it: triage.rendered_for sorts a failure (template or data)."""
    return rendered_for(renderer, campaign, subject_for(campaign, payload), email_context,
                        samples_render)


def with_pictures(email: render.RenderedEmail, products: list[dict]
                  ) -> tuple[render.RenderedEmail, list[pictures.Picture]]:
    """The email showing each product's drawn picture inline (by Content-ID), and those
    pictures: for the demo shop, whose image URLs lead nowhere."""
    markup, attached = email.html, []
    for product in products:
        if not product["image_url"]:
            continue
        drawn = pictures.picture(product["sku"], product["name"], product["category"])
        source = f'src="{html.escape(product["image_url"])}"'
        if source in markup:
            markup = markup.replace(source, f'src="cid:{drawn.cid}"')
            attached.append(drawn)
    return render.RenderedEmail(email.subject, markup, email.text), attached


def demo_shop(engine: Engine) -> bool:
    with engine.connect() as conn:
        return db.get_meta(conn, db.DEMO_SHOP) is not None


def for_message(campaign: cm.Campaign, payload: dict) -> cm.Campaign:
    """The campaign as this delivery's message: a flow step's own template and subject."""
    step = (payload.get("flow") or {}).get("step")
    return campaign.variant(step) if step and isinstance(campaign, cm.Flow) else campaign


def subject_for(campaign: cm.Campaign, payload: dict) -> str:
    """A nudge may have its own subject line; everything else uses the campaign's."""
    if payload.get("nudge") and isinstance(campaign, cm.SpendThreshold) and campaign.nudge \
            and campaign.nudge.subject:
        return campaign.nudge.subject
    return campaign.subject


def skus_of(payloads: list[dict]) -> set[str]:
    found: set[str] = set()
    for payload in payloads:
        found.update(payload.get("products", []))
        found.update(flowcontext.skus(payload))
        offer = payload.get("offer") or {}
        found.update(offer.get("bundle_skus", ()))
        if offer.get("gift_sku"):
            found.add(offer["gift_sku"])
    return found


def sender_domain(settings: Settings) -> str:
    return settings.sender.from_address.split("@", 1)[1] if settings.sender else "localhost"


def message_id(settings: Settings, delivery_id: int, campaign_id: str) -> str:
    """Derived from the delivery, so a resent message is recognisable as the same one."""
    return f"<d{delivery_id}.{campaign_id}@{sender_domain(settings)}>"


def return_path(settings: Settings) -> str:
    if settings.delivery.return_path:
        return settings.delivery.return_path
    if settings.sender is None:
        raise ConfigError("config.yaml has no sender: section; add sender: {from: "
                          "you@your-shop.example}", settings.source)
    return settings.sender.from_address


def mime(settings: Settings, rendered: Any, customer: dict, msg_id: str, campaign_id: str,
         now: datetime, inline: list[pictures.Picture] | None = None,
         person: Any = None) -> bytes:
    """The complete message: both parts, From/Reply-To, the RFC 8058 headers, and the
    pictures shown inline. ``person`` (a review follow-up's named sender) signs the From name
    and takes the replies."""
    from engine.mail import mime as mime_module

    if settings.sender is None:
        return_path(settings)  # raises the ConfigError that says what to add
    headers = {**unsubscribe.headers(settings, customer["id"]), "X-Campaign-Id": campaign_id}
    return mime_module.build_message(
        rendered, from_addr=settings.sender.from_address,
        from_name=f"{person.name} ({settings.sender.from_name or settings.store.name})"
        if person else settings.sender.from_name, to_addr=customer["email"],
        reply_to=person.reply_to if person else settings.sender.reply_to,
        message_id=msg_id, headers=headers, date=now, pictures=inline or ())


# --- a page of deliveries → messages ready for the transport ----------------------------------

@dataclass(frozen=True, slots=True)
class Page:
    """A page of deliveries and everything their emails show, as plain data."""
    rows: list[tuple[int, str, int, dict]]  # (delivery id, campaign id, customer id, payload)
    customers: dict[int, dict]
    codes: dict[int, str]                   # delivery id → coupon code
    products: dict[str, dict]


@dataclass(frozen=True, slots=True)
class Ready:
    """A message composed for a delivery, not yet claimed: claiming happens right before DATA."""
    delivery_id: int
    campaign_id: str
    message: OutgoingMessage


@dataclass(frozen=True, slots=True)
class Unsendable:
    """A delivery whose customer's data cannot make its message: it fails alone, for good."""
    delivery_id: int
    campaign_id: str
    reason: str  # names the customer id and the field, never the address


def fetch(conn: Connection, ids: list[int]) -> Page:
    """The deliveries ``ids`` with their customers, coupon codes and products: three queries."""
    d = DELIVERIES
    rows = [(r.id, r.campaign_id, r.customer_id, json.loads(r.payload)) for r in conn.execute(
        select(d.c.id, d.c.campaign_id, d.c.customer_id, d.c.payload)
        .where(db.among(conn, d.c.id, ids)).order_by(d.c.id))]
    codes = dict(conn.execute(select(COUPONS.c.delivery_id, COUPONS.c.code)
                              .where(db.among(conn, COUPONS.c.delivery_id, ids))).all())
    return Page(rows, customer_rows(conn, sorted({r[2] for r in rows})), codes,
                product_rows(conn, skus_of([r[3] for r in rows])))


class Composer:
    """Reads and renders pages of deliveries into messages, in this process; a delivery whose
    customer's data cannot make a message comes back ``Unsendable``, the others ``Ready``."""

    lookahead = 0  # pages composed ahead of sending: none, composing here is sending's turn

    def __init__(self, settings: Settings, campaigns: Mapping[str, cm.Campaign],
                 engine: Engine | None = None, renderers: render.RendererCache | None = None):
        self.settings, self.campaigns = settings, dict(campaigns)
        self.engine = engine or db.connect(settings.database.url)
        self.renderer = renderer(settings, renderers)
        self.mail_from = return_path(settings)
        self.samples_render: dict[tuple, bool] = {}
        self.pictures = demo_shop(self.engine)
        self.variants: dict[tuple[str, str], cm.Campaign] = {}

    def compose(self, ids: list[int], now: datetime) -> list[Ready | Unsendable]:
        """The messages of deliveries ``ids``, in id order; TemplateError (with file and line)
        if a template fails for everyone."""
        with self.engine.connect() as conn:
            page = fetch(conn, ids)
        return [self._one(page, row, now) for row in page.rows]

    def _one(self, page: Page, row: tuple[int, str, int, dict], now: datetime
             ) -> Ready | Unsendable:
        delivery_id, campaign_id, customer_id, payload = row
        campaign, customer = self.campaigns[campaign_id], page.customers[customer_id]
        campaign = self._variant(campaign, payload)
        shown = context(self.settings, campaign, customer, payload, page.codes.get(delivery_id),
                        now, page.products)
        try:
            email = rendered(self.renderer, campaign, payload, shown, self.samples_render)
        except CustomerDataError as error:
            return Unsendable(delivery_id, campaign_id, str(error))
        inline: list[pictures.Picture] = []
        if self.pictures:
            email, inline = with_pictures(email, shown["products"])
        msg_id = message_id(self.settings, delivery_id, campaign_id)
        data = mime(self.settings, email, customer, msg_id, campaign_id, now, inline,
                    getattr(campaign, "sender", None))
        return Ready(delivery_id, campaign_id, OutgoingMessage(
            mail_from=self.mail_from, rcpt_to=customer["email"], data=data, message_id=msg_id))

    def _variant(self, campaign: cm.Campaign, payload: dict) -> cm.Campaign:
        """A flow step's own template and subject, made once per step."""
        key = (campaign.id, (payload.get("flow") or {}).get("step"))
        if key not in self.variants:
            self.variants[key] = for_message(campaign, payload)
        return self.variants[key]

    def submit(self, ids: list[int], now: datetime) -> Composing:
        return Composing(self, None, ids, now)

    def close(self) -> None:
        pass


class Composing:
    """A page being composed; ``result()`` waits for its messages."""

    def __init__(self, composer: Composer, future: Future | None, ids: list[int],
                 now: datetime):
        self.composer, self.future, self.ids, self.now = composer, future, ids, now

    def result(self) -> list[Ready | Unsendable]:
        ready = self.future.result() if self.future is not None else None
        # In this process when there is no worker, or when the worker failed on the page:
        # composing it here raises the error with its file and line.
        return ready if ready is not None else self.composer.compose(self.ids, self.now)

    def cancel(self) -> None:
        if self.future is not None:
            self.future.cancel()
