"""What a segment condition can say, and the SQL and English it becomes.

Owns: the field catalogue (``FIELDS``: name, kind, label and the SQL it reads), the operator
table (``OPERATORS`` and ``OPERATORS_BY_KIND``), ``Condition`` (one field, one operator, one
value) with its SQL over ``SOURCE`` (customers JOIN customer_metrics) as of ``now`` and its
English, and ``catalogue_markdown()`` for README. Must not parse YAML or run queries
(segments.py does) nor put a marketer's value into SQL text: every value is a bound parameter.

Conditions use two-valued logic: a condition on a missing value (a prospect's recency, a
customer without a country) is false, so ``not:`` always means "everyone else".
"""

from __future__ import annotations

import operator as py
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, false, func, literal, not_, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from engine import money, tables
from engine.shop import predict
from engine.shop.counted import counted

customers = tables.Customer.__table__
orders = tables.Order.__table__
order_items = tables.OrderItem.__table__
products = tables.Product.__table__
metrics_table = tables.CustomerMetrics.__table__
predictions = tables.CustomerPrediction.__table__
# What ``Segment.where()`` expects in FROM; other modules build their queries over this too.
SOURCE = customers.join(metrics_table, metrics_table.c.customer_id == customers.c.id)


class epoch_seconds(FunctionElement):
    """Seconds since 1970 of a stored UTC timestamp, as an integer on either database."""

    type = BigInteger()
    inherit_cache = True


@compiles(epoch_seconds, "sqlite")
def _epoch_sqlite(element, compiler, **kw):
    return f"CAST(strftime('%s', {compiler.process(element.clauses, **kw)}) AS INTEGER)"


@compiles(epoch_seconds)
def _epoch_default(element, compiler, **kw):
    # A timestamp without time zone holding UTC: EXTRACT(EPOCH) reads it as UTC.
    return f"CAST(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)}) AS BIGINT)"


class email_domain(FunctionElement):
    """The part of an address after its first "@"."""

    inherit_cache = True


@compiles(email_domain, "sqlite")
def _domain_sqlite(element, compiler, **kw):
    arg = compiler.process(element.clauses, **kw)
    return f"substr({arg}, instr({arg}, '@') + 1)"


@compiles(email_domain)
def _domain_default(element, compiler, **kw):
    return f"split_part({compiler.process(element.clauses, **kw)}, '@', 2)"


def _days_since(column: Any) -> Callable[[datetime], ColumnElement]:
    # Whole 24-hour days, counted in integer seconds so no float rounding moves a boundary.
    return lambda now: (literal(int(now.timestamp()), BigInteger)
                        - epoch_seconds(column)) // 86400


def _column(column: Any) -> Callable[[datetime], ColumnElement]:
    return lambda now: column


def _predicted(column: Any) -> Callable[[datetime], ColumnElement]:
    """A customer_predictions column (predict.py; prospects have no row, so it is missing).
    A correlated lookup by primary key rather than a join in SOURCE: segments that do not
    use predictions pay nothing for them."""
    def expr(now: datetime) -> ColumnElement:
        predict.require()  # without the extra the table is empty: say so, do not match no one
        return (select(column).where(_p.customer_id == customers.c.id)
                .correlate(customers).scalar_subquery())
    return expr


@dataclass(frozen=True)
class Field:
    """One row of the field catalogue. ``kind`` decides the values and operators it takes:
    number, money (currency units in YAML, cents in SQL), days, enum, bool, text (compared
    case-insensitively), set (has one of the values: tags, bought products); ``window``
    fields take ``{days: N, <op>: value}`` and count counted orders in the last N*24 hours;
    decimal (any number, like 1.5 expected orders) and probability (0 to 1) are predictions."""

    name: str
    kind: str
    label: str
    sql: str                     # the SQL it reads, for the documentation
    expr: Callable[[datetime], ColumnElement] | None = None
    values: tuple[str, ...] = ()
    nullable: bool = False
    window: bool = False
    verbs: tuple[str, str] = ("", "")  # set and bool fields: "who <yes>" / "who <no>"

    def __reduce__(self):
        # A campaign's segment travels to render worker processes by pickle; its SQL builders
        # are closures, so a field goes by name and is found in the catalogue there.
        return _field_named, (self.name,)


def _field_named(name: str) -> Field:
    return FIELDS[name]


_m, _c, _p = metrics_table.c, customers.c, predictions.c
_FIELD_ROWS = [
    Field("orders", "number", "number of orders", "customer_metrics.orders", _column(_m.orders)),
    Field("spent", "money", "total spend", "customer_metrics.spent_cents",
          _column(_m.spent_cents)),
    Field("avg_order_value", "money", "average order value",
          "customer_metrics.avg_order_value_cents", _column(_m.avg_order_value_cents)),
    Field("recency_days", "days", "days since the last order", "customer_metrics.recency_days",
          _column(_m.recency_days), nullable=True),
    Field("days_since_first_order", "days", "days since the first order",
          "whole days from customer_metrics.first_order_at to now",
          _days_since(_m.first_order_at), nullable=True),
    Field("r_score", "number", "recency score", "customer_metrics.r_score",
          _column(_m.r_score), nullable=True),
    Field("f_score", "number", "frequency score", "customer_metrics.f_score",
          _column(_m.f_score), nullable=True),
    Field("m_score", "number", "monetary score", "customer_metrics.m_score",
          _column(_m.m_score), nullable=True),
    Field("dormancy", "enum", "dormancy", "customer_metrics.dormancy", _column(_m.dormancy),
          values=tuple(tables.Dormancy)),
    Field("value_tier", "enum", "value tier", "customer_metrics.value_tier",
          _column(_m.value_tier), values=tuple(tables.ValueTier), nullable=True),
    Field("lifecycle", "enum", "lifecycle stage", "customer_metrics.lifecycle",
          _column(_m.lifecycle), values=tuple(tables.Lifecycle)),
    Field("churn_risk", "probability", "churn risk",
          "customer_predictions.churn_risk: P(no order in the next predict.horizon_days)",
          _predicted(_p.churn_risk), nullable=True),
    Field("churn_tier", "enum", "churn tier",
          "customer_predictions.churn_tier (thresholds: predict.churn_tiers)",
          _predicted(_p.churn_tier), values=tuple(tables.ChurnTier), nullable=True),
    Field("p_alive", "probability", "chance of still being a customer",
          "customer_predictions.p_alive", _predicted(_p.p_alive), nullable=True),
    Field("expected_orders", "decimal", "expected number of orders",
          "customer_predictions.expected_orders in the next predict.horizon_days",
          _predicted(_p.expected_orders), nullable=True),
    Field("predicted_clv", "money", "predicted spend",
          "customer_predictions.predicted_clv_cents in the next predict.horizon_days",
          _predicted(_p.predicted_clv_cents), nullable=True),
    Field("accepts_marketing", "bool", "marketing consent", "customers.accepts_marketing",
          _column(_c.accepts_marketing), verbs=("accept marketing", "do not accept marketing")),
    Field("country", "text", "country", "lower(customers.country)",
          _column(func.lower(_c.country)), nullable=True),
    Field("email_domain", "text", "email domain", "the part of customers.email_key after @",
          _column(email_domain(_c.email_key))),
    Field("days_since_signup", "days", "days since signup",
          "whole days from customers.created_at to now", _days_since(_c.created_at)),
    Field("tag", "set", "tag", "customers.tags (comma-separated) contains the tag",
          verbs=("have the tag", "do not have the tag")),
    Field("bought_category", "set", "category",
          "a counted order has an item whose product is in the category (any case)",
          verbs=("bought from the category", "did not buy from the category")),
    Field("bought_sku", "set", "SKU", "a counted order has an item with the SKU",
          verbs=("bought the SKU", "did not buy the SKU")),
    Field("orders_in_last_days", "number", "number of orders",
          "counted orders created in [now - days, now)", window=True),
    Field("spent_in_last_days", "money", "spend",
          "sum of counted orders created in [now - days, now)", window=True),
]
FIELDS: dict[str, Field] = {f.name: f for f in _FIELD_ROWS}


@dataclass(frozen=True)
class Operator:
    """One row of the operator table: SQL (also run on Python values), and English."""

    name: str
    sql: str
    english: str                  # positive phrase, "{}" is the value
    english_not: str              # the same condition negated
    shape: str = "one"            # one value, a "pair" [low, high], or a "list"
    base: str | None = None       # ne and not_in are the negation of eq and in


OPERATORS: dict[str, Operator] = {op.name: op for op in [
    Operator("eq", "= value", "is {}", "is not {}"),
    Operator("ne", "<> value", "is not {}", "is {}", base="eq"),
    Operator("lt", "< value", "is less than {}", "is not less than {}"),
    Operator("lte", "<= value", "is at most {}", "is not at most {}"),
    Operator("gt", "> value", "is more than {}", "is not more than {}"),
    Operator("gte", ">= value", "is at least {}", "is not at least {}"),
    Operator("between", "BETWEEN low AND high", "is between {}", "is not between {}", "pair"),
    Operator("in", "IN (values)", "is {}", "is none of {}", "list"),
    Operator("not_in", "NOT IN (values)", "is none of {}", "is {}", "list", base="in"),
]}
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": py.eq, "lt": py.lt, "lte": py.le, "gt": py.gt, "gte": py.ge,
    "between": lambda x, v: x.between(*v) if isinstance(x, ColumnElement) else v[0] <= x <= v[1],
    "in": lambda x, v: x.in_(v) if isinstance(x, ColumnElement) else x in v,
}
_ORDERED = tuple(OPERATORS)
OPERATORS_BY_KIND = {"number": _ORDERED, "money": _ORDERED, "days": _ORDERED,
                     "decimal": _ORDERED, "probability": _ORDERED,
                     "enum": ("eq", "ne", "in", "not_in"), "text": ("eq", "ne", "in", "not_in"),
                     "set": ("eq", "ne", "in", "not_in"), "bool": ("eq", "ne")}


@dataclass(frozen=True)
class Condition:
    field: Field
    op: Operator
    value: Any                    # cents for money; a tuple for between and in
    days: int | None = None

    def sql(self, now: datetime) -> ColumnElement:
        base, value = self.op.base or self.op.name, self.value
        if self.field.kind in ("text", "set") and self.field.name != "bought_sku":
            # Marketers type "FR" or "Shoes"; text is compared case-insensitively.
            value = tuple(v.lower() for v in value) if isinstance(value, tuple) else value.lower()
        if self.field.kind == "set":
            positive = _has_any(self.field.name, value if isinstance(value, tuple) else (value,),
                                now)
        elif self.field.window:
            positive = _window(self, base, now)
        else:
            positive = _COMPARE[base](self.field.expr(now), value)
            if self.field.nullable:  # NULL compares as false, so not: means "everyone else"
                positive = func.coalesce(positive, false())
        return not_(positive) if self.op.base else positive

    def english(self, negated: bool = False, nested: bool = False) -> str:
        field, op = self.field, self.op
        if field.verbs[0]:
            yes = (op.base is None) != negated
            if field.kind == "bool":
                yes = yes == self.value
            values = self.value if isinstance(self.value, tuple) else (self.value,)
            shown = " or ".join(_show(field, v) for v in values)
            return f"who {field.verbs[0 if yes else 1]}" + (f" {shown}" if shown else "")
        label = field.label + (f" in the last {self.days} days" if field.window else "")
        if op.shape == "one":
            shown = _show(field, self.value)
        else:
            shown_all = [_show(field, v) for v in self.value]
            if op.shape == "pair":
                shown = " and ".join(shown_all)
            elif (op.name == "in") == negated:  # "is none of a, b"
                shown = ", ".join(shown_all)
            else:
                shown = ", ".join(shown_all[:-1]) + " or " + shown_all[-1]
        return f"whose {label} {(op.english_not if negated else op.english).format(shown)}"


def _show(field: Field, value: Any) -> str:
    if field.kind == "money":
        return money.decimal_text(value)
    if field.kind == "bool":
        return ""
    return str(getattr(value, "value", value)).replace("_", " ")


def _has_any(name: str, values: tuple[str, ...], now: datetime) -> ColumnElement:
    if name == "tag":
        # tags is ",a,b," once wrapped in commas: a LIKE on ",vip," cannot match "vip-old".
        wrapped = literal(",") + customers.c.tags + literal(",")
        return or_(*[wrapped.like(f"%,{_escape_like(v)},%", escape="\\") for v in values])
    if name == "bought_sku":
        match = order_items.c.sku.in_(values)
    else:  # products is the small table: scanning it for lower(category) is cheap
        match = order_items.c.sku.in_(
            select(products.c.sku).where(func.lower(products.c.category).in_(values)))
    # IN (subquery) rather than a correlated EXISTS: the database builds the buyer set once
    # and probes it per customer instead of walking each customer's orders.
    buyers = (select(orders.c.customer_id)
              .join(order_items, order_items.c.order_id == orders.c.id)
              .where(match, counted(now)))
    return customers.c.id.in_(buyers)


def _window(cond: Condition, base: str, now: datetime) -> ColumnElement:
    """orders_in_last_days / spent_in_last_days. Customers with no order in the window are
    absent from the GROUP BY, so when the comparison holds at zero ("fewer than 2 orders") we
    select everyone except the customers for whom it fails."""
    since = now - timedelta(days=cond.days)
    amount = func.count() if cond.field.kind == "number" else func.sum(orders.c.total_cents)
    recent = (select(orders.c.customer_id)
              .where(orders.c.created_at >= since, counted(now))
              .group_by(orders.c.customer_id))
    holds = _COMPARE[base](amount, cond.value)
    if _COMPARE[base](0, cond.value):
        return customers.c.id.not_in(recent.having(not_(holds)))
    return customers.c.id.in_(recent.having(holds))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def catalogue_markdown() -> str:
    """The field and operator tables as Markdown, for README (kept true by a docs test)."""
    lines = ["| field | type | meaning | reads |", "| --- | --- | --- | --- |"]
    for f in FIELDS.values():
        kind = f"{f.kind}: " + ", ".join(v.value for v in f.values) if f.values else f.kind
        kind += " in `{days: N, op: value}`" if f.window else ""
        lines.append(f"| `{f.name}` | {kind} | {f.label} | {f.sql} |")
    lines += ["", "| operator | SQL | English |", "| --- | --- | --- |"]
    lines += [f"| `{o.name}` | `{o.sql}` | {o.english.format('…')} |" for o in OPERATORS.values()]
    return "\n".join(lines)
