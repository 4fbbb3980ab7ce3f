"""``retain demo``: build the synthetic shop into a database of its own and show its segments.

Owns: writing ``synthshop.SyntheticShop``'s rows in chunks (``build_shop``), and a later day's
new orders and sign-ups (``add_day``, for bench/soak.py), keeping the demo from
replacing a real shop, and the command's flow (``run``): a short sequence of steps, each printing
what it did, so later steps (campaigns sent through a loopback SMTP server) slot in at the end.
Must not generate data (synthshop.py does), compute metrics (metrics.py does) or read the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from rich.columns import Columns
from rich.console import Console
from rich.table import Table
from sqlalchemy import Connection, Engine, Integer, cast, func, insert, inspect, select
from sqlmodel import SQLModel

from engine import db, tables
from engine.config import Settings
from engine.demo.synthevents import ShopEvents
from engine.demo.synthshop import SyntheticShop
from engine.errors import ConfigError
from engine.shop.counted import counted

CHUNK = 1000  # customers generated and written per round: memory stays flat at any size
SHOP_TABLES = ("customers", "products", "orders", "order_items", "customer_metrics")
DEMO_MARK = db.DEMO_SHOP  # meta key: this database's shop was built by the demo


@dataclass(frozen=True)
class ShopStats:
    """What ``build_shop`` wrote."""
    products: int
    customers: int
    orders: int
    order_items: int
    last_order_at: datetime | None


def run(engine: Engine, settings: Settings, now: datetime, customers: int = 3000, seed: int = 7,
        shop_only: bool = False, console: Console | None = None, fresh: bool = False,
        clock: Any = None) -> Any:
    """The demo: a shop (built once, reused after), its segments, then every campaign sent
    through a real SMTP server on loopback. Returns the run's report (None with shop_only).

    A second demo reuses the shop and the ledger, so it sends nothing that was already sent.
    """
    console = console or Console()
    refuse_foreign_shop(engine)
    with engine.connect() as conn:
        built = db.get_meta(conn, DEMO_MARK)
    if built is None or fresh or shop_only:
        stats = build_shop(engine, settings, now, customers=customers, seed=seed, replace=True)
        print_shop(console, stats, settings, now)
    else:
        console.print(f"Reusing the demo shop already in {db.redact(settings.database.url)} "
                      f"({built}); pass --fresh to build a new one.", markup=False)
    if shop_only:
        return None
    from engine.shop import metrics  # imported here: building the shop alone does not need it

    print_segments(console, metrics.summary(engine, settings, now))  # refreshes metrics first
    return send_campaigns(engine, settings, now, console, clock)


def send_campaigns(engine: Engine, settings: Settings, now: datetime, console: Console,
                   clock: Any = None) -> Any:
    """Every enabled campaign, through an aiosmtpd server on 127.0.0.1 writing to outbox/."""
    from engine.campaigns import validate
    from engine.delivery import runner
    from engine.transport.mailserver import MailServer
    from engine.transport.smtp import SmtpTransport

    campaigns = validate.load(settings)
    outbox = settings.folder("outbox")
    with MailServer(outbox=outbox) as server:
        local = settings.model_copy(update={"smtp": settings.smtp.model_copy(update={
            "host": "127.0.0.1", "port": server.port, "security": "none", "username": None,
            "password": None})})
        console.print(f"SMTP server listening on 127.0.0.1:{server.port}, writing to "
                      f"{outbox}/", markup=False)
        transport = SmtpTransport(local.smtp, delivery=local.delivery)
        try:
            report = runner.run(engine, local, campaigns, now, transport,
                                clock=clock or (lambda: now))
        finally:
            transport.close()
        received = len(server.messages)
    console.print(f"The server received {received} new messages; every email is a .eml file in "
                  f"{outbox}/ (open one in a mail client).", markup=False)
    print_limits(console, engine, settings, report, now)
    return report


def print_limits(console: Console, engine: Engine, settings: Settings, report: Any,
                 now: datetime) -> None:
    """What the frequency cap and quiet hours held back in this run, in a sentence each."""
    cap = settings.limits.max_emails_per_customer
    if cap is not None:
        deferred = sum(c.deferred for c in report.campaigns.values())
        capped = sum(c.capped for c in report.campaigns.values())
        console.print(f"Frequency cap (at most {cap.count} emails in {cap.days} days, higher "
                      f"priority first): {deferred} emails deferred to a later run, {capped} "
                      "dropped.", markup=False)
    quiet = settings.quiet_hours
    if quiet is not None:
        with engine.connect() as conn:
            waiting = conn.execute(select(func.count()).select_from(tables.Delivery).where(
                tables.Delivery.status == tables.DeliveryStatus.planned,
                tables.Delivery.campaign_id.in_(list(report.campaigns)),
                tables.Delivery.next_attempt_at > now)).scalar_one()
        console.print(f"Quiet hours ({quiet.start} to {quiet.end} in each customer's time "
                      f"zone): {waiting} emails wait for the morning where it is night now; "
                      "`retain run` (or the scheduler) sends them then.", markup=False)


def build_shop(engine: Engine, settings: Settings, now: datetime, customers: int = 3000,
               seed: int = 7, replace: bool = False) -> ShopStats:
    """Write a synthetic shop whose history ends at ``now`` into an empty database.

    Same ``seed`` and ``now``, same rows. Refuses a database that already has customers unless
    ``replace`` is true, in which case the shop tables, and the rows that point at them
    (deliveries, coupons, ...), are emptied first. One transaction: all or nothing.
    """
    shop = SyntheticShop(settings, now, seed)
    counts = {"customers": 0, "orders": 0, "order_items": 0}
    last_order_at: datetime | None = None
    with engine.begin() as conn:
        existing = _count_customers(conn)
        if existing and not replace:
            raise ConfigError(
                f"the database {_where(engine)} already holds {existing} customers; the "
                "synthetic shop is only built into an empty database: give it one of its own, "
                "e.g. --db sqlite:///demo.db")
        if replace:
            _wipe(conn)
        products = shop.product_rows()
        conn.execute(insert(tables.Product), products)
        events = ShopEvents(now, seed, settings.store.url, products)
        for start in range(0, customers, CHUNK):
            people = [shop.customer(index) for index in range(start, min(start + CHUNK,
                                                                            customers))]
            customer_ids = _insert_returning_ids(conn, tables.Customer, [p[0] for p in people])
            order_rows, baskets = [], []
            for customer_id, (_, orders) in zip(customer_ids, people, strict=True):
                for order_row, item_rows in orders:
                    order_rows.append({**order_row, "customer_id": customer_id})
                    baskets.append(item_rows)
                    if last_order_at is None or order_row["created_at"] > last_order_at:
                        last_order_at = order_row["created_at"]
            order_ids = _insert_returning_ids(conn, tables.Order, order_rows)
            item_rows = [{**item, "order_id": order_id}
                         for order_id, items in zip(order_ids, baskets, strict=True)
                         for item in items]
            if item_rows:
                conn.execute(insert(tables.OrderItem), item_rows)
            _write_events(conn, events, customer_ids, people, order_ids, order_rows, baskets)
            counts["customers"] += len(people)
            counts["orders"] += len(order_rows)
            counts["order_items"] += len(item_rows)
        db.set_meta(conn, DEMO_MARK, f"seed={seed} customers={customers} now={now.isoformat()}")
        db.bump_data_version(conn)
    return ShopStats(products=len(shop.products), last_order_at=last_order_at, **counts)


def _write_events(conn: Connection, events: ShopEvents, customer_ids: list[int],
                  people: list, order_ids: list[int], order_rows: list[dict],
                  baskets: list[list[dict]]) -> None:
    """The chunk's fulfillments, reviews and abandoned checkouts (synthevents.py)."""
    fulfillments, reviews = events.for_orders([
        (order_id, row["customer_id"], row, items)
        for order_id, row, items in zip(order_ids, order_rows, baskets, strict=True)])
    checkouts = events.checkouts([(customer_id, person[0]) for customer_id, person
                                  in zip(customer_ids, people, strict=True)])
    for table, rows in ((tables.Fulfillment, fulfillments), (tables.Review, reviews),
                        (tables.Checkout, checkouts)):
        if rows:
            conn.execute(insert(table), rows)


@dataclass(frozen=True)
class DayStats:
    """What ``add_day`` wrote."""
    signups: int     # new customers
    orders: int      # all new orders, the new customers' included
    returning: int   # orders by customers who were already in the shop


REGULAR_DAYS = 90  # a buyer whose last order is more recent is a regular; older ones lapsed


def add_day(engine: Engine, settings: Settings, day: date, seed: int = 7,
            since: datetime | None = None, until: datetime | None = None) -> DayStats:
    """Write the demo shop's orders and sign-ups of ``day`` (store time) created in
    [``since``, ``until``), by default the whole day, after ``build_shop``.

    The day is drawn from ``seed`` and the day alone (``SyntheticShop.orders_for_day``), as
    the shop stood at the day's start; so windows covering the day, written in time order,
    write the same rows as one call, and a caller can let orders arrive between its ticks.
    """
    zone = settings.store.zone
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    low, high = max(since or start, start), min(until or end, end)
    with engine.begin() as conn:
        if db.get_meta(conn, DEMO_MARK) is None:
            raise ConfigError(f"the database {_where(engine)} holds no demo shop: build one first "
                              "(retain demo --shop-only) before adding days to it")
        newest = max((conn.execute(select(func.max(t.created_at))).scalar() or low)
                     for t in (tables.Order, tables.Customer))
        if newest > low:
            raise ConfigError(f"the shop already has orders or customers after {low:%Y-%m-%d %H:%M}"
                              ": add days in time order, each moment once")
        regulars, lapsed = _buyers(conn, start)
        shop = SyntheticShop(settings, end - timedelta(microseconds=1),
                             seed * 1_000_003 + day.toordinal())
        drawn = shop.orders_for_day(regulars, lapsed, _next_index(conn, start))

        def within(row: dict) -> bool:
            return low <= row["created_at"] < high

        people = [row for row, _ in drawn.signups if within(row)]
        _insert_returning_ids(conn, tables.Customer, people)
        theirs = [(row["external_id"], order, items) for row, orders in drawn.signups
                  for order, items in orders if within(order)]
        ids = dict(conn.execute(select(tables.Customer.external_id, tables.Customer.id).where(
            tables.Customer.external_id.in_([key for key, _, _ in theirs]))).all())
        placed = [(customer_id, order, items) for customer_id, order, items in drawn.returning
                  if within(order)]
        placed += [(ids[key], order, items) for key, order, items in theirs]
        placed.sort(key=lambda p: p[1]["created_at"])  # ids in time order, whatever the windows
        order_ids = _insert_returning_ids(
            conn, tables.Order, [{**order, "customer_id": cid} for cid, order, _ in placed])
        items = [{**item, "order_id": order_id}
                 for order_id, (_, _, basket) in zip(order_ids, placed, strict=True)
                 for item in basket]
        if items:
            conn.execute(insert(tables.OrderItem), items)
        if people or placed:
            db.bump_data_version(conn)
    return DayStats(signups=len(people), orders=len(placed), returning=len(placed) - len(theirs))


def _buyers(conn: Connection, start: datetime) -> tuple[list[int], list[int]]:
    """Ids of the customers with a counted order before ``start``: regulars, then lapsed ones."""
    orders = tables.Order
    recent = func.max(orders.created_at) >= start - timedelta(days=REGULAR_DAYS)
    rows = conn.execute(select(orders.customer_id, recent).where(counted(start))
                        .group_by(orders.customer_id).order_by(orders.customer_id)).all()
    return [cid for cid, regular in rows if regular], [cid for cid, regular in rows if not regular]


def _next_index(conn: Connection, start: datetime) -> int:
    """The index of the next synthetic customer: their external ids count from demo-c-000001."""
    number = cast(func.substr(tables.Customer.external_id, 8), Integer)
    return conn.execute(select(func.coalesce(func.max(number), 0)).where(
        tables.Customer.external_id.like("demo-c-%"),
        tables.Customer.created_at < start)).scalar_one()


def refuse_foreign_shop(engine: Engine) -> None:
    """The demo replaces its database's shop: refuse a database holding a shop it did not build.

    Without this, ``retain demo`` run without ``--db`` would wipe the shop in config.yaml's
    database.
    """
    with engine.connect() as conn:
        existing = _count_customers(conn)
        if existing and db.get_meta(conn, DEMO_MARK) is None:
            raise ConfigError(
                f"the database {_where(engine)} holds a shop the demo did not build ({existing} "
                "customers), and the demo replaces its database's shop: run it on a database of "
                "its own, e.g. retain --db sqlite:///demo.db demo")


def print_shop(console: Console, stats: ShopStats, settings: Settings, now: datetime) -> None:
    local_now = now.astimezone(settings.store.zone)
    console.print(
        f"Built the synthetic shop: [bold]{stats.products}[/bold] products, "
        f"[bold]{stats.customers}[/bold] customers, [bold]{stats.orders}[/bold] orders "
        f"({stats.order_items} order items), history up to {local_now:%Y-%m-%d %H:%M %Z}.")
    console.print(f"Database: {db.redact(settings.database.url)}", markup=False)


def print_segments(console: Console, summary: dict[str, Any]) -> None:
    """One table per dimension: how many customers in each dormancy tier, stage, value tier."""
    dimensions = (("dormancy", "Dormancy tier", tables.Dormancy),
                  ("lifecycle", "Lifecycle stage", tables.Lifecycle),
                  ("value_tier", "Value tier", tables.ValueTier))
    shown = []
    for key, title, vocabulary in dimensions:
        counts = {str(k): v for k, v in (summary.get(key) or {}).items()}
        total = summary.get("customers") or sum(counts.values()) or 1  # share of all customers
        table = Table(title, "customers", "share", title_justify="left")
        # The vocabulary's order (active before drowsy ...), then anything else metrics reports.
        names = [v.value for v in vocabulary] + sorted(set(counts) - {v.value for v in vocabulary})
        for name in names:
            count = counts.get(name, 0)
            table.add_row(name, str(count), f"{100 * count / total:.1f} %")
        if total > sum(counts.values()):  # value tiers rank buyers only: prospects have none
            rest = total - sum(counts.values())
            table.add_row("(none)", str(rest), f"{100 * rest / total:.1f} %")
        shown.append(table)
    console.print(Columns(shown, padding=(0, 2)))


def _count_customers(conn: Connection) -> int:
    return conn.execute(select(func.count()).select_from(tables.Customer)).scalar_one()


def _where(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _insert_returning_ids(conn: Connection, table: type[SQLModel], rows: list[dict]) -> list[int]:
    """Insert ``rows`` (one executemany) and return their new ids, in row order."""
    if not rows:
        return []
    conn.execute(insert(table), rows)
    # Read the ids back by external id. INSERT ... RETURNING with rows kept in order would fall
    # back to one statement per row on SQLite, several times slower than this second query.
    keys = [row["external_id"] for row in rows]
    found = dict(conn.execute(select(table.external_id, table.id)
                              .where(table.external_id.in_(keys))).all())
    return [found[key] for key in keys]


def _wipe(conn: Connection) -> None:
    """Empty the shop tables and every table whose rows point at them, children first.

    Suppressions stay: they are keyed by address, not by customer row, and must outlive rebuilds.
    """
    doomed: list = []
    for table in SQLModel.metadata.sorted_tables:  # parents before children
        if table.name in SHOP_TABLES or any(fk.column.table in doomed
                                             for fk in table.foreign_keys):
            doomed.append(table)
    present = set(inspect(conn).get_table_names())
    for table in reversed(doomed):
        if table.name in present:
            conn.execute(table.delete())
