"""Customer metrics as of a moment: RFM, dormancy tier, value tier and lifecycle stage.

Owns: the one SQL statement that rebuilds the ``customer_metrics`` table from the orders (and
the one that fills ``customer_products``, the skus each customer bought, beside it), the
cache rule that skips the rebuild when nothing it depends on changed, and read-outs for one
customer and for the whole shop. Must not loop over customers in Python, read the clock, or
know about campaigns: ``now`` is always a parameter.

Definitions (thresholds come from ``settings.metrics``):

- A *counted* order is paid and created before ``now`` (shop/counted.py has the rule and its
  cases; cancelled and fully refunded orders never count). *Buyers* are customers with at
  least one counted order; the others are prospects (dormancy ``none``, scores and value tier
  null).
- ``recency_days``: calendar days from the last counted order's ``local_date`` (its date in the
  store's time zone) to ``now``'s date in that zone.
- R/F/M scores 1-5: ``1 + floor(5 * (buyers ranked strictly below) / buyers)``. This is NTILE(5)
  with one difference: equal values always get equal scores (NTILE would split a tie across two
  scores by row order, so two customers with the same 3 orders could score 2 and 3). A tie takes
  the score of its lowest member. R ranks by last order date, F by orders, M by spend.
- Value tier: A when fewer than ``value_tiers.a`` of buyers spent strictly more, B when fewer
  than ``a + b`` did, else C. A tie on a boundary therefore joins the better tier, so tier A can
  hold slightly more than its share but equal spenders never land in different tiers.
- Lifecycle: prospect (0 orders), exploration (fewer than ``formation_orders``), formation,
  stable (``stable_orders`` or more); decline when a customer with ``formation_orders`` or more
  has ``recency_days >= decline_recency_days`` (decline wins over formation and stable).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    Date,
    Engine,
    Integer,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal_column,
    select,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from engine import db, money, tables
from engine.config import Settings
from engine.errors import NotFound
from engine.shop.counted import counted

customers = tables.Customer.__table__
orders = tables.Order.__table__
order_items = tables.OrderItem.__table__
metrics_table = tables.CustomerMetrics.__table__
products_table = tables.CustomerProduct.__table__

# Basis points: the value-tier shares are compared in integers so 0.2 * 10 buyers is exactly 2.
_BASIS = 10_000


class days_between(FunctionElement):
    """Whole calendar days from ``earlier`` to ``later`` (two DATE expressions)."""

    type = Integer()
    inherit_cache = True


@compiles(days_between, "sqlite")
def _days_between_sqlite(element, compiler, **kw):
    # SQLite keeps dates as 'YYYY-MM-DD' text; julianday() of two midnights differs by an
    # exact whole number, so the cast never rounds a day away.
    later, earlier = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"CAST(julianday({later}) - julianday({earlier}) AS INTEGER)"


@compiles(days_between)
def _days_between_default(element, compiler, **kw):
    # PostgreSQL: date - date is already an integer number of days.
    later, earlier = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"({later} - {earlier})"


def refresh(engine: Engine, settings: Settings, now: datetime) -> None:
    """Rebuild ``customer_metrics`` as of ``now`` unless it already holds exactly that (only
    the customers whose orders changed when that is all that did: ``metricsdelta``), then the
    predictions beside it (predict.py: rebuilt when these rows were rebuilt whole, or when the
    predict: settings changed; an incremental refresh or a cached read keeps them)."""
    from engine.shop import refit  # predict.py reads this module's day arithmetic

    _refresh_metrics(engine, settings, now)
    refit.refresh(engine, settings, now)


def _refresh_metrics(engine: Engine, settings: Settings, now: datetime) -> None:
    from engine.shop import metricsdelta  # it builds on this module's expressions

    _require_aware(now)
    with engine.begin() as conn:
        state = _cache_state(conn, settings, now)
        if state in ("stale", "changed") and conn.dialect.name == "postgresql":
            # Two rebuilds at once would both delete, then collide on the primary key; this
            # lock queues the second one (readers are not blocked), which then finds the
            # rows the first one wrote.
            conn.exec_driver_sql("LOCK TABLE customer_metrics IN SHARE ROW EXCLUSIVE MODE")
            state = _cache_state(conn, settings, now)
        if state == "same":
            return  # nothing written: a cached read takes no write lock
        cached = db.get_meta(conn, "metrics_as_of")
        db.set_meta(conn, "metrics_as_of", now.astimezone(UTC).isoformat())
        if state == "equivalent":
            return
        if not (state == "changed" and metricsdelta.refresh_changed(
                conn, _parameters(settings, now), datetime.fromisoformat(cached), now)):
            conn.execute(delete(metricsdelta.DIRTY))
            conn.execute(delete(metrics_table))
            conn.execute(_rebuild_statement(), _parameters(settings, now))
            conn.execute(delete(products_table))
            conn.execute(products_statement(conn), {"now": now})
            db.set_meta(conn, "metrics_rebuilt_at", now.astimezone(UTC).isoformat())
        db.set_meta(conn, "metrics_local_date", _local_date(settings, now).isoformat())
        db.set_meta(conn, "metrics_data_version", db.get_meta(conn, "data_version") or "0")
        db.set_meta(conn, "metrics_settings", _settings_key(settings))
        db.set_meta(conn, "metrics_built_at", now.astimezone(UTC).isoformat())


def _cache_state(conn: Connection, settings: Settings, now: datetime) -> str:
    """Whether the table is as of ``now`` ("same"), would come out identical if rebuilt at
    ``now`` ("equivalent"), needs only the customers whose orders changed rebuilt ("changed":
    same local date and settings; ``metricsdelta``), or must be rebuilt whole ("stale").

    The metrics depend on ``now`` only through the store-local date (recency) and the set of
    orders created before it. So besides the data version and the thresholds, the rows stay
    right while the local date is the same and no order was created between the cached moment
    and ``now``: ``retain segment`` run twice a minute apart does not rebuild a million rows.
    """
    as_of = db.get_meta(conn, "metrics_as_of")
    if as_of is None:
        return "stale"
    if (db.get_meta(conn, "metrics_settings") != _settings_key(settings)
            or db.get_meta(conn, "metrics_local_date")
            != _local_date(settings, now).isoformat()):
        return "stale"
    if db.get_meta(conn, "metrics_data_version") != (db.get_meta(conn, "data_version") or "0"):
        return "changed"
    cached = datetime.fromisoformat(as_of)
    if cached == now:
        return "same"
    low, high = sorted((cached, now))
    between = select(orders.c.id).where(
        orders.c.created_at >= bindparam("low", low, type_=tables.UTCDateTime()),
        orders.c.created_at < bindparam("high", high, type_=tables.UTCDateTime()),
    ).limit(1)
    return "changed" if conn.execute(between).first() is not None else "equivalent"


def _per_customer(only: bool = False):
    """Every customer (or, ``only``, those in the expanding parameter ``ids``) with the
    aggregates of their counted orders (none for a prospect)."""
    # Driving from customers in id order and seeking each one's orders in
    # ix_orders_customer_metrics gives SQLite a nested loop with no sort and no join of two
    # large intermediate results (a CTE of buyers LEFT JOINed back to customers got no index
    # and went quadratic).
    now = bindparam("now", type_=tables.UTCDateTime())
    counted_order = and_(orders.c.customer_id == customers.c.id, counted(now))
    query = (
        select(
            customers.c.id.label("customer_id"),
            func.count(orders.c.customer_id).label("orders"),
            func.coalesce(func.sum(orders.c.total_cents), 0).label("spent_cents"),
            func.min(orders.c.created_at).label("first_order_at"),
            func.max(orders.c.created_at).label("last_order_at"),
            func.max(orders.c.local_date).label("last_local_date"),
        )
        .select_from(customers.outerjoin(orders, counted_order))
        .group_by(customers.c.id)
    )
    if only:
        query = query.where(customers.c.id.in_(bindparam("ids", expanding=True)))
    return query.cte("per_customer")


COLUMNS = ["customer_id", "orders", "spent_cents", "avg_order_value_cents", "first_order_at",
           "last_order_at", "recency_days", "r_score", "f_score", "m_score", "dormancy",
           "value_tier", "lifecycle"]


def _own(r) -> dict[str, Any]:
    """What a customer's row says from their own orders alone (``r``: orders, spent_cents,
    recency_days columns): average order, dormancy, lifecycle."""
    is_prospect = r.orders == 0
    m = metrics_table.c
    dormancy = case(
        (is_prospect, "none"),
        (r.recency_days < bindparam("drowsy_days"), "active"),
        (r.recency_days < bindparam("half_asleep_days"), "drowsy"),
        (r.recency_days < bindparam("sleeping_days"), "half_asleep"),
        else_="sleeping",
    )
    lifecycle = case(
        (is_prospect, "prospect"),
        # Decline is checked first: a stable customer who stopped buying is in decline.
        (and_(r.orders >= bindparam("formation_orders"),
              r.recency_days >= bindparam("decline_recency_days")), "decline"),
        (r.orders < bindparam("formation_orders"), "exploration"),
        (r.orders < bindparam("stable_orders"), "formation"),
        else_="stable",
    )
    # The enum columns are native ENUM types on PostgreSQL; a CASE yields text, hence the casts.
    return {
        # Average rounded half up to the cent, in integers: (2s + n) / 2n.
        "avg_order_value_cents": case((is_prospect, 0),
                                      else_=(2 * r.spent_cents + r.orders) // (2 * r.orders)),
        "dormancy": cast(dormancy, m.dormancy.type),
        "lifecycle": cast(lifecycle, m.lifecycle.type),
    }


def _ranks(source, recency_order) -> list:
    """The window columns the population-relative scores need, over ``source`` (orders,
    spent_cents columns); ``recency_order`` ranks the least recent buyer first."""
    # RANK() rather than NTILE() or ROW_NUMBER() so equal values share a rank; the rank minus
    # one is "how many buyers are strictly below". PARTITION BY "is a buyer" keeps prospects
    # out of the buyers' quintiles and tiers. Each distinct PARTITION/ORDER pair costs a sort
    # of every customer, so the spend window serves three functions: the whole partition's
    # COUNT(*) is the number of buyers, and COUNT(*) with the default frame (up to the current
    # row's last tie) those who spent at most as much; the difference is the number who spent
    # strictly more, which decides the value tier.
    # A literal 0, not a bound parameter: SQLite shares a sort only between windows whose
    # definitions are identical, and each "?" would count as a different expression.
    is_buyer = source.orders > literal_column("0")
    by_spend = {"partition_by": is_buyer, "order_by": source.spent_cents}
    return [
        func.count().over(**by_spend, rows=(None, None)).label("buyers"),
        func.rank().over(**by_spend).label("m_rank"),
        func.count().over(**by_spend).label("spent_at_most"),
        func.rank().over(partition_by=is_buyer, order_by=recency_order).label("r_rank"),
        func.rank().over(partition_by=is_buyer, order_by=source.orders).label("f_rank"),
    ]


def _scores(r) -> dict[str, Any]:
    """RFM quintiles and the value tier from ``_ranks``' columns: they depend on every buyer."""
    is_prospect = r.orders == 0

    def quintile(rank):
        # Integer division on both databases: 1 + floor(5 * below / buyers).
        return case((is_prospect, None), else_=1 + (rank - 1) * 5 // r.buyers)

    richer = (r.buyers - r.spent_at_most) * _BASIS  # buyers who spent more, in basis points
    value_tier = case(
        (is_prospect, None),
        (richer < bindparam("tier_a_bp") * r.buyers, "A"),
        (richer < bindparam("tier_ab_bp") * r.buyers, "B"),
        else_="C",
    )
    return {"r_score": quintile(r.r_rank), "f_score": quintile(r.f_rank),
            "m_score": quintile(r.m_rank),
            "value_tier": cast(value_tier, metrics_table.c.value_tier.type)}


def _rebuild_statement():
    """``INSERT INTO customer_metrics SELECT ...``: every customer's row in one statement."""
    per_customer = _per_customer()
    p = per_customer.c
    ranked = select(
        per_customer,
        days_between(bindparam("today", type_=Date()), p.last_local_date).label("recency_days"),
        *_ranks(p, p.last_local_date),
    ).cte("ranked")
    r = ranked.c
    values = {"customer_id": r.customer_id, "orders": r.orders, "spent_cents": r.spent_cents,
              "first_order_at": r.first_order_at, "last_order_at": r.last_order_at,
              "recency_days": r.recency_days, **_own(r), **_scores(r)}
    return insert(metrics_table).from_select(COLUMNS, select(*(values[c] for c in COLUMNS)))


def products_statement(conn: Connection, only: bool = False):
    """``INSERT INTO customer_products``: each customer's skus over their counted orders (or,
    ``only``, those of the customers in the expanding parameter ``ids``)."""
    now = bindparam("now", type_=tables.UTCDateTime())
    lines = (select(orders.c.customer_id, order_items.c.sku)
             .select_from(order_items.join(orders, orders.c.id == order_items.c.order_id))
             .where(counted(now)))
    if only:
        lines = lines.where(orders.c.customer_id.in_(bindparam("ids", expanding=True)))
        lines = lines.order_by(orders.c.customer_id, order_items.c.sku)
    else:
        # Read in table order, sorted once, inserted in key order: at 10 M lines 9 s of CPU.
        # The range on the lines' own key makes SQLite scan them in table order, finding each
        # one's order by its key as both scans move along (otherwise it walks the sku index
        # and reads the orders at random); "+ 0" keeps it from walking the orders by customer
        # to skip the sort, which reads the lines at random instead. Unsorted, the inserts
        # land all over the table and cost 6 times as much.
        lines = lines.where(order_items.c.id > literal_column("0")).order_by(
            orders.c.customer_id + literal_column("0"), order_items.c.sku)
    return (db.dialect_insert(conn, products_table)
            .from_select(["customer_id", "sku"], lines).on_conflict_do_nothing())


def _parameters(settings: Settings, now: datetime) -> dict[str, Any]:
    cfg = settings.metrics
    tier_a = round(cfg.value_tiers.a * _BASIS)
    return {
        "now": now,
        "today": _local_date(settings, now),
        "drowsy_days": cfg.dormancy_days.drowsy,
        "half_asleep_days": cfg.dormancy_days.half_asleep,
        "sleeping_days": cfg.dormancy_days.sleeping,
        "tier_a_bp": tier_a,
        "tier_ab_bp": tier_a + round(cfg.value_tiers.b * _BASIS),
        "formation_orders": cfg.lifecycle.formation_orders,
        "stable_orders": cfg.lifecycle.stable_orders,
        "decline_recency_days": cfg.lifecycle.decline_recency_days,
    }


def for_customer(engine: Engine, settings: Settings, ref: str, now: datetime) -> dict[str, Any]:
    """One customer's metrics as stable JSON-ready values (``retain customers show --json``);
    ``ref`` as ``customer_id`` reads it."""
    refresh(engine, settings, now)
    m = metrics_table.c
    with engine.connect() as conn:
        row = conn.execute(
            select(customers, metrics_table)
            .join(metrics_table, m.customer_id == customers.c.id)
            .where(customers.c.id == customer_id(engine, ref))
        ).mappings().first()
    return _customer_json(row)


def customer_id(engine: Engine, ref: str) -> int:
    """The customer ``ref`` names: tried as the numeric id, then as the external id, then as
    the email address (case-insensitive); the first that matches wins. NotFound otherwise."""
    ref = ref.strip()
    attempts = []
    if ref.isdigit():
        attempts.append(customers.c.id == int(ref))
    attempts += [customers.c.external_id == ref, customers.c.email_key == ref.lower()]
    with engine.connect() as conn:
        for condition in attempts:
            found = conn.execute(select(customers.c.id).where(condition)).scalar()
            if found is not None:
                return found
    what = "an email address" if "@" in ref else "a customer id or external id"
    raise NotFound(f'no customer matches "{ref}" as {what}; list customers with '
                   "`retain segment` or check the spelling (emails match case-insensitively)")


def _customer_json(row: Any) -> dict[str, Any]:
    name = f"{row['first_name']} {row['last_name']}".strip()
    return {
        "customer_id": row["id"],
        "external_id": row["external_id"],
        "name": name,
        "orders": row["orders"],
        "spent": money.decimal_text(row["spent_cents"]),
        "avg_order_value": money.decimal_text(row["avg_order_value_cents"]),
        "first_order_at": _iso(row["first_order_at"]),
        "last_order_at": _iso(row["last_order_at"]),
        "recency_days": row["recency_days"],
        "r_score": row["r_score"],
        "f_score": row["f_score"],
        "m_score": row["m_score"],
        "dormancy": _enum_value(row["dormancy"]),
        "value_tier": _enum_value(row["value_tier"]),
        "lifecycle": _enum_value(row["lifecycle"]),
        "accepts_marketing": bool(row["accepts_marketing"]),
    }


def summary(engine: Engine, settings: Settings, now: datetime) -> dict[str, Any]:
    """Counts per dormancy tier, lifecycle stage and value tier (every category, zeros too)."""
    refresh(engine, settings, now)
    m = metrics_table.c
    result: dict[str, Any] = {
        "as_of": now.astimezone(UTC).isoformat(),
        "customers": 0,
        "dormancy": {d.value: 0 for d in tables.Dormancy},
        "lifecycle": {stage.value: 0 for stage in tables.Lifecycle},
        "value_tier": {t.value: 0 for t in tables.ValueTier},
    }
    with engine.connect() as conn:
        result["customers"] = conn.execute(select(func.count()).select_from(metrics_table)
                                           ).scalar_one()
        for key, column in (("dormancy", m.dormancy), ("lifecycle", m.lifecycle),
                            ("value_tier", m.value_tier)):
            query = (select(column, func.count()).where(column.is_not(None))
                     .group_by(column))
            for value, count in conn.execute(query):
                result[key][_enum_value(value)] = count
    return result


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _enum_value(value: Any) -> str | None:
    return getattr(value, "value", value)


def _local_date(settings: Settings, now: datetime) -> date:
    return now.astimezone(settings.store.zone).date()


def _settings_key(settings: Settings) -> str:
    """The thresholds and time zone the cached rows were computed with, as a stable string."""
    return json.dumps({"metrics": settings.metrics.model_dump(), "zone": settings.store.timezone},
                      sort_keys=True)


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime (the engine never guesses a zone)")
