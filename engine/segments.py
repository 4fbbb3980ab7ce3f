"""The segment filter: a marketer's YAML conditions compiled into one bound SQL query.

Owns: the field catalogue (``FIELDS``) and the operator table (``OPERATORS``), parsing a
``segment:`` mapping into a frozen ``Segment`` with file:line:column errors, its English
``explain()``, its SQL ``where(now)`` over ``customers JOIN customer_metrics``, and the two ways
to run it: ``audience()`` streams ids in batches, ``evaluate()`` counts and samples. Must not
accept raw SQL or put a marketer's value into SQL text: every value is a bound parameter.

Conditions use two-valued logic: a condition on a missing value (a prospect's recency, a
customer without a country) is false, so ``not:`` always means "everyone else".
"""

from __future__ import annotations

import operator as py
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Engine, and_, false, func, literal, not_, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from . import metrics, tables, yamlfile
from .config import Settings
from .errors import SegmentError, did_you_mean

customers = tables.Customer.__table__
orders = tables.Order.__table__
order_items = tables.OrderItem.__table__
products = tables.Product.__table__
metrics_table = tables.CustomerMetrics.__table__
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


@dataclass(frozen=True)
class Field:
    """One row of the field catalogue. ``kind`` decides the values and operators it takes:
    number, money (currency units in YAML, cents in SQL), days, enum, bool, text (compared
    case-insensitively), set (has one of the values: tags, bought products); ``window``
    fields take ``{days: N, <op>: value}`` and count counted orders in the last N*24 hours."""

    name: str
    kind: str
    label: str
    sql: str                     # the SQL it reads, for the documentation
    expr: Callable[[datetime], ColumnElement] | None = None
    values: tuple[str, ...] = ()
    nullable: bool = False
    window: bool = False
    verbs: tuple[str, str] = ("", "")  # set and bool fields: "who <yes>" / "who <no>"


_m, _c = metrics_table.c, customers.c
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
        return metrics.money(value)
    if field.kind == "bool":
        return ""
    return str(getattr(value, "value", value)).replace("_", " ")


def _counted(now: datetime) -> list[ColumnElement]:
    """The metrics' rule for an order that counts."""
    return [orders.c.status == tables.OrderStatus.paid, orders.c.created_at < now]


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
              .where(match, *_counted(now)))
    return customers.c.id.in_(buyers)


def _window(cond: Condition, base: str, now: datetime) -> ColumnElement:
    """orders_in_last_days / spent_in_last_days. Customers with no order in the window are
    absent from the GROUP BY, so when the comparison holds at zero ("fewer than 2 orders") we
    select everyone except the customers for whom it fails."""
    since = now - timedelta(days=cond.days)
    amount = func.count() if cond.field.kind == "number" else func.sum(orders.c.total_cents)
    recent = (select(orders.c.customer_id)
              .where(orders.c.created_at >= since, *_counted(now))
              .group_by(orders.c.customer_id))
    holds = _COMPARE[base](amount, cond.value)
    if _COMPARE[base](0, cond.value):
        return customers.c.id.not_in(recent.having(not_(holds)))
    return customers.c.id.in_(recent.having(holds))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class Group:
    kind: str                     # all, any, not
    children: tuple[Any, ...]

    def sql(self, now: datetime) -> ColumnElement:
        parts = [child.sql(now) for child in self.children]
        if self.kind == "not":
            return not_(parts[0])
        return and_(*parts) if self.kind == "all" else or_(*parts)

    def english(self, negated: bool = False, nested: bool = False) -> str:
        if self.kind == "not":
            return self.children[0].english(not negated, nested)
        # De Morgan: "not (a and b)" reads better as "not a or not b".
        kind = {"all": "any", "any": "all"}[self.kind] if negated else self.kind
        joiner = " and " if kind == "all" else " or "
        text = joiner.join(c.english(negated, True) for c in self.children)
        return f"({text})" if nested and len(self.children) > 1 else text


@dataclass(frozen=True)
class Segment:
    root: Condition | Group
    path: str = ""

    def explain(self) -> str:
        return "customers " + self.root.english()

    def where(self, now: datetime) -> ColumnElement:
        """The filter over ``SOURCE`` (customers JOIN customer_metrics) as of ``now``."""
        return self.root.sql(now)


# Parsing: each function gets the YAML node and the (line, column) to blame for it.

def load_file(path: str | Path) -> Segment:
    """A YAML file holding ``segment:`` (a segment file, or a campaign with a segment)."""
    document = yamlfile.load(path)
    if not isinstance(document, dict) or "segment" not in document:
        raise SegmentError('expected a "segment:" mapping at the top of the file, like\n'
                           "segment:\n  all:\n    - dormancy: drowsy", path, 1, 1)
    return parse(document["segment"], path, _at(document, "segment"))


def parse(node: Any, path: str | Path, at: tuple[int | None, int | None] = (None, None)
          ) -> Segment:
    """The value under ``segment:`` → a frozen Segment; SegmentError at file:line:column."""
    return Segment(_node(node, str(path), getattr(node, "start", at)), str(path))


def _at(container: Any, key: Any) -> tuple[int | None, int | None]:
    lines = getattr(container, "lines", None)
    try:
        return lines[key] if lines is not None else getattr(container, "start", (None, None))
    except (KeyError, IndexError):
        return getattr(container, "start", (None, None))


def _node(node: Any, path: str, at: tuple) -> Condition | Group:
    if isinstance(node, list):  # a bare list of conditions: all of them
        return Group("all", _children(node, path, at, "segment"))
    if not isinstance(node, dict) or not node:
        raise SegmentError("expected all:, any:, not: or one condition like "
                           "`orders: {gte: 2}`", path, *at)
    keys = list(node)
    if len(keys) > 1:
        raise SegmentError(f'"{keys[1]}" is beside "{keys[0]}" in one item: start each '
                           'condition with its own "- " under all: or any:', path,
                           *_at(node, keys[1]))
    key, value = keys[0], node[keys[0]]
    key_at = _at(node, key)
    if key in ("all", "any"):
        return Group(key, _children(value, path, key_at, key))
    if key == "not":  # not: [a, b] means none of them
        if isinstance(value, list):
            return Group("not", (Group("any", _children(value, path, key_at, key)),))
        return Group("not", (_node(value, path, key_at),))
    return _condition(str(key), value, path, key_at)


def _children(items: Any, path: str, at: tuple, key: str) -> tuple:
    if not isinstance(items, list) or not items:
        raise SegmentError(f'"{key}:" needs a list of conditions, one a line starting with '
                           '"- "', path, *at)
    return tuple(_node(item, path, _at(items, i)) for i, item in enumerate(items))


def _condition(name: str, raw: Any, path: str, at: tuple) -> Condition:
    field = FIELDS.get(name)
    if field is None:
        raise SegmentError(f'unknown field "{name}"'
                           + did_you_mean(name, [*FIELDS, "all", "any", "not"]), path, *at)
    days = None
    if field.window:
        example = f"`{name}: {{days: 30, gte: 2}}`"
        if not isinstance(raw, dict) or "days" not in raw:
            raise SegmentError(f"{name} needs days and a comparison, like {example}", path, *at)
        days = raw["days"]
        if isinstance(days, bool) or not isinstance(days, int) or days < 1:
            raise SegmentError(f"{name}: days must be a whole number of at least 1, "
                               f"not {days!r}", path, *_at(raw, "days"))
    if isinstance(raw, dict):
        ops = [key for key in raw if not (field.window and key == "days")]
        if len(ops) != 1:
            hint = (f"like `{name}: {{days: 30, gte: 2}}`" if field.window
                    else f"for a range write `{name}: {{between: [low, high]}}`")
            raise SegmentError(f"{name} takes exactly one operator; {hint}", path, *at)
        op_name = ops[0]
        value, value_at = raw[op_name], _at(raw, op_name)
    else:
        op_name = "in" if isinstance(raw, list) else "eq"
        value, value_at = raw, at
    allowed = OPERATORS_BY_KIND[field.kind]
    if op_name not in OPERATORS:
        raise SegmentError(f'unknown operator "{op_name}" for {name}'
                           + did_you_mean(str(op_name), allowed), path, *value_at)
    if op_name not in allowed:
        raise SegmentError(f'{name} cannot use "{op_name}"; it takes {", ".join(allowed)}',
                           path, *value_at)
    op, value = OPERATORS[op_name], _values(field, OPERATORS[op_name], value, path, value_at)
    if op.shape == "list" and len(value) == 1:  # [drowsy] is just drowsy: reads "is drowsy"
        op, value = OPERATORS["eq" if op.name == "in" else "ne"], value[0]
    return Condition(field, op, value, days)


def _values(field: Field, op: Operator, value: Any, path: str, at: tuple) -> Any:
    if op.shape == "one":
        return _scalar(field, value, path, at)
    if not isinstance(value, list) or not value or (op.shape == "pair" and len(value) != 2):
        need = "[low, high]" if op.shape == "pair" else "a list like [a, b]"
        raise SegmentError(f"{field.name}: {op.name} needs {need}", path, *at)
    items = tuple(_scalar(field, v, path, _at(value, i)) for i, v in enumerate(value))
    if op.shape == "pair" and items[0] > items[1]:
        raise SegmentError(f"{field.name}: between needs the lower bound first", path, *at)
    return items


def _scalar(field: Field, value: Any, path: str, at: tuple) -> Any:
    kind, name = field.kind, field.name
    if kind in ("number", "days") and (isinstance(value, bool) or not isinstance(value, int)):
        raise SegmentError(f"{name} needs a whole number, not {value!r}", path, *at)
    if kind == "money":
        try:
            amount = Decimal(str(value)) if isinstance(value, int | float) else None
        except InvalidOperation:
            amount = None
        if isinstance(value, bool) or amount is None or amount != round(amount, 2):
            raise SegmentError(f"{name} needs an amount in currency units like 49.90, "
                               f"not {value!r}", path, *at)
        return int(amount * 100)
    if kind == "bool" and not isinstance(value, bool):
        raise SegmentError(f"{name} needs true or false, not {value!r}", path, *at)
    if kind in ("enum", "text", "set"):
        if isinstance(value, bool) or value is None or not isinstance(value, str | int):
            raise SegmentError(f"{name} needs text, not {value!r}: put the value in quotes "
                               f'(YAML reads no, yes, on, off and null as other types)', path, *at)
        text = str(value).strip()
        if kind == "enum":
            choices = {v.value.lower(): v.value for v in field.values}
            if text.lower() not in choices:
                raise SegmentError(f'"{text}" is not a {field.label}'
                                   + did_you_mean(text, [v.value for v in field.values]),
                                   path, *at)
            return choices[text.lower()]
        if not text:
            raise SegmentError(f"{name} needs a value, not an empty text", path, *at)
        return text
    return value


# Running a segment.

def evaluate(engine: Engine, settings: Settings, segment: Segment, now: datetime,
             limit: int = 10) -> dict[str, Any]:
    """Count the audience and show the first ``limit`` customers by id (no email addresses)."""
    metrics.refresh(engine, settings, now)
    limit, m = max(limit, 0), metrics_table.c
    # One statement for the count and the sample: COUNT(*) OVER () is computed before the
    # LIMIT, so the order subqueries (a category's buyers, a window's spenders) run once. The
    # window buffers only ids; names and metrics are joined to the few rows kept.
    first = (select(customers.c.id, func.count().over().label("matched"))
             .select_from(SOURCE).where(segment.where(now))
             .order_by(customers.c.id).limit(max(limit, 1)).subquery())
    sample_query = (select(first.c.id, first.c.matched, customers.c.first_name,
                           customers.c.last_name, m.orders, m.spent_cents, m.recency_days,
                           m.dormancy, m.value_tier, m.lifecycle)
                    .select_from(first.join(customers, customers.c.id == first.c.id)
                                 .join(metrics_table, m.customer_id == first.c.id))
                    .order_by(first.c.id))
    with engine.connect() as conn:
        rows = conn.execute(sample_query).all()
    count = rows[0].matched if rows else 0
    rows = rows[:limit]
    sample = [{"customer_id": r.id, "name": f"{r.first_name} {r.last_name}".strip(),
               "orders": r.orders, "spent": metrics.money(r.spent_cents),
               "recency_days": r.recency_days, "dormancy": _plain(r.dormancy),
               "value_tier": _plain(r.value_tier), "lifecycle": _plain(r.lifecycle)}
              for r in rows]
    return {"count": count, "sample": sample, "explain": segment.explain()}


def audience(engine: Engine, settings: Settings, segment: Segment, now: datetime,
             batch_size: int = 5000) -> Iterator[int]:
    """Customer ids in the segment, ascending, ``batch_size`` rows fetched at a time.

    One query read through a server-side cursor (PostgreSQL) or SQLite's lazy cursor: the
    order subqueries run once, however long the audience, and memory holds one batch. (Paging
    with a fresh query per batch re-ran a category's buyer list every 5,000 ids: 200 times for
    a million customers.) The connection is held until the iterator is exhausted or closed;
    the caller writes through its own connections meanwhile (SQLite WAL allows that).
    """
    metrics.refresh(engine, settings, now)
    query = (select(customers.c.id).select_from(SOURCE).where(segment.where(now))
             .order_by(customers.c.id))
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=batch_size).execute(query)
        for batch in result.partitions():
            yield from (row[0] for row in batch)


def _plain(value: Any) -> Any:
    return getattr(value, "value", value)


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
