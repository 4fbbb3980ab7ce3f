"""Every database table and the closed vocabularies stored in them.

One module for all tables, as SQLModel's documentation advises (relationships resolve in one
place). Money is stored in integer minor units (cents) so sums are exact in SQL, 64-bit where
it is a per-customer total (``total_cents_column``); datetimes are stored as UTC and come back
timezone-aware (``UTCDateTime``). No behaviour lives here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    String,
    TypeDecorator,
    UniqueConstraint,
    event,
    false,
    func,
    inspect,
    text,
)
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Field, SQLModel

from engine import triggers


class UTCDateTime(TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL alike."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; pass an aware datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):  # raw SQL over SQLite returns text
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC)


def utc_column(*, nullable: bool = False, index: bool = False) -> Column:
    return Column(UTCDateTime(), nullable=nullable, index=index)


def total_cents_column() -> Column:
    """A per-customer total of cents (a sum over orders): 64-bit, as PostgreSQL's INTEGER
    stops at 2^31 - 1 cents (€21.4 M), a total a wholesale customer can pass."""
    return Column(BigInteger(), nullable=False)


class OrderStatus(StrEnum):
    paid = "paid"            # counted in metrics
    refunded = "refunded"    # fully refunded: not counted
    cancelled = "cancelled"  # not counted


class Dormancy(StrEnum):
    none = "none"                # never ordered
    active = "active"
    drowsy = "drowsy"
    half_asleep = "half_asleep"
    sleeping = "sleeping"


class ValueTier(StrEnum):
    A = "A"
    B = "B"
    C = "C"


class Lifecycle(StrEnum):
    prospect = "prospect"        # no counted order yet
    exploration = "exploration"  # one order
    formation = "formation"      # repeat purchases growing
    stable = "stable"            # loyal
    decline = "decline"          # repeat buyer whose orders stopped


class ChurnTier(StrEnum):
    low = "low"                  # churn risk below predict.churn_tiers.medium
    medium = "medium"
    high = "high"                # at least predict.churn_tiers.high


class DeliveryStatus(StrEnum):
    planned = "planned"        # in the ledger, not yet handed to the mail server
    sending = "sending"        # claimed by a sender; committed before DATA
    sent = "sent"              # the server accepted it
    failed = "failed"          # transient failure; retried with backoff
    bounced = "bounced"        # permanent failure; the address is suppressed
    suppressed = "suppressed"  # not sent: unsubscribed, bounced before, or on the suppression list
    held_out = "held_out"      # not sent on purpose: the campaign's control group
    unknown = "unknown"        # connection died after DATA: the server may have it; never resent
    deferred = "deferred"      # not sent yet: frequency cap or quiet hours; tried next run
    capped = "capped"          # dropped: a higher-priority campaign used the frequency cap
    cancelled = "cancelled"    # not sent: its occasion ended before the send (reason: a Skip)


class Skip(StrEnum):
    """Why a customer in the segment gets nothing from a run; not a ledger row, but counted in
    each run's summary (``runs.summary``) beside the delivery statuses."""
    no_consent = "no_consent"              # did not agree to marketing email
    already_received = "already_received"  # this occasion is in the ledger already
    cooldown = "cooldown"                  # got this campaign (or bundle) too recently
    nothing_to_offer = "nothing_to_offer"  # e.g. no new product in their categories
    over_budget = "over_budget"            # the run's offer budget is spent
    small_saving = "small_saving"          # the bundle's offer would save them too little
    paused = "paused"                      # asked to pause all mail for a while (mail_pauses)
    too_late = "too_late"                  # a flow step's moment passed more than max_late ago
    checkout_completed = "checkout_completed"  # the checkout became an order before the send

class OfferKind(StrEnum):
    coupon = "coupon"          # a unique code: percent or amount off
    gift = "gift"              # a free product or gift card, once per period
    bundle = "bundle"          # the rest of a bundle at the bundle price


class SuppressionReason(StrEnum):
    unsubscribed = "unsubscribed"
    bounced = "bounced"
    complained = "complained"
    imported = "imported"      # from a suppression list file
    manual = "manual"


class Customer(SQLModel, table=True):
    __tablename__ = "customers"
    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(sa_column=Column(String, unique=True, nullable=False))
    email: str
    # lower(email): the address is unique case-insensitively, and looked up this way.
    email_key: str = Field(sa_column=Column(String, unique=True, nullable=False))
    first_name: str = ""
    last_name: str = ""
    accepts_marketing: bool = False
    consent_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    consent_source: str | None = None
    country: str | None = None
    timezone: str | None = None
    tags: str = ""  # comma-separated, lower-case, no spaces around commas
    created_at: datetime = Field(sa_column=utc_column())


class Product(SQLModel, table=True):
    __tablename__ = "products"
    id: int | None = Field(default=None, primary_key=True)
    sku: str = Field(sa_column=Column(String, unique=True, nullable=False))
    name: str
    category: str = Field(default="", index=True)
    price_cents: int
    compare_at_price_cents: int | None = None
    url: str = ""
    image_url: str = ""
    created_at: datetime = Field(sa_column=utc_column())
    # When the price last dropped below compare-at (a "newly reduced" product), if ever.
    price_reduced_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class Order(SQLModel, table=True):
    __tablename__ = "orders"
    __table_args__ = (
        # Covers the metrics scan: per customer, counted orders by date, with totals and the
        # local date (recency); without it each order costs a table lookup.
        Index("ix_orders_customer_metrics", "customer_id", "status", "created_at", "total_cents",
              "local_date"),
    )
    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(sa_column=Column(String, unique=True, nullable=False))
    customer_id: int = Field(foreign_key="customers.id")
    created_at: datetime = Field(sa_column=utc_column())
    # The order's calendar date in the store's time zone: recency is counted in whole days.
    local_date: date
    status: OrderStatus = OrderStatus.paid
    total_cents: int
    currency: str = "EUR"
    discount_code: str | None = None


# A discount code as a customer types it, compared case-insensitively and without separators
# ("back-7kq4 xt" redeems "BACK-7KQ4XT"): shop/redemptions.py's code_key is this, in Python.
CODE_SEPARATORS = ("-", " ", "_", ".")


def code_key_sql(column: ColumnElement) -> ColumnElement:
    """The code key of ``column`` in SQL, the same on SQLite and PostgreSQL.

    Defined here, beside the index over it, because SQLite and PostgreSQL use an expression
    index only for a query whose expression is the index's own: every query that looks a code
    up builds it with this function. The separators are SQL literals, never bound parameters,
    for the same reason (a parameter is not the index's literal).
    """
    for separator in CODE_SEPARATORS:
        column = func.replace(column, text(f"'{separator}'"), text("''"))
    return func.upper(column)


# One coupon's redemption is a lookup: the orders carrying a code, by its key (a webhook's
# order is answered in milliseconds, not a pass over every order with a code).
_coded = Order.__table__.c.discount_code.is_not(None)
Index("ix_orders_discount_key", code_key_sql(Order.__table__.c.discount_code),
      sqlite_where=_coded, postgresql_where=_coded)


class OrderItem(SQLModel, table=True):
    __tablename__ = "order_items"
    __table_args__ = (Index("ix_order_items_sku_order", "sku", "order_id"),)
    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="orders.id", index=True)
    sku: str
    quantity: int = 1
    unit_price_cents: int = 0


class CustomerMetrics(SQLModel, table=True):
    """Per-customer metrics as of ``Meta['metrics_as_of']``, rebuilt by ``metrics.refresh``."""

    __tablename__ = "customer_metrics"
    customer_id: int = Field(primary_key=True, foreign_key="customers.id")
    orders: int = 0
    spent_cents: int = Field(default=0, sa_column=total_cents_column())
    avg_order_value_cents: int = 0
    first_order_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    last_order_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    recency_days: int | None = None
    r_score: int | None = None
    f_score: int | None = None
    m_score: int | None = None
    dormancy: Dormancy = Dormancy.none
    value_tier: ValueTier | None = None
    lifecycle: Lifecycle = Lifecycle.prospect


class MetricsDirty(SQLModel, table=True):
    """Customers whose counted orders may have changed since ``customer_metrics`` was built.

    Written by database triggers on ``orders`` and ``customers`` (``METRICS_TRIGGERS``), so that
    no writer — import, sync, webhook, erasure — can forget it; read and emptied by
    ``metrics.refresh``, which then rebuilds only these customers' rows.
    """

    __tablename__ = "metrics_dirty"
    customer_id: int = Field(primary_key=True)


class CustomerProduct(SQLModel, table=True):
    """The products (skus) each customer bought in counted orders, beside ``customer_metrics``
    and rebuilt with it (metrics.py whole, metricsdelta.py for the customers marked in
    ``metrics_dirty``). What a campaign asks of a customer's history, the categories they buy
    from and the products they own, is then one short range of this table a customer; reading
    every line of every order of a batch's customers was random reads across the whole order
    table, 70 % of a VIP plan's time at 10 M orders. Without a rowid on SQLite: the rows are
    stored in key order, a customer's together."""

    __tablename__ = "customer_products"
    __table_args__ = {"sqlite_with_rowid": False}
    customer_id: int = Field(primary_key=True)
    sku: str = Field(primary_key=True)


class SendHold(SQLModel, table=True):
    """A recipient domain (or ``""``, the server) that asked a sending worker to wait, and until
    when: each worker shares its back-offs here and takes the others' (delivery/fleet.py)."""

    __tablename__ = "send_holds"
    key: str = Field(primary_key=True)
    until: datetime = Field(sa_column=utc_column())


class CustomerPrediction(SQLModel, table=True):
    """Per-buyer predictions beside ``customer_metrics``, rebuilt with them by predict.py.
    Prospects have no row: their prediction fields are missing, like their recency."""

    __tablename__ = "customer_predictions"
    customer_id: int = Field(primary_key=True, foreign_key="customers.id")
    churn_risk: float            # P(no counted order in the next predict.horizon_days)
    p_alive: float
    expected_orders: float       # in the next predict.horizon_days
    # Expected spend in the next predict.horizon_days.
    predicted_clv_cents: int = Field(sa_column=total_cents_column())
    churn_tier: ChurnTier


class Meta(SQLModel, table=True):
    """Small key/value facts about the database: schema version, data version, metrics as-of."""

    __tablename__ = "meta"
    __table_args__ = (UniqueConstraint("key"),)
    key: str = Field(primary_key=True)
    value: str


class Coupon(SQLModel, table=True):
    """An offer issued to one customer by one campaign: a code, a gift or a bundle price."""

    __tablename__ = "coupons"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(sa_column=Column(String, unique=True, nullable=False))
    kind: OfferKind = OfferKind.coupon
    campaign_id: str = Field(index=True)
    customer_id: int = Field(foreign_key="customers.id", index=True)
    # The delivery that carries it (one offer per delivery).
    delivery_id: int | None = Field(default=None, foreign_key="deliveries.id", unique=True)
    percent_off: int | None = None
    amount_off_cents: int | None = None
    min_spend_cents: int = 0
    gift_sku: str | None = None
    gift_card_cents: int | None = None
    bundle_id: str | None = None
    bundle_price_cents: int | None = None
    # A gift is granted once per period ("2026-06", "2026-W24"): this records which.
    period: str | None = None
    issued_at: datetime = Field(sa_column=utc_column())
    expires_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    # Redemption, kept current by shop/redemptions.py from the imported orders: the code as a
    # customer types it (upper case, no separators), the first counted order that used it, the
    # order's total, the discount it gave (from the offer) and when.
    code_key: str | None = Field(default=None, index=True)
    redeemed_order_id: int | None = None  # orders.id; rewritten from the orders, so no FK
    redeemed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    redeemed_cents: int | None = None
    discount_cents: int | None = None


class Delivery(SQLModel, table=True):
    """The send ledger: one row per (campaign, customer, occasion), written only by ledger.py.

    The UNIQUE constraint, not a check in Python, is what makes "never twice" hold when two
    processes plan the same campaign at once or a run restarts after a crash.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("campaign_id", "customer_id", "occasion", name="uq_delivery_occasion"),
        Index("ix_deliveries_status", "status", "next_attempt_at"),
        Index("ix_deliveries_customer", "customer_id", "campaign_id", "planned_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: str
    customer_id: int = Field(foreign_key="customers.id")
    occasion: str
    status: DeliveryStatus = DeliveryStatus.planned
    reason: str | None = None  # why it was skipped, deferred or failed (no addresses)
    priority: int = 0
    payload: str = "{}"  # JSON: the products, offer and nudge the email shows
    # Transactional mail (purpose: transactional) needs no marketing consent; see the claim.
    transactional: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    # An abandoned-checkout step: the checkout rechecked when the delivery is claimed.
    checkout_id: int | None = None
    message_id: str | None = Field(default=None, index=True)
    attempts: int = 0
    planned_at: datetime = Field(sa_column=utc_column())
    next_attempt_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    claimed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    claimed_by: str | None = None  # the run (runs.id) that moved it to `sending`, or the worker
    # (runs.id) leasing it: a worker's batch is its own until then (delivery/worker.py); a
    # lease that lapses (the worker died) gives the row back to whoever sends next.
    lease_until: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    sent_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class ProductAnnouncement(SQLModel, table=True):
    """Which product was announced to which customer: a product is announced at most once."""

    __tablename__ = "product_announcements"
    customer_id: int = Field(primary_key=True, foreign_key="customers.id")
    product_id: int = Field(primary_key=True, foreign_key="products.id")
    delivery_id: int = Field(foreign_key="deliveries.id")


class Suppression(SQLModel, table=True):
    """Addresses that must never receive marketing email, whatever the customer table says."""

    __tablename__ = "suppressions"
    email_key: str = Field(primary_key=True)  # lower(email); survives re-imports of customers
    reason: SuppressionReason
    source: str = ""
    created_at: datetime = Field(sa_column=utc_column())


class MailPause(SQLModel, table=True):
    """A customer's "not now": no marketing email to the address until ``until``, chosen on the
    unsubscribe page instead of leaving. Keyed by address, like suppressions."""

    __tablename__ = "mail_pauses"
    email_key: str = Field(primary_key=True)  # lower(email)
    until: datetime = Field(sa_column=utc_column())
    source: str = ""
    created_at: datetime = Field(sa_column=utc_column())


class Run(SQLModel, table=True):
    """One `retain run` (or scheduled run) process: who it is, whether it is alive, its summary.

    Deliveries left in `sending` by a run that is no longer alive are marked `unknown` (the
    server may have them), never resent silently.
    """

    __tablename__ = "runs"
    id: str = Field(primary_key=True)
    pid: int
    host: str
    started_at: datetime = Field(sa_column=utc_column())
    heartbeat_at: datetime = Field(sa_column=utc_column())
    finished_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    campaigns: str = ""        # comma-separated campaign ids
    summary: str = "{}"        # JSON counts per status
    paused_reason: str | None = None
    connections: int | None = None  # a `retain worker`: the SMTP connections it asks for


class Lease(SQLModel, table=True):
    """A named lock with an expiry: one scheduler leads; another takes over when it lapses."""

    __tablename__ = "leases"
    name: str = Field(primary_key=True)
    holder: str                 # host:pid:random of the process holding it
    acquired_at: datetime = Field(sa_column=utc_column())
    expires_at: datetime = Field(sa_column=utc_column())


class CampaignState(SQLModel, table=True):
    """What the scheduler remembers per campaign: paused or not, and when it last fired."""

    __tablename__ = "campaign_state"
    campaign_id: str = Field(primary_key=True)
    paused: bool = False
    paused_reason: str | None = None
    paused_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    last_fire_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    last_run_id: str | None = None


class Fulfillment(SQLModel, table=True):
    """A shipment of an order: when it left, how to track it, when it arrived (if known)."""

    __tablename__ = "fulfillments"
    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(sa_column=Column(String, unique=True, nullable=False))
    order_id: int = Field(foreign_key="orders.id", index=True)
    shipped_at: datetime = Field(sa_column=utc_column(index=True))
    carrier: str = ""
    tracking_number: str = ""
    tracking_url: str = ""
    delivered_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class Review(SQLModel, table=True):
    """A customer's review of a product (by SKU): a rating of 1 to 5 and its text."""

    __tablename__ = "reviews"
    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(sa_column=Column(String, unique=True, nullable=False))
    customer_id: int = Field(foreign_key="customers.id", index=True)
    sku: str = Field(index=True)
    rating: int
    body: str = ""
    created_at: datetime = Field(sa_column=utc_column(index=True))


class Checkout(SQLModel, table=True):
    """A checkout a customer (or a guest, by email) started; completed when an order came of it.

    ``items`` is JSON: ``[[sku, quantity, unit_price_cents], ...]``, as an order's line items.
    """

    __tablename__ = "checkouts"
    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(sa_column=Column(String, unique=True, nullable=False))
    customer_id: int | None = Field(default=None, foreign_key="customers.id", index=True)
    email_key: str | None = Field(default=None, index=True)  # lower(email); guests have no id
    items: str = "[]"
    total_cents: int = 0
    currency: str = "EUR"
    url: str = ""  # where the customer can pick the checkout up again
    created_at: datetime = Field(sa_column=utc_column(index=True))
    completed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    order_id: int | None = Field(default=None, foreign_key="orders.id")


class WebhookReceipt(SQLModel, table=True):
    """A webhook delivery as received: stored before it is applied, unique per delivery id.

    The unique key is what makes a retried delivery apply once. ``body`` is cleared once the
    delivery is applied (its data then lives in the shop's tables); a delivery that could not be
    applied keeps it, with the error, for the next sync. ``object_*`` name the upstream object
    and its version, so an older version arriving late is not applied over a newer one.
    """

    __tablename__ = "webhook_receipts"
    __table_args__ = (
        UniqueConstraint("source", "webhook_id", name="uq_webhook_delivery"),
        Index("ix_webhook_object", "source", "object_kind", "object_id"),
        Index("ix_webhook_pending", "source", "applied_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    source: str
    webhook_id: str
    topic: str
    received_at: datetime = Field(sa_column=utc_column())
    body: str | None = None
    applied_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    error: str | None = None
    object_kind: str | None = None     # order, customer, fulfillment, checkout, refund, ...
    object_id: str | None = None       # the upstream id (for a refund: its order's id)
    object_key: str | None = None      # our external id for it (an order's name)
    object_updated_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class SyncState(SQLModel, table=True):
    """Per configured source: when data last arrived, the last error, the watermark, counts."""

    __tablename__ = "sync_state"
    source: str = Field(primary_key=True)
    kind: str
    last_attempt_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    last_success_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    last_error: str | None = None       # one line, no secrets, no addresses
    last_error_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    watermark: str = "{}"               # JSON, per source kind (SQL: newest updated_at per query)
    rows_applied: int = 0               # rows inserted or updated by the last successful sync
    rows_total: int = 0                 # since the source was first synced


@event.listens_for(SQLModel.metadata, "after_create")
def _after_create(_metadata, connection, **_kw) -> None:
    if connection.dialect.name in ("postgresql", "sqlite") and \
            "metrics_dirty" in inspect(connection).get_table_names():
        triggers.create_metrics_triggers(connection)
